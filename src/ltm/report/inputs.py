"""Everything the report reads, loaded and validated into one typed `Inputs` before anything is written.

Inputs (all read-only): per run of params (`ltm.grid.all_runs`) runs/RUN/metrics.json, train_log.tsv and
model/lineage.json; results/eval/RUN/metrics.json, t_curve.tsv (LTM) and lineage.json; the scaling
stage's fit.json, residuals.csv and lineage.json; results/fewshot/RUN/metrics.json and results/demo/metrics.json
where they exist.
A missing or unreadable required file raises LtmError (one line) before anything is written; the
folder is then replaced as a whole (`atomic_dir`), so a failure leaves the previous report intact.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltm.errors import LtmError
from ltm.families import FAMILIES, family
from ltm.grid import all_runs
from ltm.lineage import check_file
from ltm.report.laws import read_residuals


@dataclass
class RunArtifacts:
    name: str
    family: str
    train: dict[str, Any]
    eval: dict[str, Any]
    curve: list[dict[str, float]] = field(default_factory=list)
    train_log: list[dict[str, float]] = field(default_factory=list)
    train_lineage: dict[str, Any] | None = None
    eval_lineage: dict[str, Any] | None = None
    fewshot: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None

    def split(self, name: str) -> dict[str, Any] | None:
        return (self.eval.get("splits") or {}).get(name)

    @property
    def inner_steps(self) -> int:
        return int(self.eval.get("inner_steps") or 0)


@dataclass
class Inputs:
    """What every section and figure reads; `fit` and `residuals` are the scaling stage's outputs."""

    params: dict[str, Any]
    runs: list[RunArtifacts]  # the family registry's order (LTM, AR, diffusion), params order within a family
    fit: dict[str, Any]  # fit.json
    residuals: list[dict[str, Any]]  # residuals.csv rows, numeric columns as floats
    scaling_lineage: dict[str, Any] | None
    split: str  # the evaluation split the fits used (fit.split)
    fewshot_dir: Path  # where the few-shot section looks (its generation results beside it)
    demo: dict[str, Any] | None = None  # results/demo/metrics.json, the synthetic-corpus demonstration


def read_json_file(path: Path, what: str, required: bool = True) -> Any:
    """Parsed JSON; a missing required file or unreadable JSON is a one-line LtmError."""
    if not path.is_file():
        if required:
            raise LtmError(f"missing {what}: {path}")
        return None
    check_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LtmError(f"unreadable {what} {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LtmError(f"unreadable {what} {path}: {type(exc).__name__}") from None


def read_tsv(path: Path, what: str, required: bool = True) -> list[dict[str, float]]:
    """A numeric TSV (header line, tab-separated; empty cells → NaN)."""
    if not path.is_file():
        if required:
            raise LtmError(f"missing {what}: {path}")
        return []
    check_file(path)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise LtmError(f"empty {what}: {path}")
    head = lines[0].split("\t")
    rows = []
    for i, ln in enumerate(lines[1:], start=2):
        cells = ln.split("\t")
        if len(cells) != len(head):
            raise LtmError(f"{path}: line {i} has {len(cells)} cells, the header {len(head)}")
        try:
            rows.append({h: (float(c) if c != "" else math.nan) for h, c in zip(head, cells)})
        except ValueError:
            raise LtmError(f"{path}: line {i} has a non-numeric cell") from None
    return rows


def _require(obj: Any, keys: tuple[str, ...], path: Path) -> None:
    if not isinstance(obj, dict):
        raise LtmError(f"{path}: expected a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise LtmError(f"{path}: missing key(s) {', '.join(missing)}")


def load_run(name: str, runs_dir: Path, eval_dir: Path, fewshot_dir: Path) -> RunArtifacts:
    tpath, epath = runs_dir / name / "metrics.json", eval_dir / name / "metrics.json"
    train = read_json_file(tpath, f"training metrics of run {name}")
    _require(train, ("family", "params", "tokens", "train_flops"), tpath)
    ev = read_json_file(epath, f"evaluation metrics of run {name}")
    _require(ev, ("family", "splits"), epath)
    if not isinstance(ev["splits"], dict) or not ev["splits"]:
        raise LtmError(f"{epath}: 'splits' must be a non-empty object")
    if ev["family"] != train["family"]:
        raise LtmError(f"run {name}: family {train['family']!r} in {tpath} but {ev['family']!r} in {epath}")
    for rec in ev["splits"].values():
        _require(rec, ("protocol",), epath)
    lineage_path = runs_dir / name / "model" / "lineage.json"
    if not lineage_path.is_file():
        lineage_path = runs_dir / name / "lineage.json"
    return RunArtifacts(
        name=name, family=str(train["family"]), train=train, eval=ev,
        curve=read_tsv(eval_dir / name / "t_curve.tsv", f"T_eval curve of run {name}",
                       required=family(train["family"]).has_latents),
        train_log=read_tsv(runs_dir / name / "train_log.tsv", f"training log of run {name}", required=False),
        train_lineage=read_json_file(lineage_path, "training lineage", required=False),
        eval_lineage=read_json_file(eval_dir / name / "lineage.json", "evaluation lineage", required=False),
        fewshot=read_json_file(fewshot_dir / name / "metrics.json", f"few-shot metrics of run {name}",
                               required=False),
        generation=read_json_file(fewshot_dir.parent / "generation" / name / "metrics.json",
                                  f"generation metrics of run {name}", required=False),
    )


def load_inputs(params: dict[str, Any], runs_dir: Path, eval_dir: Path, scaling_dir: Path,
                fewshot_dir: Path | None = None) -> Inputs:
    """Every artifact the report reads, validated; raises LtmError before anything is written."""
    runs_dir, eval_dir, scaling_dir = Path(runs_dir), Path(eval_dir), Path(scaling_dir)
    fewshot_dir = Path(fewshot_dir) if fewshot_dir is not None else eval_dir.parent / "fewshot"
    names = list(all_runs(params))
    if not names:
        raise LtmError("params lists no runs: nothing to report")
    runs = [load_run(n, runs_dir, eval_dir, fewshot_dir) for n in names]
    order = {f: i for i, f in enumerate(FAMILIES)}
    runs.sort(key=lambda r: order.get(r.family, len(order)))  # stable: params order within a family
    fit_path = scaling_dir / "fit.json"
    fit = read_json_file(fit_path, "scaling fit")
    _require(fit, ("groups",), fit_path)
    if not isinstance(fit["groups"], list):
        raise LtmError(f"{fit_path}: 'groups' must be a list")
    for g in fit["groups"]:
        _require(g, ("family", "loss_kind", "laws"), fit_path)
        for law in g["laws"]:
            _require(law, ("law", "law_id", "status"), fit_path)
    residuals = read_residuals(scaling_dir / "residuals.csv")
    split = str((params.get("fit") or {}).get("split") or "val")
    return Inputs(params=params, runs=runs, fit=fit, residuals=residuals,
                  scaling_lineage=read_json_file(scaling_dir / "lineage.json", "scaling lineage", required=False),
                  split=split, fewshot_dir=fewshot_dir,
                  demo=read_json_file(eval_dir.parent / "demo" / "metrics.json", "demo metrics", required=False))
