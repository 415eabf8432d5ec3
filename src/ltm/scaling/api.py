"""Entry points for the pipeline stage: `run_scaling(records, cfg)` and `write_outputs(result, out_dir)`."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

import ltm
from ltm.families import FAMILIES
from ltm.io import atomic_path, sha256_bytes, write_json
from ltm.progress import progress
from ltm.scaling.analyse import Outcome
from ltm.scaling.axes import (
    AXIS_MIN_SPAN,
    AXIS_RUNS_PER_PARAM,
    TEVAL_POINTS_PER_PARAM,
    envelope,
    extra_axis,
    one_variable,
    teval_curves,
)
from ltm.scaling.config import Settings, resolve
from ltm.scaling.fit import one_blas_thread
from ltm.scaling.frontier import crossover, optimal_allocation
from ltm.scaling.nd import CI_NARROW_FLAG, CROSSCHECK_TOL, SENSITIVITY_DELTAS, analyse_nd
from ltm.scaling.records import Points, group, is_bound, main_mask, normalize, to_points

SCHEMA = "ltm.scaling.fit/1"
RESIDUAL_COLUMNS = ("family", "loss_kind", "law", "law_id", "subset", "run", "N", "D", "C", "T", "n_latents", "T_eval",
                    "observed", "predicted", "residual", "role", "split")


def exclusions(p: Points, st: Settings) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Explicit, logged exclusion rules (docs/scaling.md §3.2). Returns the keep mask and the log."""
    keep = np.ones(len(p), bool)
    log = []
    cut = st.cfg["min_tokens_per_param"]
    rules = [(p.diverged, "diverged"), (~p.final, "non-final checkpoint"), (p.D / p.N < cut, f"D/N < {cut:g}")]
    for mask, reason in rules:
        for i in np.nonzero(mask & keep)[0]:
            log.append({"run": str(p.run[i]), "tokens": float(p.D[i]), "reason": reason})
        keep &= ~mask
    return keep, log


