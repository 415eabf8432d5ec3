"""Hardware settings (params `runtime:` + LTM_* environment): device, threads, precision."""
from __future__ import annotations

import os

import torch


def configure_threads(runtime: dict) -> int | None:
    """Apply runtime.threads to torch and the tokenizer pool; return it (None = library default)."""
    threads = runtime.get("threads") or None
    if threads:
        torch.set_num_threads(threads)
        # Read by the tokenizers Rust pool when it first starts.
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    return threads


def resolve_device(runtime: dict) -> torch.device:
    name = runtime.get("device", "auto")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    return torch.device(name)
