"""Corpus stage: documents from the configured source -> Arrow with a train/val split."""
from __future__ import annotations

from pathlib import Path

from ltm.data.corpus import build_corpus
from ltm.stage_run import begin


def corpus(params_path: str, out: str) -> dict:
    stage = begin("corpus", params_path)
    manifest = build_corpus(stage.params["data"]["corpus"], Path(out))
    stage.record(out, {}, extra={"sources": manifest["source"].get("files", [])})
    return manifest
