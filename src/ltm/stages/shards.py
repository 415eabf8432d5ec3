"""Shards stage: the corpus encoded into packed Arrow token shards."""
from __future__ import annotations

from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.data.shards import build_shards
from ltm.runtime import configure_threads
from ltm.stage_params import stage_params


def shards(params_path: str, corpus_dir: str, tokenizer_dir: str, out: str) -> dict:
    params = load_params(params_path)
    threads = configure_threads(params["runtime"])
    started = lineage.now()
    manifest = build_shards(params["data"]["shards"], Path(corpus_dir), Path(tokenizer_dir), Path(out),
                            threads=threads)
    lineage.write_record(out, stage="shards", params=subset(params, stage_params("shards", params)),
                         inputs={"corpus": corpus_dir, "tokenizer": tokenizer_dir}, started=started)
    return manifest
