"""Fitting one law: summed Huber objective, multi-start L-BFGS-B, acceptance checks (docs/scaling.md §3.3-3.4).

J(θ) = Σ_i w_i·ρ(r_i/δ), r_i = ℓ̂_i − ln L_i, ρ the Huber function; summed, not averaged, so J stays of order
n and L-BFGS-B's effectively absolute stopping rules do not stop it early (the bug behind Chinchilla's
published fit). `delta=None` is plain least squares, scaled the same way. Weights are bootstrap
multiplicities: resampling never copies the data. A fit that fails an acceptance rule raises `FitError`.

BLAS runs on one thread (threadpoolctl): L-BFGS-B makes thousands of BLAS calls on 5x10 matrices, and with
a threaded OpenBLAS on busy cores every call waited for a descheduled helper thread (~10x slower).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from ltm.errors import LtmError
from ltm.scaling.laws import Cols, Law, lse

LS_SCALE = 1e-3  # δ-like unit for the least-squares objective, so J stays O(n)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread inside (a context manager or a decorator); the previous counts come back after."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class FitError(LtmError):
    """A law the data cannot support (or an optimiser result the checks refuse); carries diagnostics."""

    def __init__(self, message: str, diagnostics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or {}


# The method's fixed choices (docs/scaling.md §3.4); fit.json records them under these names (ltm.scaling.api).
TOLERANCES = {"ftol": 1e-15, "gtol": 1e-9, "maxiter": 10_000}
MIN_AGREE = 3  # starts that must reach the best objective
AGREE_REL = 1e-9  # ... within this relative objective difference
AGREE_ABS = 1e-10  # ... or this absolute one (exact data has J ≈ 0)
AGREE_PARAM = 1e-4  # exponents of the agreeing starts must match this closely
BOUND_TOL = 1e-6
RESTART_REL = 1e-10


@dataclass(frozen=True)
class FitSettings:
    """The two `fit` keys of params.yaml a fit reads (no defaults: they come from params.yaml)."""

    delta: float | None  # None: plain least squares (the δ-sensitivity table)
    n_starts: int


def beaten(J: float, best: float) -> bool:
    """`best` is lower than J by more than the agreement tolerance (False when J is NaN)."""
    return J - best > max(AGREE_REL * abs(best), AGREE_ABS)


class Objective:
    """J and ∇J for one law on one data set; call with θ of shape (P,)."""

    def __init__(self, law: Law, cols: Cols, lnL: np.ndarray, delta: float | None = 1e-3,
                 weights: np.ndarray | None = None, scale: float = 1.0) -> None:
        self.law, self.cols, self.lnL, self.delta = law, cols, np.asarray(lnL, float), delta
        # multiplying by 1.0 is exact: unweighted fits give the same bits
        self.weights = 1.0 if weights is None else np.asarray(weights, float)
        self.scale = float(scale)

    def _rho_psi(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.delta is None:
            u = r / LS_SCALE
            return 0.5 * u * u, u / LS_SCALE
        u = r / self.delta
        au = np.abs(u)
        m = np.minimum(au, 1.0)
        # m·(|u| − m/2) is ½u² for |u| ≤ 1 and |u| − ½ beyond: the Huber ρ without a branch
        return m * (au - 0.5 * m), np.minimum(np.maximum(u, -1.0), 1.0) / self.delta

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta, float)
        t = self.law.terms(theta[None, :], self.cols)[:, 0]
        m = t.max(axis=0)
        ex = np.exp(t - m)
        s = ex.sum(axis=0)
        rho, psi = self._rho_psi(m + np.log(s) - self.lnL)
        rho, psi = rho * self.weights, psi * self.weights
        # ∇J = Σ_i ψ_i Σ_k w_ki ∂t_ki/∂θ with softmax weights w = ex/s
        grad = np.einsum("kn,kpn,n->p", ex / s, self.law.jac(theta, self.cols), psi)
        return self.scale * float(rho.sum()), self.scale * grad

    def grid_values(self, thetas: np.ndarray, chunk_elems: int = 4_000_000) -> np.ndarray:
        """J at many θ at once (the start grid), vectorised in chunks to bound memory."""
        step = max(1, chunk_elems // max(1, self.lnL.size))
        out = np.empty(len(thetas))
        for i in range(0, len(thetas), step):
            rho, _ = self._rho_psi(lse(self.law.terms(thetas[i : i + step], self.cols)) - self.lnL)
            out[i : i + step] = self.scale * (rho * self.weights).sum(axis=1)
        return out

    def value(self, theta: np.ndarray) -> float:
        return float(self.grid_values(np.asarray(theta, float)[None, :])[0])


class Start(NamedTuple):
    theta: np.ndarray
    J: float
    nit: int
    message: str


@dataclass
class FitResult:
    law: Law
    theta: np.ndarray
    J: float
    diagnostics: dict[str, Any]

    def natural(self) -> dict[str, float]:
        return self.law.natural(self.theta)


def minimize_from(obj: Objective, x0: np.ndarray, opts: dict | None = None) -> Start:
    """One L-BFGS-B run; `opts` overrides the tolerances (the regression test uses scipy's defaults)."""
    options = opts if opts is not None else TOLERANCES
    x0 = np.clip(np.asarray(x0, float), [b[0] for b in obj.law.bounds], [b[1] for b in obj.law.bounds])
    res = minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=obj.law.bounds, options=options)
    return Start(np.asarray(res.x, float), float(res.fun), int(res.nit), str(res.message))