def seed_noise(p: Points, delta: float) -> dict[str, Any]:
    """Pooled within-config SD of ln L over seeds; measured when >= 3 seeds exist on >= 2 configs."""
    key = np.stack([np.round(np.log(p.N), 6), np.round(np.log(p.D), 6), p.T, np.nan_to_num(p.Nz, nan=-1)], 1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    ss, dof = 0.0, 0
    for g in np.nonzero(counts >= 2)[0]:
        x = p.lnL[inv == g]
        ss += float(np.sum((x - x.mean()) ** 2))
        dof += x.size - 1
    measured = int((counts >= 3).sum()) >= 2
    out: dict[str, Any] = {"measured": measured, "configs_with_3_seeds": int((counts >= 3).sum()),
                           "sd_log_loss": math.sqrt(ss / dof) if dof else None}
    if out["sd_log_loss"] is not None and out["sd_log_loss"] > 10 * delta:
        out["note"] = "seed noise >> huber delta: the Huber loss acts almost like L1 on these data"
    return out


def _config_keys(p: Points) -> list[tuple[float, float | None]]:
    """Each row's (T, N_z) configuration; the main law is fitted per configuration."""
    return [(float(t), None if np.isnan(z) else float(z)) for t, z in zip(p.T, p.Nz)]


def _tags(p: Points, subset: dict[str, Any]) -> dict[str, Any]:
    return {"family": p.family, "loss_kind": p.loss_kind,
            "subset": ";".join(f"{k}={v}" for k, v in subset.items() if v is not None)}


def analyse_group(p_all: Points, st: Settings) -> tuple[dict[str, Any], list[Outcome], list[tuple]]:
    """Every law one (family, loss_kind) group supports. Returns (group entry, outcomes, ND fits)."""
    pm = p_all.take(main_mask(p_all))
    keep, excluded_log = exclusions(pm, st)
    kept, dropped = pm.take(keep), pm.take(~keep)
    outcomes: list[tuple[str, Outcome]] = []
    nd_fits = []
    keys, dropped_keys = _config_keys(kept), _config_keys(dropped)
    for k in sorted(set(keys), key=lambda k: (k[0], -1 if k[1] is None else k[1])):
        # a family without latents has one configuration, reported without a subset (and takes every dropped run)
        subset = {} if (not FAMILIES[kept.family].has_latents and k == (0.0, None)) else {"T": k[0], "n_latents": k[1]}
        sub = kept.take(np.array([x == k for x in keys], bool))
        dsub = dropped.take(np.array([not subset or x == k for x in dropped_keys], bool))
        out = analyse_nd(sub, dsub, st, subset, _tags(kept, subset))
        outcomes.append(("main", out))
        if out.accepted:
            nd_fits.append((p_all, subset, out))
        else:  # show what the grid does support
            outcomes += [("fallback", o) for o in one_variable(sub, st, _tags(kept, subset))]
    if len(kept):
        outcomes.append(("envelope", envelope(kept, st, _tags(kept, {}))))
    axis_sel = []
    if FAMILIES[p_all.family].has_latents:
        for axis in ("T", "N_z"):
            for sel in extra_axis(kept, axis, st, _tags(kept, {})):
                outcomes += [(f"axis:{axis}", o) for o in sel.pop("outcomes").values()]
                axis_sel.append(sel)
    teval_sel = []
    for sel in teval_curves(p_all, st, _tags(p_all, {})):
        outcomes += [("teval", o) for o in sel.pop("outcomes").values()]
        teval_sel.append(sel)
    laws = [{"role": role, **o.entry} for role, o in outcomes]
    entry = {"family": p_all.family, "loss_kind": p_all.loss_kind, "loss_is_bound": is_bound(p_all.loss_kind),
             "n_records": len(p_all), "n_main": len(pm), "n_fitted": len(kept), "excluded": excluded_log,
             "seed_noise": seed_noise(kept, st.fit.delta) if len(kept) else None, "laws": laws,
             "axis_selection": axis_sel, "teval_selection": teval_sel,
             "accepted": [" ".join([e["law"], *(f"{k}={v}" for k, v in e["subset"].items())])
                          for e in laws if e["status"] == "accepted"]}
    return entry, [o for _, o in outcomes], nd_fits


def _frontier_fn(out: Outcome, theta: np.ndarray):
    conv = out.entry["compute_convention"]
    A, B, E, al, be = np.exp(theta[0]), np.exp(theta[1]), np.exp(theta[2]), theta[3], theta[4]
    return lambda lnC: optimal_allocation(A, B, E, al, be, np.exp(lnC), conv["k"], conv["p"])[2]


def comparisons(nd_fits: list[tuple], st: Settings) -> list[dict[str, Any]]:
    """Compute where an LTM frontier crosses an AR frontier (bootstrap CI from paired replicates)."""
    out = []
    ltm_fits = [f for f in nd_fits if FAMILIES[f[0].family].has_latents]
    ar_fits = [f for f in nd_fits if FAMILIES[f[0].family].exact_likelihood]
    for pl, sl, ol in ltm_fits:
        for pa, _, oa in ar_fits:
            lo = math.log(min(pl.C_fit.min(), pa.C_fit.min()))
            hi = math.log(100 * max(pl.C_fit.max(), pa.C_fit.max()))
            c = crossover(_frontier_fn(ol, ol.fit.theta), _frontier_fn(oa, oa.fit.theta), (lo, hi))
            kinds = [f"{q.loss_kind} ({'bound' if is_bound(q.loss_kind) else 'exact'})" for q in (pl, pa)]
            row: dict[str, Any] = {
                "ltm": {"loss_kind": pl.loss_kind, "subset": sl}, "ar": {"loss_kind": pa.loss_kind},
                "label": f"ltm {kinds[0]} vs ar {kinds[1]}",
                "searched_flops": [math.exp(lo), math.exp(hi)], "crossover_flops": c,
            }
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
    fs, cs, bs = st.fit, st.checks, st.boot
    return {**st.cfg, "sensitivity_deltas": list(SENSITIVITY_DELTAS), "grid": {}, "published_starts": True,
            "ftol": fs.ftol, "gtol": fs.gtol, "maxiter": fs.maxiter, "min_agree_starts": fs.min_agree,
            "agree_rel_tol": fs.agree_rel, "agree_param_tol": fs.agree_param, "bound_tol": fs.bound_tol,
            "restart_rel_tol": fs.restart_rel, "crosscheck_tol": CROSSCHECK_TOL,
            "bootstrap_check_every": bs.check_every, "n_jobs": bs.n_jobs, "ci_narrow_flag": CI_NARROW_FLAG,
            "leave_one_size_out": True, "min_distinct": cs.min_distinct, "min_range_ratio": cs.min_range_flag,
            "identifiability_refuse": cs.id_refuse, "identifiability_flag": cs.id_flag,
            "exponent_range": list(cs.exponent_range),
            "axis_min_span": AXIS_MIN_SPAN, "axis_runs_per_param": AXIS_RUNS_PER_PARAM,
            "teval_points_per_param": TEVAL_POINTS_PER_PARAM, "max_loss": None, "use_checkpoints": False,
            "target_flops": []}


@one_blas_thread()
def run_scaling(records: list[dict[str, Any]], cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit every law the records support, per (family, loss_kind); see the package docstring."""
    st = resolve(cfg)
    recs = normalize(records)
    result: dict[str, Any] = {"schema": SCHEMA, "code_version": ltm.__version__,
                              "data_hash": sha256_bytes(json.dumps(recs, sort_keys=True, default=str).encode()),
                              "config": recorded_config(st), "groups": [], "comparisons": [], "warnings": [],
                              "residual_rows": []}
    nd_fits = []
    groups = group(recs)
    for (family, kind), grecs in progress(groups.items(), total=len(groups), desc="scaling: fit groups",
                                          unit="group"):
        entry, outs, fits = analyse_group(to_points(grecs), st)
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
    result["comparisons"] = comparisons(nd_fits, st)
    return _clean(result)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars → Python, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write fit.json (everything but the residual rows) and residuals.csv, each atomically."""
    out_dir = Path(out_dir)
    fit_path, csv_path = out_dir / "fit.json", out_dir / "residuals.csv"
    write_json(fit_path, {k: v for k, v in result.items() if k != "residual_rows"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESIDUAL_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in result.get("residual_rows", []):
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in RESIDUAL_COLUMNS})
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return {"fit": fit_path, "residuals": csv_path}


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
            parts = []
            for k, v in e["params"].items():
                ci = v.get("ci95")
                parts.append(f"{k}={v['estimate']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""))
            lines.append(f"{head}: " + ", ".join(parts))
    for c in result.get("comparisons", []):
        lines.append(f"crossover {c['label']}: {c['crossover_flops']}")
    return "\n".join(lines)
