"""Report stage: every result -> reports/report.md with figures, and the report's lineage."""
from __future__ import annotations

from pathlib import Path

from ltm import lineage
from ltm.config import load_params, subset
from ltm.grid import all_runs
from ltm.report import build_report
from ltm.stage_params import stage_params


def report(params_path: str, runs_dir: str, eval_dir: str, scaling_dir: str, out: str) -> Path:
    params = load_params(params_path)
    started = lineage.now()
    path = build_report(params, Path(runs_dir), Path(eval_dir), Path(scaling_dir), Path(out))
    inputs: dict[str, str | Path] = {"eval": eval_dir, "scaling": scaling_dir}
    for run in all_runs(params):  # the training metrics read directly (not the checkpoints beside them)
        inputs[f"train_metrics:{run}"] = Path(runs_dir) / run / "metrics.json"
    lineage.write_record(path, stage="report", params=subset(params, stage_params("report", params)),
                         inputs=inputs, started=started, record=Path(out) / "lineage.json",
                         files=[path, Path(out) / "metrics.json", Path(out) / "inputs.json"])
    return path
