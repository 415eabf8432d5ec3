"""The model families (LTM, AR, masked diffusion) behind one interface.

Each family is one module (`ltm.families.<name>`) with the functions of `ltm.families.base` plus one
entry below that says what it is. Everything outside this package asks the registry (`family(name)`)
instead of comparing family names. The entries are plain data, so the pipeline table and both
orchestrators can read them without importing torch; `Family.impl` imports the implementation.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ltm.errors import LtmError


@dataclass(frozen=True)
class Family:
    name: str
    label: str                  # how tables and figures name it
    process: str | None         # the params section of its training process besides train: (None: none)
    has_latents: bool           # cross-attends to per-sequence latents fitted by the fast loop
    exact_likelihood: bool      # scores each token exactly: can judge other models' samples
    left_to_right: bool         # decodes one token after another (prompted few-shot tasks)
    headline: str               # key of its honest number in an eval split record
    curve_column: str           # that number's column in a T_eval curve row (nats per token)
    val_loss_kind: str          # what the trainer's validation loss is
    extra_tokens: int           # embedding rows beyond the tokenizer's vocabulary (the denoiser's [MASK])
    color: str                  # its colour in the report's figures, and a colormap for several runs
    cmap: str
    module: str

    @property
    def impl(self) -> ModuleType:
        """The implementation (train loss, validation, scoring, sampling, FLOPs; see families.base)."""
        return importlib.import_module(self.module)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("ltm", "LTM", "posterior", has_latents=True, exact_likelihood=False, left_to_right=True,
           headline="iwae", curve_column="iwae_nelbo", val_loss_kind="nelbo_optim_noise", extra_tokens=0,
           color="#1f77b4", cmap="Blues", module="ltm.families.ltm"),
    Family("ar", "AR", None, has_latents=False, exact_likelihood=True, left_to_right=True,
           headline="exact", curve_column="exact_nll", val_loss_kind="nll_exact", extra_tokens=0,
           color="#ff7f0e", cmap="Oranges", module="ltm.families.ar"),
    Family("diffusion", "diffusion", "diffusion", has_latents=False, exact_likelihood=False, left_to_right=False,
           headline="diffusion_bound", curve_column="diffusion_nelbo", val_loss_kind="nelbo_diffusion_bound",
           extra_tokens=1, color="#2ca02c", cmap="Greens", module="ltm.families.diffusion"),
)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise LtmError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]
