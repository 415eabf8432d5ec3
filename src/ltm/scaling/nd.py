"""The main law L(N, D) for one (family, loss_kind, T, N_z) configuration, with everything §3-4 asks
around it: compute-optimal frontier at target budgets, δ-sensitivity, a second optimiser, leave-one-
size-out error and the parameter shift when the excluded runs are put back.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ltm.scaling.analyse import Outcome, Split, rows_for, run_law, try_fit
from ltm.scaling.checks import Design, errors, split_mask
from ltm.scaling.config import Settings
from ltm.scaling.fit import Objective, grid_starts, multistart
from ltm.scaling.frontier import chinchilla_G, exponents, fit_ctok, optimal_allocation
from ltm.scaling.laws import ND, PUBLISHED_ND
from ltm.scaling.records import Points

LOSO_MAX_BINS = 8  # leave-one-size-out over at most this many ln N bins (each bin = one refit)
SENSITIVITY_DELTAS = (1e-4, 1e-2)  # refits reported beside the main δ, plus plain least squares (§3.3)
CROSSCHECK_TOL = 0.01  # flag when trust-region least squares moves alpha or beta by more (§3.4)
CI_NARROW_FLAG = 0.005  # flag a 95 % CI of a = beta/(alpha+beta) narrower than this with < 1000 runs
PUBLISHED = [np.array(v) for v in PUBLISHED_ND.values()]  # extra starts for every fit of L(N, D)


def nd_design(p: Points) -> Design:
    return Design(axes={"N": p.N, "D/N": p.D / p.N})


def compute_convention(p: Points) -> tuple[dict[str, Any], list[str]]:
    """Per-token training FLOPs as k·N^p from the records' `flops` (6N when they are missing)."""
    if np.isnan(p.C).any():
        return ({"source": "analytic 6ND (records lack 'flops')", "k": 6.0, "p": 1.0},
                ["records lack 'flops': compute is taken as 6ND, which misstates small models by up to ~50 %"])
    ctok = p.C / p.D
    if np.ptp(np.log(p.N)) < 1e-9:
        return {"source": "measured flops", "k": float(np.median(ctok / p.N)), "p": 1.0, "max_rel_dev": 0.0}, []
    model = fit_ctok(p.N, ctok)
    dev = model["max_rel_dev"]
    warn = [f"per-token FLOPs deviate from k*N^p by up to {dev:.0%}: frontier is approximate"] if dev > 0.1 else []
    return {"source": "measured flops", **model}, warn


def nd_derived(conv: dict[str, Any], targets: list[float]):
    """θ rows → a, b, G and N*, D*, D*/N*, L* at each target budget (vectorised over replicates)."""
    k, pw = conv["k"], conv["p"]

    def derived(th: np.ndarray) -> dict[str, np.ndarray]:
        A, B, E, al, be = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2]), th[:, 3], th[:, 4]
        a, b = exponents(al, be)
        out = {"a": a, "b": b, "G": chinchilla_G(A, B, al, be)}
        for c in targets:
            N, D, L = optimal_allocation(A, B, E, al, be, c, k, pw)
            tag = f"@C={c:.3g}"
            out.update({f"N_opt{tag}": N, f"D_opt{tag}": D, f"D_over_N{tag}": D / N, f"L_opt{tag}": L})
        return out

    return derived


def delta_sensitivity(p: Points, st: Settings, theta: np.ndarray) -> list[dict[str, Any]]:
    """Refit with other δ and with plain least squares (multi-start plus the main optimum as a start)."""
    out = []
    for delta in [*SENSITIVITY_DELTAS, None]:
        best = multistart(ND, p.cols(), p.lnL, replace(st.fit, delta=delta), extra_starts=[theta])[0]
        nat = ND.natural(best.theta)
        a, _ = exponents(nat["alpha"], nat["beta"])
        out.append({"delta": "least_squares" if delta is None else delta, **nat, "a": float(a)})
    return out


def crosscheck(p: Points, st: Settings, theta: np.ndarray) -> dict[str, Any]:
    """An independent optimiser, trust-region least squares with a Huber loss, from the best grid point."""
    cols, lnL, delta = p.cols(), p.lnL, st.fit.delta
    lo, hi = np.array(ND.bounds).T
    x0 = np.clip(grid_starts(Objective(ND, cols, lnL, delta), 1)[0], lo + 1e-9, hi - 1e-9)
    th = least_squares(lambda t: ND.predict(t, cols) - lnL, x0, jac=lambda t: ND.log_jacobian(t, cols),
                       bounds=(lo, hi), loss="huber", f_scale=delta, method="trf", xtol=1e-15, ftol=1e-15,
                       gtol=1e-15, max_nfev=20_000).x
    d = {name: float(th[ND.params.index(name)] - theta[ND.params.index(name)]) for name in ("alpha", "beta")}
    return {"method": "scipy least_squares trf, loss=huber, f_scale=delta", "delta_alpha": d["alpha"],
            "delta_beta": d["beta"], "agrees": bool(max(map(abs, d.values())) <= CROSSCHECK_TOL)}


