"""Multi-start L-BFGS-B with acceptance checks (docs/scaling.md §3.4).

Grid → the best `n_starts` grid points (+ optional extra starts) → L-BFGS-B with tight tolerances.
A fit is accepted only if the best objective is reached by several starts that agree on the exponents,
no parameter sits on a bound and a restart from the optimum does not move it; otherwise `FitError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from scipy.optimize import least_squares, minimize

from ltm.errors import LtmError
from ltm.scaling.blas import one_blas_thread
from ltm.scaling.laws import Cols, Law
from ltm.scaling.objective import Objective


class FitError(LtmError):
    """A law the data cannot support (or an optimiser result the checks refuse); carries diagnostics."""

    def __init__(self, message: str, diagnostics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or {}


@dataclass(frozen=True)
class FitSettings:
    delta: float | None = 1e-3
    n_starts: int = 20
    ftol: float = 1e-15
    gtol: float = 1e-9
    maxiter: int = 10_000
    min_agree: int = 3  # starts that must reach the best objective
    agree_rel: float = 1e-9  # ... within this relative objective difference
    agree_abs: float = 1e-10  # ... or this absolute one (exact data has J ≈ 0)
    agree_param: float = 1e-4  # exponents of the agreeing starts must match this closely
    bound_tol: float = 1e-6
    restart_rel: float = 1e-10

    def tolerances(self) -> dict[str, float]:
        return {"ftol": self.ftol, "gtol": self.gtol, "maxiter": self.maxiter}


@dataclass
class Start:
    theta0: np.ndarray
    theta: np.ndarray
    J: float
    nit: int
    message: str


@dataclass
class FitResult:
    law: Law
    theta: np.ndarray
    J: float
    starts: list[Start]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def natural(self) -> dict[str, float]:
        return self.law.natural(self.theta)


def minimize_from(obj: Objective, x0: np.ndarray, s: FitSettings, opts: dict | None = None) -> Start:
    """One L-BFGS-B run; `opts` overrides the tolerances (the regression test uses scipy's defaults)."""
    options = opts if opts is not None else s.tolerances()
    x0 = np.clip(np.asarray(x0, float), [b[0] for b in obj.law.bounds], [b[1] for b in obj.law.bounds])
    res = minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=obj.law.bounds, options=options)
    return Start(x0, np.asarray(res.x, float), float(res.fun), int(res.nit), str(res.message))


def grid_starts(obj: Objective, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best grid points and their objective values."""
    grid = obj.law.grid_points()
    vals = obj.grid_values(grid)
    vals = np.where(np.isfinite(vals), vals, np.inf)
    order = np.argsort(vals, kind="stable")[:k]
    return grid[order], vals[order]


@one_blas_thread()
def multistart(
    law: Law,
    cols: Cols,
    lnL: np.ndarray,
    s: FitSettings,
    weights: np.ndarray | None = None,
    scale: float = 1.0,
    extra_starts: Iterable[np.ndarray] = (),
    opts: dict | None = None,
) -> list[Start]:
    """Run L-BFGS-B from the best grid points plus `extra_starts`; results sorted by objective."""
    obj = Objective(law, cols, lnL, s.delta, weights, scale)
    x0s, _ = grid_starts(obj, s.n_starts)
    starts = [minimize_from(obj, x0, s, opts) for x0 in [*x0s, *map(np.asarray, extra_starts)]]
    starts = [st for st in starts if np.isfinite(st.J)]
    if not starts:
        raise FitError(f"{law.name}: every start gave a non-finite objective")
    return sorted(starts, key=lambda st: st.J)


def at_bounds(law: Law, theta: np.ndarray, tol: float) -> list[str]:
    """Names of parameters within `tol` of a bound, e.g. ['alpha>=0']."""
    out = []
    for name, v, (lo, hi) in zip(law.params, theta, law.bounds):
        if v - lo <= tol:
            out.append(f"{name}={lo:g} (lower bound)")
        elif hi - v <= tol:
            out.append(f"{name}={hi:g} (upper bound)")
    return out


def check_acceptance(law: Law, starts: list[Start], obj: Objective, s: FitSettings) -> dict[str, Any]:
    """The §3.4 acceptance rules. Returns diagnostics; raises FitError naming the first failed rule."""
    best = starts[0]
    tol = max(s.agree_rel * abs(best.J), s.agree_abs)
    agree = [st for st in starts if st.J - best.J <= tol]
    idx = [law.params.index(p) for p in law.shape]
    spread = {p: float(np.ptp([st.theta[i] for st in agree])) for p, i in zip(law.shape, idx)}
    bound = at_bounds(law, best.theta, s.bound_tol)
    restart = minimize_from(obj, best.theta, s)
    restart_change = (best.J - restart.J) / max(abs(best.J), s.agree_abs)
    diag: dict[str, Any] = {
        "J": best.J,
        "n_starts": len(starts),
        "n_agree": len(agree),
        "start_spread": spread,
        "at_bound": bound,
        "restart_rel_change": float(restart_change),
        "iterations_best": best.nit,
        "optimizer_message": best.message,
    }
    if bound:
        diag["converged"] = False
        raise FitError(f"{law.name}: optimum on a bound: {', '.join(bound)}", diag)
    if len(agree) < s.min_agree:
        diag["converged"] = False
        raise FitError(
            f"{law.name}: only {len(agree)} of {len(starts)} starts reach the best objective "
            f"(need {s.min_agree}); the optimum is not reliable",
            diag,
        )
    wide = [f"{p} spread {v:.2g}" for p, v in spread.items() if v > s.agree_param]
    if wide:
        diag["converged"] = False
        raise FitError(f"{law.name}: agreeing starts disagree on exponents ({', '.join(wide)})", diag)
    if restart_change > s.restart_rel and best.J - restart.J > s.agree_abs:
        diag["converged"] = False
        raise FitError(f"{law.name}: a restart from the optimum lowered J by {restart_change:.1e} (relative)", diag)
    diag["converged"] = True
    return diag


@one_blas_thread()
def fit_law(
    law: Law,
    cols: Cols,
    lnL: np.ndarray,
    s: FitSettings,
    weights: np.ndarray | None = None,
    scale: float = 1.0,
    extra_starts: Iterable[np.ndarray] = (),
    opts: dict | None = None,
) -> FitResult:
    """Multi-start fit; the §3.4 acceptance rules must hold or FitError is raised."""
    starts = multistart(law, cols, lnL, s, weights, scale, extra_starts, opts)
    diag = check_acceptance(law, starts, Objective(law, cols, lnL, s.delta, weights, scale), s)
    return FitResult(law, starts[0].theta, starts[0].J, starts, diag)


@one_blas_thread()
def crosscheck_trust_region(law: Law, cols: Cols, lnL: np.ndarray, theta0: np.ndarray,
                            delta: float) -> np.ndarray:
    """An independent optimiser (trust-region least squares with a Huber loss) from the same start."""
    lo = np.array([b[0] for b in law.bounds])
    hi = np.array([b[1] for b in law.bounds])
    x0 = np.clip(np.asarray(theta0, float), lo + 1e-9, hi - 1e-9)
    res = least_squares(
        lambda th: law.predict(th, cols) - lnL,
        x0,
        jac=lambda th: law.log_jacobian(th, cols),
        bounds=(lo, hi),
        loss="huber",
        f_scale=delta,
        method="trf",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=20_000,
    )
    return np.asarray(res.x, float)
