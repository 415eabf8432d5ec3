"""Laws beyond the main L(N, D): one-variable fallbacks, the compute envelope L(C), the extra axes
T and N_z (candidate forms picked by held-out error), and loss vs T_eval on fixed checkpoints.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ltm.scaling.analyse import Outcome, Split, attach_bootstrap, run_law
from ltm.scaling.checks import MIN_DISTINCT, Design
from ltm.scaling.config import Settings
from ltm.scaling.laws import AXIS_LAWS, ENVELOPE, ONE_VARIABLE, TEVAL_LAWS
from ltm.scaling.records import Points, distinct

_AXIS = {"T": "T", "N_z": "Nz"}  # axis → Points attribute
AXIS_MIN_SPAN = 4.0  # an extra axis must span this factor (docs/scaling.md §3.8.3)
AXIS_RUNS_PER_PARAM = 5  # runs needed per extra-axis parameter, beyond the L(N, D) minimum
TEVAL_POINTS_PER_PARAM = 2.0  # one checkpoint, fixed eval seeds: less noise than across runs (§3.8.4)


def _groups_by(values: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Row masks of equal values (relative 1e-6), NaN as its own value."""
    v = np.asarray(values, float)
    out = [(math.nan, np.isnan(v))] if np.isnan(v).any() else []
    return out + [(float(x), np.isfinite(v) & (np.abs(np.log(np.maximum(v, 1e-300)) - np.log(x)) <= 1e-6))
                  for x in distinct(v)]


def one_variable(p: Points, st: Settings, tags: dict[str, Any]) -> list[Outcome]:
    """L(N) at fixed D, L(N) at fixed D/N and L(D) at fixed N: what a grid too small for L(N, D) may support."""
    by = {"D": p.D, "D/N": p.D / p.N, "N": p.N}
    outs = []
    for (var, fixed), law in ONE_VARIABLE.items():
        for value, mask in _groups_by(by[fixed]):
            sub = p.take(mask)
            x = np.exp(sub.cols()[law.columns[0]])
            if distinct(x).size < MIN_DISTINCT:
                continue  # cannot support any exponent: not worth a refusal line
            design = Design(axes={var: x})
            split = _leave_top_out(sub, design, x, var)
            outs.append(run_law(law, sub, st, {fixed: value}, design, tags, heldout=split))
    return outs


def _leave_top_out(p: Points, design: Design, x: np.ndarray, var: str) -> Split:
    """Held-out split that predicts the largest value of x. Leaving it out removes one distinct value,
    so the training part may have one fewer than the full design needs."""
    top = float(np.max(x))
    mask = x < top * (1 - 1e-9)
    train = design.restrict(mask, spans={}, min_distinct={var: MIN_DISTINCT - 1})
    return Split(p.take(mask), p.take(~mask), f"train on {var} < {top:.4g}, predict {var} = {top:.4g}", train)


def pareto(p: Points) -> np.ndarray:
    """Indices of runs on the lower envelope: lower loss than every run with less compute."""
    order = np.argsort(p.C_fit, kind="stable")
    loss = p.loss[order]
    return order[loss < np.minimum.accumulate(np.concatenate([[np.inf], loss[:-1]]))]


def envelope(p: Points, st: Settings, tags: dict[str, Any]) -> Outcome:
    """Kaplan-style L(C) = E_C + A_C·C^(−γ) on the Pareto-optimal runs of a family (all configs)."""
    sub = p.take(pareto(p))
    design = Design(axes={"C": sub.C_fit})
    out = run_law(ENVELOPE, sub, st, {"runs": "pareto-optimal"}, design, tags,
                  heldout=_leave_top_out(sub, design, sub.C_fit, "C"))
    if out.accepted:  # Kaplan's names: gamma is alpha_C
        out.entry["note"] = "A_C = A, gamma = alpha in L = E + A/C^alpha"
    return out


