"""One (family, loss_kind) group: the logged exclusions, seed noise, and every law its runs support (the
main law per (T, N_z) configuration, fallbacks, envelope, extra axes, T_eval curves) as one fit.json entry."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ltm.families import FAMILIES
from ltm.scaling.analyse import Outcome
from ltm.scaling.axes import envelope, extra_axis, one_variable, teval_curves
from ltm.scaling.config import Settings
from ltm.scaling.nd import analyse_nd
from ltm.scaling.records import Points, is_bound, main_mask


def exclusions(p: Points, st: Settings) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Explicit, logged exclusion rules (docs/scaling.md §3.2). Returns the keep mask and the log."""
    keep = np.ones(len(p), bool)
    log = []
    cut = st.min_tokens_per_param
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
    n3 = int((counts >= 3).sum())
    out: dict[str, Any] = {"measured": n3 >= 2, "configs_with_3_seeds": n3,
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
    latents = FAMILIES[p_all.family].has_latents
    outcomes: list[tuple[str, Outcome]] = []
    nd_fits = []
    keys, dropped_keys = _config_keys(kept), _config_keys(dropped)
    for k in sorted(set(keys), key=lambda k: (k[0], -1 if k[1] is None else k[1])):
        # a family without latents has one configuration, reported without a subset (and takes every dropped run)
        subset = {} if (not latents and k == (0.0, None)) else {"T": k[0], "n_latents": k[1]}
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
    axis_sel = [(f"axis:{a}", sel) for a in ("T", "N_z") if latents for sel in extra_axis(kept, a, st, _tags(kept, {}))]
    teval_sel = [("teval", sel) for sel in teval_curves(p_all, st, _tags(p_all, {}))]
    for role, sel in axis_sel + teval_sel:  # the selections keep their tables; the outcomes join the laws
        outcomes += [(role, o) for o in sel.pop("outcomes").values()]
    laws = [{"role": role, **o.entry} for role, o in outcomes]
    entry = {"family": p_all.family, "loss_kind": p_all.loss_kind, "loss_is_bound": is_bound(p_all.loss_kind),
             "n_records": len(p_all), "n_main": len(pm), "n_fitted": len(kept), "excluded": excluded_log,
             "seed_noise": seed_noise(kept, st.huber_delta) if len(kept) else None, "laws": laws,
             "axis_selection": [sel for _, sel in axis_sel], "teval_selection": [sel for _, sel in teval_sel],
             "accepted": [" ".join([e["law"], *(f"{k}={v}" for k, v in e["subset"].items())])
                          for e in laws if e["status"] == "accepted"]}
    return entry, [o for _, o in outcomes], nd_fits
