"""What a design must offer a law, and how good a fit is (docs/scaling.md §3.6-3.7): design minimums and
identifiability refuse a law with a one-line `FitError`, weak designs and implausible optima are flagged.
Errors are in nats and relative, predicted − observed; the primary check is extrapolation to held-out runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ltm.scaling.fit import FitError
from ltm.scaling.laws import Cols, Law
from ltm.scaling.records import distinct

# The method's fixed rules (docs/scaling.md §3.7); the points per parameter come from params.yaml.
MIN_DISTINCT = 3
MIN_RANGE_FLAG = 8.0  # flag an axis spanning less than this factor
ID_REFUSE, ID_FLAG = 1e-5, 1e-3
EXPONENT_RANGE = (0.05, 1.5)


@dataclass(frozen=True)
class Design:
    """What a law needs from the data: axes (label → values) with ≥ min_distinct values each, required
    spans (label → max/min ratio), and a point count (`min_points`, else points_per_param × parameters)."""

    axes: dict[str, np.ndarray] = field(default_factory=dict)
    spans: dict[str, float] = field(default_factory=dict)
    min_points: int | None = None
    points_per_param: float | None = None
    min_distinct: dict[str, int] = field(default_factory=dict)  # per-axis overrides

    def restrict(self, mask: np.ndarray, **changes: Any) -> "Design":
        """The same requirements on a subset of the rows (a training split)."""
        return replace(self, axes={k: v[mask] for k, v in self.axes.items()}, **changes)


def check_design(law: Law, lnL: np.ndarray, design: Design, min_points_per_param: float) -> list[str]:
    """Refuse designs that cannot support `law`; return flags for weak ones."""
    n, p = lnL.size, law.n_params
    per_param = design.points_per_param or min_points_per_param
    need = int(np.ceil(per_param * p)) if design.min_points is None else design.min_points
    if n < need:
        raise FitError(f"{law.name}: {n} points for {p} free parameters (need at least {need})")
    if np.ptp(lnL) < 1e-12:
        raise FitError(f"{law.name}: all losses are equal; there is nothing to fit")
    warnings = []
    for label, values in design.axes.items():
        d = distinct(values)
        need_distinct = design.min_distinct.get(label, MIN_DISTINCT)
        if d.size < need_distinct:
            raise FitError(f"{law.name}: only {d.size} distinct {label} value(s) (need {need_distinct}); "
                           f"{label} is not varied enough to fit its exponent")
        ratio = float(d[-1] / d[0]) if d[0] > 0 else float("inf")
        required = design.spans.get(label)
        if required is not None and ratio < required * (1 - 1e-9):
            raise FitError(f"{law.name}: {label} spans only {ratio:.2g}x (need {required:g}x)")
        if ratio < MIN_RANGE_FLAG:
            warnings.append(f"{law.name}: {label} spans only {ratio:.2g}x (< {MIN_RANGE_FLAG:g}x): "
                            "exponents are weakly constrained")
    return warnings


def identifiability(law: Law, theta: np.ndarray, cols: Cols) -> float:
    """ρ_id = s_min/s_max of the column-normalised Jacobian of ℓ̂ with respect to θ (0 if a column vanishes)."""
    J = law.log_jacobian(theta, cols)
    norms = np.linalg.norm(J, axis=0)
    if not np.all(np.isfinite(J)) or np.any(norms == 0):
        return 0.0
    s = np.linalg.svd(J / norms, compute_uv=False)
    return float(s[-1] / s[0])


def check_optimum(law: Law, theta: np.ndarray, cols: Cols, min_loss: float) -> tuple[float, list[str]]:
    """ρ_id at the optimum (FitError below the refusal threshold) and the post-fit flags: weak identification,
    E above the data, exponents outside a plausible range."""
    rho_id = identifiability(law, theta, cols)
    if rho_id < ID_REFUSE:
        raise FitError(f"{law.name}: not identifiable (rho_id = {rho_id:.1e} < {ID_REFUSE:g} at the optimum); "
                       "the design cannot separate the parameters (collinear axes or a single size?)",
                       {"rho_id": rho_id})
    out = []
    nat = law.natural(theta)
    if rho_id < ID_FLAG:
        out.append(f"{law.name}: weakly identified (rho_id = {rho_id:.1e} < {ID_FLAG:g})")
    for e_name in ("E", "L_inf"):
        if e_name in nat and nat[e_name] >= min_loss:
            out.append(f"{law.name}: fitted {e_name} = {nat[e_name]:.4g} >= the lowest observed loss {min_loss:.4g}")
    lo, hi = EXPONENT_RANGE
    for name in ("alpha", "beta"):
        if name in nat and not lo <= nat[name] <= hi:
            out.append(f"{law.name}: {name} = {nat[name]:.4g} outside the plausible range [{lo:g}, {hi:g}]")
    return rho_id, out


def errors(pred_lnL: np.ndarray, obs_lnL: np.ndarray) -> dict[str, float]:
    """MAE/RMSE/bias in nats, mean and max |relative error|, median |log residual|."""
    pred, obs = np.exp(pred_lnL), np.exp(obs_lnL)
    d = pred - obs
    rel = np.abs(d) / obs
    return {"n": int(d.size), "mae": float(np.mean(np.abs(d))), "rmse": float(np.sqrt(np.mean(d * d))),
            "bias": float(np.mean(d)), "mean_abs_rel": float(np.mean(rel)), "max_abs_rel": float(np.max(rel)),
            "median_abs_log_residual": float(np.median(np.abs(pred_lnL - obs_lnL)))}


def split_mask(rule: str, fraction: float, C: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, str]:
    """Training mask and a description: 'compute' trains on C < fraction·C_max, 'largest_size' on every
    size but the largest (the rule is validated in config)."""
    if rule == "compute":
        cut = fraction * float(np.max(C))
        return C < cut, f"train on C < {fraction:g} * C_max = {cut:.4g} FLOPs, predict the rest"
    top = float(np.max(N))
    return N < top * (1 - 1e-9), f"train on N < {top:.4g}, predict the largest size"
