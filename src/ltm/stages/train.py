"""Train stage: one run of params `runs:` -> checkpoints, the final model, metrics and a step log."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ltm.io import check_replaceable, exclusive, write_json
from ltm.model_files import export_model
from ltm.runs import describe, resolve_run
from ltm.stage_run import StageRun, begin
from ltm.tracking import Tracker
from ltm.trainer import Trainer


def train(params_path: str, run: str, shards_dir: str, out: str, resume: str = "auto") -> dict:
    stage = begin("train", params_path, run=run)
    spec = resolve_run(stage.params, run)
    out_dir = Path(out)
    check_replaceable(out_dir / "model", "train")  # before training, not after it
    # one writer per run folder; under torchrun the ranks of one job share it, rank 0 holds the lock
    first_rank = int(os.environ.get("RANK", "0")) == 0
    with exclusive(out_dir) if first_rank else contextlib.nullcontext():
        return _train(stage, spec, shards_dir, out_dir, resume)


def _train(stage: StageRun, spec, shards_dir: str, out_dir: Path, resume: str) -> dict:
    trainer = Trainer(spec, Path(shards_dir), out_dir, stage.runtime, resume=resume)
    try:
        metrics = trainer.fit()
        if trainer.dist.is_main:
            export_model(trainer, out_dir / "model")
            extra = {"run": describe(spec), "run_hash": trainer.run_hash}
            stage.record(out_dir / "model", {"shards": shards_dir}, params=spec.params, extra=extra,
                         files=[out_dir / "model" / "config.json"])
            timing = metrics.pop("timing")
            write_json(out_dir / "metrics.json", metrics)
            write_json(out_dir / "timing.run.json", timing)  # differs on every run: beside, not inside
            Tracker(None, trainer.state.log_rows).write_tsv(out_dir / "train_log.tsv")
            stage.record(out_dir / "metrics.json", {"shards": shards_dir}, params=spec.params, extra=extra,
                         record=out_dir / "lineage.json", files=[out_dir / "metrics.json", out_dir / "train_log.tsv"])
    finally:
        trainer.close()
    return metrics
