"""The slow optimizer: AdamW with decoupled weight decay on matrices only, warm-up + cosine lr."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ltm.runs import TrainConfig


def make_optimizer(model: nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Matrices (and the tied embedding) decay; norms' gains do not (paper / nanoGPT convention).
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr, betas=tuple(train.betas), fused=device.type == "cuda")


def lr_factor(step: int, total: int, train: TrainConfig) -> float:
    """Multiplier of train.lr at `step`: linear warm-up, then cosine down to min_lr at `total`."""
    warmup, floor = train.warmup_steps, train.min_lr / train.lr
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - floor)


def make_scheduler(opt: torch.optim.Optimizer, total: int, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, train))