def extra_axis(p: Points, axis: str, st: Settings, tags: dict[str, Any]) -> list[dict[str, Any]]:
    """For each value of the other axis, fit every candidate form in `axis` and pick by held-out error."""
    attr = _AXIS[axis]
    other = "N_z" if axis == "T" else "T"
    results = []
    for other_value, mask in _groups_by(getattr(p, _AXIS[other])):
        sub = p.take(mask)
        x = getattr(sub, attr)
        if distinct(x).size < 2:
            continue
        outcomes: dict[str, Outcome] = {}
        for name, law in AXIS_LAWS[axis].items():
            # the L(N, D) minimum for its 5 parameters plus AXIS_RUNS_PER_PARAM runs per extra one
            need = max(math.ceil(st.min_points_per_param * law.n_params),
                       math.ceil(st.min_points_per_param * 5) + AXIS_RUNS_PER_PARAM * (law.n_params - 5))
            design = Design(axes={"N": sub.N, "D/N": sub.D / sub.N, axis: x}, spans={axis: AXIS_MIN_SPAN},
                            min_points=need)
            outcomes[name] = run_law(law, sub, st, {other: other_value}, design, tags,
                                     heldout=_leave_top_out(sub, design, x, axis), n_bootstrap=0)
        sel = _choose(outcomes, sub, f"held-out MAE (largest {axis} left out)")
        sel["reason"] = None if sel["chosen"] else "no form has an accepted fit with a held-out error"
        if sel["chosen"] is not None and st.n_bootstrap > 0:  # only the winner: each form costs a multi-start fit
            attach_bootstrap(outcomes[sel["chosen"]], sub, st, st.n_bootstrap)
        results.append({"axis": axis, "subset": {other: other_value}, "selection": sel, "outcomes": outcomes})
    return results


def _choose(outcomes: dict[str, Outcome], p: Points, by: str) -> dict[str, Any]:
    """Table of candidate forms (status, held-out MAE, AIC/BIC) and the accepted one with the lowest
    held-out MAE (`chosen`). AIC/BIC use a Gaussian likelihood of the log residuals and are reported, not used."""
    table = []
    for name, out in outcomes.items():
        e = out.entry
        row: dict[str, Any] = {"form": name, "status": e["status"], "reason": e.get("reason")}
        if out.accepted:
            h = e["fit_quality"].get("heldout", {})
            row["heldout_mae"] = h.get("mae") if h.get("available") else None
            row["heldout_reason"] = None if h.get("available") else h.get("reason")
            resid, k = out.fit.law.predict(out.fit.theta, p.cols()) - p.lnL, out.fit.law.n_params
            ll = resid.size * math.log(max(float(np.mean(resid**2)), 1e-300))
            row.update(aic=ll + 2 * k, bic=ll + k * math.log(resid.size))
        table.append(row)
    scored = [r for r in table if r.get("heldout_mae") is not None]
    return {"by": by, "chosen": min(scored, key=lambda r: r["heldout_mae"])["form"] if scored else None,
            "table": table}


def teval_curves(p: Points, st: Settings, tags: dict[str, Any]) -> list[dict[str, Any]]:
    """Loss vs eval-time inner steps on each fixed checkpoint: saturating power vs exponential."""
    results = []
    has = np.isfinite(p.Teval) & (p.Teval >= 1) & ~p.diverged
    keys = sorted({(str(r), float(d)) for r, d in zip(p.run[has], p.D[has])})
    for run, tokens in keys:
        sub = p.take(has & (p.run.astype(str) == run) & (p.D == tokens))
        if distinct(sub.Teval).size < 2:
            continue
        tmax = float(np.max(sub.Teval))
        design = Design(axes={"T_eval": sub.Teval}, points_per_param=TEVAL_POINTS_PER_PARAM)
        # held out (docs/scaling.md §3.8.4): fit on T_eval <= T_max/4, predict the largest T_eval
        train = sub.Teval <= tmax / 4
        split = Split(sub.take(train), sub.take(sub.Teval == tmax),
                      f"train on T_eval <= {tmax / 4:g}, predict T_eval = {tmax:g}", design.restrict(train))
        row_tags = {**tags, "subset": f"run={run};tokens={tokens:g}"}
        outcomes = {name: run_law(law, sub, st, {"run": run, "tokens": tokens}, design, row_tags, heldout=split,
                                  residual_bootstrap=True) for name, law in TEVAL_LAWS.items()}
        sel = _choose(outcomes, sub, "held-out MAE at the largest T_eval")
        results.append({"run": run, "tokens": tokens, "selection": sel, "outcomes": outcomes})
    return results