def leave_one_size_out(p: Points, st: Settings) -> dict[str, Any]:
    """Refit without each model size (or size bin, when there are many) and predict it."""
    lnN = np.log(p.N)
    sizes, bins = np.unique(np.round(lnN, 6), return_inverse=True)
    if sizes.size > LOSO_MAX_BINS:  # quantile bins of ln N
        edges = np.unique(np.quantile(lnN, np.linspace(0, 1, LOSO_MAX_BINS + 1)))
        bins = np.clip(np.searchsorted(edges, lnN, side="right") - 1, 0, edges.size - 2)
    folds = []
    pred = np.full(len(p), np.nan)
    for b in np.unique(bins):
        test = bins == b
        train = p.take(~test)
        fold = {"N_min": float(p.N[test].min()), "N_max": float(p.N[test].max()), "n_test": int(test.sum())}
        fit, refused = try_fit(ND, train, st, nd_design(train), PUBLISHED)
        if fit is None:
            folds.append({**fold, "available": False, "reason": refused})
            continue
        pred[test] = ND.predict(fit.theta, p.take(test).cols())
        folds.append({**fold, "available": True, "mae": errors(pred[test], p.lnL[test])["mae"]})
    ok = np.isfinite(pred)
    summary = errors(pred[ok], p.lnL[ok]) if ok.any() else None
    return {"folds": folds, "pooled": summary, "binned": bool(sizes.size > LOSO_MAX_BINS)}


def analyse_nd(p: Points, excluded: Points, st: Settings, subset: dict[str, Any],
               tags: dict[str, Any]) -> Outcome:
    conv, conv_warn = compute_convention(p)
    targets = [float(np.max(p.C_fit)), 10.0 * float(np.max(p.C_fit))]  # N*, D*, L* reported there (§1.2)
    mask, how = split_mask(st.heldout_rule, st.heldout_fraction, p.C_fit, p.N)
    design = nd_design(p)
    split = Split(p.take(mask), p.take(~mask), how, design.restrict(mask))
    out = run_law(ND, p, st, subset, design, tags, PUBLISHED, nd_derived(conv, targets), split)
    e = out.entry
    e["compute_convention"] = conv
    if not out.accepted:
        return out
    theta = out.fit.theta
    e["warnings"] += conv_warn
    e["target_flops"] = targets
    diag = e["diagnostics"]
    diag["delta_sensitivity"] = delta_sensitivity(p, st, theta)
    diag["crosscheck"] = crosscheck(p, st, theta)
    if not diag["crosscheck"]["agrees"]:
        e["warnings"].append(f"{ND.name}: the trust-region cross-check moves alpha/beta by more than "
                             f"{CROSSCHECK_TOL:g}")
    e["fit_quality"]["leave_one_size_out"] = leave_one_size_out(p, st)
    a_ci = (e["derived"].get("a") or {}).get("ci95")
    if a_ci and a_ci[1] - a_ci[0] < CI_NARROW_FLAG and len(np.unique(p.run)) < 1000:
        e["warnings"].append(f"{ND.name}: 95 % CI of a = beta/(alpha+beta) is only {a_ci[1] - a_ci[0]:.2g} wide "
                             "with < 1000 runs: almost surely an optimiser artefact")
    if len(excluded):
        e["exclusion_sensitivity"] = _with_excluded(p, excluded, st, theta)
        out.rows += rows_for(ND, theta, excluded, "excluded", "full", tags)
    return out


def _with_excluded(p: Points, excluded: Points, st: Settings, theta: np.ndarray) -> dict[str, Any]:
    """Fit again with the excluded runs put back and report how far the parameters move."""
    both = p.concat(excluded)
    fit, refused = try_fit(ND, both, st, nd_design(both), PUBLISHED)
    if fit is None:
        return {"n_points": len(both), "available": False, "reason": refused}
    with_ex, without = fit.natural(), ND.natural(theta)
    return {"n_points": len(both), "available": True, "params": with_ex,
            "shift": {k: with_ex[k] - without[k] for k in without}}
