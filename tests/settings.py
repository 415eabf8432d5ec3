"""Typed settings for unit tests, built from the repository's params.yaml: a test names only what it
changes, and every other value is the pipeline's own (the library has no defaults of its own)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from ltm.diffusion import DiffusionConfig
from ltm.evaluate import EvalConfig
from ltm.fast_loop import PosteriorConfig

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def fast_loop(**changes) -> PosteriorConfig:
    return replace(PosteriorConfig.from_params(PARAMS["posterior"]), **changes)


def eval_settings(**changes) -> EvalConfig:
    return replace(EvalConfig.from_params(PARAMS["eval"]), **changes)


def diffusion_settings(**changes) -> DiffusionConfig:
    return replace(DiffusionConfig.from_params(PARAMS["diffusion"]), **changes)


def data_settings(section: str, **changes) -> dict:
    """One data section of params.yaml (corpus, tokenizer or shards) with `changes` applied."""
    return {**PARAMS["data"][section], **changes}


def topic_process(**changes):
    from ltm.data.synthetic import TopicProcess

    return TopicProcess.from_params({**PARAMS["data"]["corpus"]["synthetic"], **changes})
