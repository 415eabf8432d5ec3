"""Hardware settings (params `runtime:` + LTM_* environment): device, threads, precision.

No torch import here: the stages that never touch a tensor (corpus, tokenizer, shards, scaling, report)
start without it, about 1.8 s sooner each; what needs torch is in ltm.device."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ltm.config import FromParams


@dataclass(frozen=True)
class Runtime(FromParams):
    """The `runtime:` params section with its LTM_* environment overrides applied (ltm.config.load_params).
    None of it enters a params hash: it changes where and how fast, not what is computed."""
    device: str  # auto | cpu | mps | cuda | cuda:N
    threads: int  # torch and tokenizer CPU threads; 0 = the library default
    micro_batch: int  # sequences per forward/backward; 0 = the whole per-rank batch
    compile: bool  # torch.compile the decoder (every forward, the fast loop's included)
    precision: str  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    fused_loss: bool  # the fast loop's output layer and cross-entropy in one pass (ltm.fused_loss)


def configure_threads(runtime: Runtime) -> int | None:
    """Apply runtime.threads to torch (when the stage has imported it: a stage module imports its
    libraries before it starts) and the tokenizer pool; return it (None = library default)."""
    threads = runtime.threads or None
    if threads:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        # Read by the tokenizers Rust pool when it first starts.
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    return threads
