"""torchrun / DDP plumbing: rank discovery, reductions, and the rank-0-only rule for writing."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (WORLD_SIZE > 1); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world), device


def mean_across(values: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.AVG if values.is_cuda else dist.ReduceOp.SUM)
        if not values.is_cuda:
            values /= d.world_size
    return values


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
