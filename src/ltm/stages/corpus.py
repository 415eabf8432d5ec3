"""Corpus stage: documents from the configured source -> Arrow with a train/val split."""
from __future__ import annotations

from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.data.corpus import build_corpus
from ltm.stage_params import stage_params


def corpus(params_path: str, out: str) -> dict:
    params = load_params(params_path)
    started = lineage.now()
    manifest = build_corpus(params["data"]["corpus"], Path(out))
    lineage.write_record(out, stage="corpus", params=subset(params, stage_params("corpus", params)), inputs={},
                         started=started, extra={"sources": manifest["source"].get("files", [])})
    return manifest