def grid_starts(obj: Objective, k: int) -> np.ndarray:
    """The k best grid points."""
    grid = obj.law.grid_points()
    vals = obj.grid_values(grid)
    return grid[np.argsort(np.where(np.isfinite(vals), vals, np.inf), kind="stable")[:k]]


@one_blas_thread()
def multistart(law: Law, cols: Cols, lnL: np.ndarray, s: FitSettings, weights: np.ndarray | None = None,
               scale: float = 1.0, extra_starts: Iterable[np.ndarray] = (), opts: dict | None = None) -> list[Start]:
    """Run L-BFGS-B from the best grid points plus `extra_starts`; results sorted by objective."""
    obj = Objective(law, cols, lnL, s.delta, weights, scale)
    starts = [minimize_from(obj, x0, opts) for x0 in [*grid_starts(obj, s.n_starts), *map(np.asarray, extra_starts)]]
    starts = [st for st in starts if np.isfinite(st.J)]
    if not starts:
        raise FitError(f"{law.name}: every start gave a non-finite objective")
    return sorted(starts, key=lambda st: st.J)


def check_acceptance(law: Law, starts: list[Start], obj: Objective) -> dict[str, Any]:
    """The §3.4 acceptance rules. Returns diagnostics; raises FitError naming the first failed rule."""
    best = starts[0]
    agree = [st for st in starts if not beaten(st.J, best.J)]  # every start's J is finite
    spread = {p: float(np.ptp([st.theta[law.params.index(p)] for st in agree])) for p in law.shape}
    bound = [f"{name}={lo:g} (lower bound)" if v - lo <= BOUND_TOL else f"{name}={hi:g} (upper bound)"
             for name, v, (lo, hi) in zip(law.params, best.theta, law.bounds)
             if v - lo <= BOUND_TOL or hi - v <= BOUND_TOL]
    restart = minimize_from(obj, best.theta)
    restart_change = (best.J - restart.J) / max(abs(best.J), AGREE_ABS)
    wide = [f"{p} spread {v:.2g}" for p, v in spread.items() if v > AGREE_PARAM]
    if bound:
        failed = f"optimum on a bound: {', '.join(bound)}"
    elif len(agree) < MIN_AGREE:
        failed = (f"only {len(agree)} of {len(starts)} starts reach the best objective (need {MIN_AGREE}); "
                  "the optimum is not reliable")
    elif wide:
        failed = f"agreeing starts disagree on exponents ({', '.join(wide)})"
    elif restart_change > RESTART_REL and best.J - restart.J > AGREE_ABS:
        failed = f"a restart from the optimum lowered J by {restart_change:.1e} (relative)"
    else:
        failed = None
    diag: dict[str, Any] = {"J": best.J, "n_starts": len(starts), "n_agree": len(agree), "start_spread": spread,
                            "at_bound": bound, "restart_rel_change": float(restart_change),
                            "iterations_best": best.nit, "optimizer_message": best.message,
                            "converged": failed is None}
    if failed:
        raise FitError(f"{law.name}: {failed}", diag)
    return diag


@one_blas_thread()
def fit_law(law: Law, cols: Cols, lnL: np.ndarray, s: FitSettings, scale: float = 1.0,
            extra_starts: Iterable[np.ndarray] = ()) -> FitResult:
    """Multi-start fit; the §3.4 acceptance rules must hold or FitError is raised."""
    starts = multistart(law, cols, lnL, s, scale=scale, extra_starts=extra_starts)
    diag = check_acceptance(law, starts, Objective(law, cols, lnL, s.delta, scale=scale))
    return FitResult(law, starts[0].theta, starts[0].J, diag)

