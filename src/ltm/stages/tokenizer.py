"""Tokenizer stage: a byte-level BPE trained on the train split, or the exact GPT-2 BPE."""
from __future__ import annotations

from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.data.tokenizer import build_tokenizer
from ltm.runtime import configure_threads
from ltm.stage_params import stage_params


def tokenizer(params_path: str, corpus_dir: str, out: str) -> dict:
    params = load_params(params_path)
    configure_threads(params["runtime"])
    started = lineage.now()
    manifest = build_tokenizer(params["data"]["tokenizer"], Path(corpus_dir), Path(out))
    lineage.write_record(out, stage="tokenizer", params=subset(params, stage_params("tokenizer", params)),
                         inputs={"corpus": corpus_dir}, started=started)
    return manifest
