"""Entry points for the pipeline stage: `run_scaling(records, cfg)` and `write_outputs(result, out_dir)`."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

import ltm
from ltm.families import FAMILIES
from ltm.io import sha256_bytes, write_json, write_text
from ltm.progress import progress
from ltm.scaling.analyse import Outcome
from ltm.scaling.axes import AXIS_MIN_SPAN, AXIS_RUNS_PER_PARAM, TEVAL_POINTS_PER_PARAM
from ltm.scaling.checks import EXPONENT_RANGE, ID_FLAG, ID_REFUSE, MIN_DISTINCT, MIN_RANGE_FLAG
from ltm.scaling.config import Settings, resolve
from ltm.scaling.fit import AGREE_PARAM, AGREE_REL, BOUND_TOL, MIN_AGREE, RESTART_REL, TOLERANCES, one_blas_thread
from ltm.scaling.frontier import crossover, optimal_allocation
from ltm.scaling.group import analyse_group
from ltm.scaling.nd import CI_NARROW_FLAG, CROSSCHECK_TOL, SENSITIVITY_DELTAS
from ltm.scaling.records import group, is_bound, normalize, to_points
from ltm.scaling.uncertainty import process_map

SCHEMA = "ltm.scaling.fit/1"
RESIDUAL_COLUMNS = ("family", "loss_kind", "law", "law_id", "subset", "run", "N", "D", "C", "T", "n_latents", "T_eval",
                    "observed", "predicted", "residual", "role", "split")


def _frontier_fn(out: Outcome, theta: np.ndarray):
    conv = out.entry["compute_convention"]
    A, B, E, al, be = np.exp(theta[0]), np.exp(theta[1]), np.exp(theta[2]), theta[3], theta[4]
    return lambda lnC: optimal_allocation(A, B, E, al, be, np.exp(lnC), conv["k"], conv["p"])[2]


def comparisons(nd_fits: list[tuple]) -> list[dict[str, Any]]:
    """Compute where an LTM frontier crosses an AR frontier (bootstrap CI from paired replicates)."""
    out = []
    for pl, sl, ol in [f for f in nd_fits if FAMILIES[f[0].family].has_latents]:
        for pa, _, oa in [f for f in nd_fits if FAMILIES[f[0].family].exact_likelihood]:
            lo = math.log(min(pl.C_fit.min(), pa.C_fit.min()))
            hi = math.log(100 * max(pl.C_fit.max(), pa.C_fit.max()))
            c = crossover(_frontier_fn(ol, ol.fit.theta), _frontier_fn(oa, oa.fit.theta), (lo, hi))
            kinds = [f"{q.loss_kind} ({'bound' if is_bound(q.loss_kind) else 'exact'})" for q in (pl, pa)]
            row: dict[str, Any] = {"ltm": {"loss_kind": pl.loss_kind, "subset": sl}, "ar": {"loss_kind": pa.loss_kind},
                                   "label": f"ltm {kinds[0]} vs ar {kinds[1]}",
                                   "searched_flops": [math.exp(lo), math.exp(hi)], "crossover_flops": c}
            if ol.boot is not None and oa.boot is not None:  # paired replicates (both have B of them)
                ok = ol.boot.ok() & oa.boot.ok()
                cs = [crossover(_frontier_fn(ol, tl), _frontier_fn(oa, ta), (lo, hi), 101)
                      for tl, ta in zip(ol.boot.samples[ok], oa.boot.samples[ok])]
                got = np.array([x for x in cs if x is not None])
                row["bootstrap"] = {"n": len(cs), "n_no_crossing": len(cs) - got.size,
                                    "ci95": np.percentile(got, [2.5, 97.5]).tolist() if got.size > 1 else None}
            out.append(row)
    return out


def recorded_config(st: Settings) -> dict[str, Any]:
    """fit.json's `config`: the `fit` keys and every fixed choice of the method, under the names fit.json
    has always used (no start-grid override, no loss cut, final checkpoints only, default budgets)."""
    return {**asdict(st), "sensitivity_deltas": list(SENSITIVITY_DELTAS), "grid": {}, "published_starts": True,
            **TOLERANCES, "min_agree_starts": MIN_AGREE, "agree_rel_tol": AGREE_REL,
            "agree_param_tol": AGREE_PARAM, "bound_tol": BOUND_TOL, "restart_rel_tol": RESTART_REL,
            "crosscheck_tol": CROSSCHECK_TOL, "bootstrap_check_every": st.boot.check_every, "n_jobs": st.boot.n_jobs,
            "ci_narrow_flag": CI_NARROW_FLAG, "leave_one_size_out": True, "min_distinct": MIN_DISTINCT,
            "min_range_ratio": MIN_RANGE_FLAG, "identifiability_refuse": ID_REFUSE,
            "identifiability_flag": ID_FLAG, "exponent_range": list(EXPONENT_RANGE),
            "axis_min_span": AXIS_MIN_SPAN, "axis_runs_per_param": AXIS_RUNS_PER_PARAM,
            "teval_points_per_param": TEVAL_POINTS_PER_PARAM, "max_loss": None, "use_checkpoints": False,
            "target_flops": []}


@one_blas_thread()
def run_scaling(records: list[dict[str, Any]], cfg: dict[str, Any] | None = None, processes: int = 1) -> dict[str, Any]:
    """Fit every law the records support, per (family, loss_kind); see the package docstring. The groups
    are independent: with `processes` > 1 they are fitted side by side, with the same result."""
    st = resolve(cfg)
    recs = normalize(records)
    result: dict[str, Any] = {"schema": SCHEMA, "code_version": ltm.__version__,
                              "data_hash": sha256_bytes(json.dumps(recs, sort_keys=True, default=str).encode()),
                              "config": recorded_config(st), "groups": [], "comparisons": [], "warnings": [],
                              "residual_rows": []}
    nd_fits = []
    groups = group(recs)
    fitted = process_map(analyse_group, [(to_points(g), st) for g in groups.values()], processes)
    for (family, kind), (entry, outs, fits) in progress(zip(groups, fitted), total=len(groups),
                                                        desc="scaling: fit groups", unit="group"):
        result["groups"].append(entry)
        nd_fits += fits
        for o in outs:
            result["residual_rows"] += o.rows
            result["warnings"] += [f"[{family}/{kind}] {w}" for w in o.entry.get("warnings", [])]
        if not entry["laws"]:
            result["warnings"].append(f"[{family}/{kind}] every run was excluded; nothing to fit (see 'excluded')")
        elif not entry["accepted"]:
            result["warnings"].append(f"[{family}/{kind}] no law passed the checks; see each law's reason")
        noise = entry["seed_noise"]
        if noise is not None and not noise["measured"]:
            result["warnings"].append(f"[{family}/{kind}] seed noise not measured (need >= 3 seeds on >= 2 configs)")
    result["comparisons"] = comparisons(nd_fits)
    return _clean(result)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays → Python, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write fit.json (everything but the residual rows) and residuals.csv, each atomically."""
    out_dir = Path(out_dir)
    fit_path, csv_path = out_dir / "fit.json", out_dir / "residuals.csv"
    write_json(fit_path, {k: v for k, v in result.items() if k != "residual_rows"})
    write_csv(csv_path, RESIDUAL_COLUMNS, result.get("residual_rows", []))
    return {"fit": fit_path, "residuals": csv_path}


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    """`rows` under `columns`, atomically; a missing or None value is written empty, other keys are ignored."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def format_summary(result: dict[str, Any]) -> str:
    """A short text report: accepted laws with 95 % CIs, refused laws with their reason only."""
    lines = []
    for g in result["groups"]:
        kind = "bound" if g["loss_is_bound"] else "exact"
        lines.append(f"{g['family']} / {g['loss_kind']} ({kind}): {g['n_fitted']} runs fitted, "
                     f"{len(g['excluded'])} excluded" + ("" if g["laws"] else "; nothing left to fit"))
        for e in g["laws"]:
            where = " ".join(f"{k}={v}" for k, v in (e.get("subset") or {}).items())
            head = f"  {e['law']}{' [' + where + ']' if where else ''}"
            if e["status"] != "accepted":
                lines.append(f"{head}: REFUSED - {e['reason']}")
                continue
            parts = [f"{k}={v['estimate']:.4g}" + (" [{:.4g}, {:.4g}]".format(*v["ci95"]) if v.get("ci95") else "")
                     for k, v in e["params"].items()]
            lines.append(f"{head}: " + ", ".join(parts))
    for c in result.get("comparisons", []):
        lines.append(f"crossover {c['label']}: {c['crossover_flops']}")
    return "\n".join(lines)
