"""The autoregressive baseline: the same decoder without latents, scored by its exact NLL."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltm import flops
from ltm import generate as gen
from ltm.evaluate import evaluate_split
from ltm.families.base import flat_curve
from ltm.model import Decoder, ModelConfig


def model_config(vocab_size: int, seq_len: int, preset: dict) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, seq_len=seq_len, **preset)


def build(model_cfg: ModelConfig, process=None) -> Decoder:
    return Decoder(model_cfg)


def train_loss(trainer, net, x, y, step, first_row):
    return F.cross_entropy(net(x).flatten(0, 1).float(), y.flatten()), None


@torch.no_grad()
def val_loss(trainer, x, y, global_batch):
    with trainer.autocast():
        return F.cross_entropy(trainer.model(x).flatten(0, 1).float(), y.flatten(), reduction="sum")


def train_flops(shape, spec) -> tuple[float, float]:
    formula = flops.train_flops_per_token(*shape)
    return formula, formula


def flops_model(model):
    return model


def score_split(model, shards, ecfg, post_cfg, *, token_bytes, rows_per_pass=None, desc=None, cache=None) -> dict:
    return evaluate_split(model, shards, ecfg, token_bytes=token_bytes, rows_per_pass=rows_per_pass, desc=desc)


def t_curve(model, shards, ecfg, post_cfg, splits, **_) -> list[dict]:
    return flat_curve(ecfg, splits, "exact", "exact_nll", "nll")


def sample(model, prompts, max_new, post_cfg, how: gen.Sampling, generator, eos_id):
    ids = gen.sample(model, prompts, max_new, None, temperature=how.temperature, top_k=how.top_k, top_p=how.top_p,
                     greedy=how.greedy, generator=generator, eos_id=eos_id)
    return ids, {}


def summary(run: str, split: str, rec: dict) -> str:
    e = rec["exact"]
    return f"{run} {split}: exact NLL {e['nll']:.4f} nats/token, ppl {e['ppl']:.2f}, {e['bpb']:.3f} bits/byte"
