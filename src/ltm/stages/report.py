"""Report stage: every result -> reports/report.md with figures, and the report's lineage."""
from __future__ import annotations

from pathlib import Path

from ltm.grid import all_runs
from ltm.report import build_report
from ltm.stage_run import begin


def report(params_path: str, runs_dir: str, eval_dir: str, scaling_dir: str, out: str) -> Path:
    stage = begin("report", params_path)
    params = stage.params
    path = build_report(params, Path(runs_dir), Path(eval_dir), Path(scaling_dir), Path(out))
    inputs: dict[str, str | Path] = {"eval": eval_dir, "scaling": scaling_dir}
    for run in all_runs(params):  # the training metrics read directly (not the checkpoints beside them)
        inputs[f"train_metrics:{run}"] = Path(runs_dir) / run / "metrics.json"
    stage.record(path, inputs, record=Path(out) / "lineage.json",
                 files=[path, Path(out) / "metrics.json", Path(out) / "inputs.json"])
    return path
