"""Design minimums, identifiability and post-fit flags (docs/scaling.md §3.7).

Refusals raise `FitError` with a one-line reason; flags are returned as warning strings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltm.scaling.fit import FitError
from ltm.scaling.laws import Cols, Law
from ltm.scaling.records import distinct


@dataclass(frozen=True)
class CheckSettings:
    min_points_per_param: float = 4.0
    min_distinct: int = 3
    min_range_flag: float = 8.0  # flag an axis spanning less than this factor
    id_refuse: float = 1e-5
    id_flag: float = 1e-3
    exponent_range: tuple[float, float] = (0.05, 1.5)


def identifiability(law: Law, theta: np.ndarray, cols: Cols) -> float:
    """ρ_id = s_min/s_max of the column-normalised Jacobian of ℓ̂ with respect to θ (0 if a column vanishes)."""
    J = law.log_jacobian(theta, cols)
    norms = np.linalg.norm(J, axis=0)
    if not np.all(np.isfinite(J)) or np.any(norms == 0):
        return 0.0
    s = np.linalg.svd(J / norms, compute_uv=False)
    return float(s[-1] / s[0])


def require_identifiable(law: Law, theta: np.ndarray, cols: Cols, cs: CheckSettings) -> float:
    """ρ_id at the optimum; FitError below the refusal threshold."""
    rho = identifiability(law, theta, cols)
    if rho < cs.id_refuse:
        raise FitError(
            f"{law.name}: not identifiable (rho_id = {rho:.1e} < {cs.id_refuse:g} at the optimum); "
            "the design cannot separate the parameters (collinear axes or a single size?)",
            {"rho_id": rho},
        )
    return rho


def check_design(
    law: Law,
    lnL: np.ndarray,
    axes: dict[str, np.ndarray],
    cs: CheckSettings,
    min_points: int | None = None,
    spans: dict[str, float] | None = None,
    points_per_param: float | None = None,
    min_distinct: dict[str, int] | None = None,
) -> list[str]:
    """Refuse designs that cannot support `law`; return flags for weak ones.

    axes: label → values whose distinct count must reach `min_distinct` (e.g. 'N', 'D/N').
    spans: label → minimum max/min ratio that is required (refused below it).
    """
    n, p = lnL.size, law.n_params
    need = min_points if min_points is not None else int(np.ceil((points_per_param or cs.min_points_per_param) * p))
    if n < need:
        raise FitError(f"{law.name}: {n} points for {p} free parameters (need at least {need})")
    if np.ptp(lnL) < 1e-12:
        raise FitError(f"{law.name}: all losses are equal; there is nothing to fit")
    warnings = []
    for label, values in axes.items():
        d = distinct(values)
        need_distinct = (min_distinct or {}).get(label, cs.min_distinct)
        if d.size < need_distinct:
            raise FitError(
                f"{law.name}: only {d.size} distinct {label} value(s) (need {need_distinct}); "
                f"{label} is not varied enough to fit its exponent"
            )
        ratio = float(d[-1] / d[0]) if d[0] > 0 else float("inf")
        required = (spans or {}).get(label)
        if required is not None and ratio < required * (1 - 1e-9):
            raise FitError(f"{law.name}: {label} spans only {ratio:.2g}x (need {required:g}x)")
        if ratio < cs.min_range_flag:
            warnings.append(f"{law.name}: {label} spans only {ratio:.2g}x (< {cs.min_range_flag:g}x): "
                            "exponents are weakly constrained")
    return warnings


def fit_flags(law: Law, theta: np.ndarray, rho_id: float, min_loss: float, cs: CheckSettings) -> list[str]:
    """Post-fit flags: weak identification, E above the data, exponents outside a plausible range."""
    out = []
    nat = law.natural(theta)
    if rho_id < cs.id_flag:
        out.append(f"{law.name}: weakly identified (rho_id = {rho_id:.1e} < {cs.id_flag:g})")
    for e_name in ("E", "L_inf"):
        if e_name in nat and nat[e_name] >= min_loss:
            out.append(f"{law.name}: fitted {e_name} = {nat[e_name]:.4g} >= the lowest observed loss {min_loss:.4g}")
    lo, hi = cs.exponent_range
    for name in ("alpha", "beta"):
        if name in nat and not lo <= nat[name] <= hi:
            out.append(f"{law.name}: {name} = {nat[name]:.4g} outside the plausible range [{lo:g}, {hi:g}]")
    return out
