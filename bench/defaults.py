"""The repository's params.yaml settings for the benches: the library has no defaults of its own, so a
bench names only what it varies."""
from __future__ import annotations

from dataclasses import replace

from ltm.config import REPO_ROOT, load_params
from ltm.diffusion import DiffusionConfig
from ltm.fast_loop import PosteriorConfig

PARAMS = load_params(REPO_ROOT / "params.yaml")


def fast_loop(**changes) -> PosteriorConfig:
    return replace(PosteriorConfig.from_params(PARAMS["posterior"]), **changes)


def diffusion_settings(**changes) -> DiffusionConfig:
    return replace(DiffusionConfig.from_params(PARAMS["diffusion"]), **changes)
