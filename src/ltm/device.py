"""The torch device and matmul precision a run uses, from its runtime settings (ltm.runtime)."""
from __future__ import annotations

import torch

from ltm.errors import LtmError
from ltm.runtime import Runtime


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


def resolve_device(runtime: Runtime) -> torch.device:
    name = runtime.device
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LtmError(f"device {name!r} requested (runtime.device / LTM_DEVICE), but this torch build "
                           "sees no CUDA device; use auto or cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise LtmError(f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not mps:
        raise LtmError("device 'mps' requested, but MPS is not available here; use auto or cpu")
    return torch.device(name)
