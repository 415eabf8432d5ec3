"""Tokenizer stage: a byte-level BPE trained on the train split, or the exact GPT-2 BPE."""
from __future__ import annotations

from pathlib import Path

from ltm.data.tokenizer import build_tokenizer
from ltm.stage_run import begin


def tokenizer(params_path: str, corpus_dir: str, out: str) -> dict:
    stage = begin("tokenizer", params_path)
    manifest = build_tokenizer(stage.params["data"]["tokenizer"], Path(corpus_dir), Path(out))
    stage.record(out, {"corpus": corpus_dir})
    return manifest
