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
    compile: bool  # torch.compile the decoder (every forward, the fast loop's included)
    precision: str  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    fused_loss: bool  # the fast loop's output layer and cross-entropy in one pass (ltm.fused_loss)

    @classmethod
    def from_params(cls, section: dict) -> "Runtime":
        return typed(cls, section)


def autocast_dtype(runtime: Runtime, device: torch.device) -> torch.dtype | None:
    """The dtype training matmuls autocast to on `device` (None: plain fp32). bf16 changes the numbers
    (bench/bench_inner_loop.py measures by how much), so a run's metrics record what it used."""
    choice = runtime.precision
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if choice == "fp32":
        return None
    if device.type == "cpu" and not torch.backends.mkldnn.is_available():
        raise LtmError("runtime.precision bf16 on CPU needs oneDNN (mkldnn), which this torch build lacks")
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        raise LtmError("runtime.precision bf16: this CPU has neither AVX512-BF16 nor AMX; use auto or fp32")
    return torch.bfloat16


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
