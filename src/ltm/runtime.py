"""Hardware settings (params `runtime:` + LTM_* environment): device, threads, precision."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ltm.config import typed
from ltm.errors import LtmError


@dataclass(frozen=True)
class Runtime:
    """The `runtime:` params section with its LTM_* environment overrides applied (ltm.config.load_params).
    None of it enters a params hash: it changes where and how fast, not what is computed."""
    device: str  # auto | cpu | mps | cuda | cuda:N
    threads: int  # torch and tokenizer CPU threads; 0 = the library default
    micro_batch: int  # sequences per forward/backward; 0 = the whole per-rank batch
    compile: bool  # torch.compile the decoder

    @classmethod
    def from_params(cls, section: dict) -> "Runtime":
        return typed(cls, section)


def configure_threads(runtime: Runtime) -> int | None:
    """Apply runtime.threads to torch and the tokenizer pool; return it (None = library default)."""
    threads = runtime.threads or None
    if threads:
        torch.set_num_threads(threads)
        # Read by the tokenizers Rust pool when it first starts.
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    return threads


def resolve_device(runtime: Runtime) -> torch.device:
    name = runtime.device
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LtmError(f"device {name!r} requested (runtime.device / LTM_DEVICE), but this torch build "
                           "sees no CUDA device; use auto or cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise LtmError(f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LtmError("device 'mps' requested, but MPS is not available here; use auto or cpu")
    return torch.device(name)
