"""Read the scaling stage's fit.json / residuals.csv for the report: which law entries were accepted,
how to evaluate an accepted law on a grid, which residual rows belong to it, and refusals grouped by reason.

A refused entry is only ever described by its law name, where it was tried (subset) and its reason;
nothing in this module reads parameter values of a refused entry.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltm.errors import LtmError
from ltm.lineage import check_file
from ltm.scaling.laws import LAWS, Law

_FLOAT_COLS = ("N", "D", "C", "T", "n_latents", "T_eval", "observed", "predicted", "residual")
# residual-row column and axis label of the one data column a one-variable or T_eval law reads
_X_AXIS = {"Teval": ("T_eval", "inference steps T_eval"), "lnTeval": ("T_eval", "inference steps T_eval"),
           "lnC": ("C", "training compute C (FLOPs)"), "lnN": ("N", "parameters N"), "lnD": ("D", "training tokens D")}


def law_class(law: Law | None) -> str:
    """'teval' (loss vs T_eval on one checkpoint), 'one_var' (one run-level variable) or 'multi'."""
    if law is None or len(law.columns) > 1:
        return "multi"
    return "teval" if _X_AXIS[law.columns[0]][0] == "T_eval" else "one_var"


def x_variable(law: Law) -> tuple[str, str]:
    """(residual-row column, axis label) of a one-variable or T_eval law."""
    return _X_AXIS[law.columns[0]]


def subset_text(subset: dict[str, Any] | None) -> str:
    parts = []
    for k, v in (subset or {}).items():
        if v is None:
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts) or "all runs"


def read_residuals(path: Path) -> list[dict[str, Any]]:
    """residuals.csv rows with numeric columns as floats (NaN where empty)."""
    if not Path(path).is_file():
        raise LtmError(f"missing scaling residuals: {path}")
    check_file(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise LtmError(f"cannot read {path}: {exc.strerror or exc}") from None
    out = []
    for i, row in enumerate(rows):
        r: dict[str, Any] = dict(row)
        for col in _FLOAT_COLS:
            v = row.get(col)
            try:
                r[col] = float(v) if v not in (None, "") else math.nan
            except ValueError:
                raise LtmError(f"{path}: row {i + 2} has a non-numeric {col!r} ({v!r})") from None
        out.append(r)
    return out


def cols_of(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The data columns a Law reads, built from residual rows."""
    col = lambda k: np.array([r[k] for r in rows], float)  # noqa: E731
    teval = col("T_eval")
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"lnN": np.log(col("N")), "lnD": np.log(col("D")), "lnC": np.log(col("C")),
                "lnT1": np.log1p(col("T")), "lnZ1": np.log1p(np.nan_to_num(col("n_latents"))),
                "Teval": np.nan_to_num(teval), "lnTeval": np.log(np.where(teval > 0, teval, np.nan))}


@dataclass
class Accepted:
    """One accepted law entry of fit.json, with its Law (from the registry, by the entry's law_id) and the
    residual rows it produced."""

    family: str
    loss_kind: str
    entry: dict[str, Any]
    law: Law | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.entry["law"]

    @property
    def label(self) -> str:
        return f"{self.name} [{subset_text(self.entry.get('subset'))}]"

    def theta(self) -> np.ndarray | None:
        th = self.entry.get("theta")
        if self.law is None or not isinstance(th, dict) or any(p not in th for p in self.law.params):
            return None
        return np.array([th[p] for p in self.law.params], float)

    def predict(self, cols: dict[str, np.ndarray]) -> np.ndarray | None:
        """Predicted loss (not log) at the given columns; None when the law cannot be rebuilt."""
        th = self.theta()
        return None if th is None else np.exp(self.law.predict(th, cols))

    def band(self, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """95 % percentile band from stored bootstrap parameter replicates (bootstrap.theta_samples),
        when the scaling stage stored them; marginal parameter CIs are not combined into a band."""
        samples = (self.entry.get("bootstrap") or {}).get("theta_samples")
        if self.law is None or not samples:
            return None
        preds = [np.exp(self.law.predict(np.asarray(s, float), cols)) for s in samples
                 if s is not None and len(s) == self.law.n_params and np.all(np.isfinite(s))]
        if len(preds) < 10:
            return None
        lo, hi = np.percentile(np.stack(preds), [2.5, 97.5], axis=0)
        return lo, hi


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def _key(r: dict[str, Any]) -> tuple:
    return (r["run"], r["D"], None if math.isnan(r["T_eval"]) else r["T_eval"])


def attach_rows(acc: Accepted, rows: list[dict[str, Any]]) -> None:
    """Residual rows of one accepted entry. Its in-fit rows are those of the same (family, kind, law id)
    whose stored prediction the entry's own θ reproduces (this separates equal law names fitted to
    different subsets); its held-out and excluded rows are matched through those in-fit rows."""
    same = [r for r in rows if r.get("family") == acc.family and r.get("loss_kind") == acc.loss_kind
            and r.get("law_id") == acc.entry.get("law_id")]
    fit_rows = [r for r in same if r.get("role") == "in_fit"]
    if not fit_rows:
        return
    pred = acc.predict(cols_of(fit_rows))
    if pred is None:
        return
    mine = [r for r, p in zip(fit_rows, pred) if _close(float(p), r["predicted"])]
    keys = {_key(r) for r in mine}
    subsets = {r.get("subset") for r in mine}
    held = [r for r in same if r.get("role") == "held_out" and _key(r) in keys and r.get("subset") in subsets]
    excl = [r for r in same if r.get("role") == "excluded" and r.get("subset") in subsets]
    acc.rows = mine + held + excl


def accepted_laws(fit: dict[str, Any], residual_rows: list[dict[str, Any]]) -> list[Accepted]:
    out = []
    for g in fit.get("groups", []):
        for e in g.get("laws", []):
            if e.get("status") == "accepted":
                acc = Accepted(g["family"], g["loss_kind"], e, LAWS.get(str(e.get("law_id"))))
                attach_rows(acc, residual_rows)
                out.append(acc)
    return out


def refusals(fit: dict[str, Any]) -> list[dict[str, Any]]:
    """Refused entries grouped by (family, kind, law, reason with the law name stripped): one row lists
    every subset that failed the same way. Only names, subsets and reasons: never parameter values."""
    grouped: dict[tuple, list[str]] = {}
    for g in fit.get("groups", []):
        for e in g.get("laws", []):
            if e.get("status") == "accepted":
                continue
            reason = str(e.get("reason") or "no reason recorded").strip().removeprefix(f"{e['law']}: ")
            key = (g["family"], g["loss_kind"], e["law"], reason.splitlines()[0])
            grouped.setdefault(key, []).append(subset_text(e.get("subset")))
    return [{"family": k[0], "loss_kind": k[1], "law": k[2], "reason": k[3], "subsets": v}
            for k, v in grouped.items()]


def count_laws(fit: dict[str, Any]) -> tuple[int, int]:
    """(accepted, total) law entries."""
    laws = [e for g in fit.get("groups", []) for e in g.get("laws", [])]
    return sum(e.get("status") == "accepted" for e in laws), len(laws)
