"""Data stages: corpus -> tokenizer -> Arrow shards."""
from __future__ import annotations

from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.data.corpus import build_corpus
from ltm.data.shards import build_shards
from ltm.data.tokenizer import build_tokenizer
from ltm.runtime import configure_threads
from ltm.stages import stage_params


def corpus(params_path: str, out: str) -> dict:
    params = load_params(params_path)
    started = lineage.now()
    manifest = build_corpus(params["data"]["corpus"], Path(out))
    lineage.write_record(out, stage="corpus", params=subset(params, stage_params("corpus", params)), inputs={},
                         started=started, extra={"sources": manifest["source"].get("files", [])})
    return manifest


def tokenizer(params_path: str, corpus_dir: str, out: str) -> dict:
    params = load_params(params_path)
    configure_threads(params["runtime"])
    started = lineage.now()
    manifest = build_tokenizer(params["data"]["tokenizer"], Path(corpus_dir), Path(out))
    lineage.write_record(out, stage="tokenizer", params=subset(params, stage_params("tokenizer", params)),
                         inputs={"corpus": corpus_dir}, started=started)
    return manifest


def shards(params_path: str, corpus_dir: str, tokenizer_dir: str, out: str) -> dict:
    params = load_params(params_path)
    threads = configure_threads(params["runtime"])
    started = lineage.now()
    manifest = build_shards(params["data"]["shards"], Path(corpus_dir), Path(tokenizer_dir), Path(out),
                            threads=threads)
    lineage.write_record(out, stage="shards", params=subset(params, stage_params("shards", params)),
                         inputs={"corpus": corpus_dir, "tokenizer": tokenizer_dir}, started=started)
    return manifest
