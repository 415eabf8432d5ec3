"""Training checkpoints: one file holds the whole trainer state; written atomically, loaded weights-only.

Layout: <run>/checkpoints/<run hash>/step-00000123.pt. Checkpoints of different params or data live
in different folders, so `--resume auto` only ever picks up a compatible one; an explicitly named
checkpoint with another hash is refused.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ltm.errors import LtmError
from ltm.io import atomic_path

FORMAT = 1
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_dir(run_dir: Path, run_hash: str) -> Path:
    return Path(run_dir) / "checkpoints" / run_hash


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def save(folder: Path, state: dict, step: int, keep_last: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


STATE_KEYS = ("run_hash", "step", "tokens", "log_rows", "model", "optimizer", "scheduler", "loader", "rng")


def torch_load_problem(exc: Exception) -> str:
    """What a failed weights-only torch.load means, in words, for a one-line error."""
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc).lower().replace(" ", "_"):
        return "holds Python objects beyond tensors and plain data: refused unread (weights_only loading)"
    return f"is unreadable ({type(exc).__name__}): truncated, or not a torch file"


def load(path: Path, expected_hash: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise LtmError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # truncated zip, bad pickle, wrong file type: all mean "not a checkpoint"
        raise LtmError(f"checkpoint {path} {torch_load_problem(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LtmError(f"{path} is not an ltm training checkpoint (format {FORMAT})")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise LtmError(f"checkpoint {path} lacks {', '.join(missing)}: it is incomplete; delete it to start over")
    if expected_hash is not None and state.get("run_hash") != expected_hash:
        raise LtmError(f"checkpoint {path} was made with params hash {state.get('run_hash')}, but the current "
                       f"params and data give {expected_hash}; refusing to resume from it")
    return state


def find_resume(folder: Path, resume: str) -> Path | None:
    """`resume` is "auto" (latest compatible, if any), "never", or a checkpoint path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = list_checkpoints(folder)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_file():
        raise LtmError(f"--resume: no checkpoint file at {path}")
    return path
