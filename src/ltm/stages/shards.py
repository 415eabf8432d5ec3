"""Shards stage: the corpus encoded into packed Arrow token shards."""
from __future__ import annotations

from pathlib import Path

from ltm.data.shards import build_shards
from ltm.stage_run import begin


def shards(params_path: str, corpus_dir: str, tokenizer_dir: str, out: str) -> dict:
    stage = begin("shards", params_path)
    manifest = build_shards(stage.params["data"]["shards"], Path(corpus_dir), Path(tokenizer_dir), Path(out),
                            threads=stage.threads)
    stage.record(out, {"corpus": corpus_dir, "tokenizer": tokenizer_dir})
    return manifest
