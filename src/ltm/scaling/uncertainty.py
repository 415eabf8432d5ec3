"""Bootstrap uncertainty (docs/scaling.md §3.5): whole runs resampled as integer weights, each replicate
warm-started from the full-data optimum; every `check_every`-th one also runs the full multi-start, counted
when it finds a better optimum (a warm start that never moves is the fake-narrow-CI bug). Curves on one
checkpoint use a residual bootstrap. No Hessian covariance: the Huber curvature is piecewise.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ltm.scaling.fit import (
    AGREE_PARAM,
    TOLERANCES,
    FitSettings,
    Objective,
    beaten,
    minimize_from,
    multistart,
    one_blas_thread,
)
from ltm.scaling.laws import Cols, Law

CHECK_EVERY = 20  # every 20th replicate also runs the full multi-start (docs/scaling.md §3.5)


@dataclass(frozen=True)
class BootstrapSettings:
    """Replicates and seed (params.yaml `fit.n_bootstrap`, `fit.seed`); the check rate and the worker
    processes are the method's (a test varies them)."""

    n: int
    seed: int
    check_every: int = CHECK_EVERY
    n_jobs: int = 1


@dataclass
class BootResult:
    samples: np.ndarray  # (B, P) internal parameters, NaN rows for failed replicates
    n_checked: int
    n_disagree: int
    method: str

    def ok(self) -> np.ndarray:
        return np.all(np.isfinite(self.samples), axis=1)

    @property
    def n_failed(self) -> int:
        return int((~self.ok()).sum())


@one_blas_thread()
def _replicates(law: Law, cols: Cols, lnLs: np.ndarray, weights: np.ndarray, theta_hat: np.ndarray,
                fs: FitSettings, check: np.ndarray, scale: float, opts: dict | None) -> list[tuple[np.ndarray, bool]]:
    """Fit a block of replicates; returns (θ or NaNs, multi-start found a better optimum)."""
    out = []
    for i in range(lnLs.shape[0]):
        st = minimize_from(Objective(law, cols, lnLs[i], fs.delta, weights[i], scale), theta_hat, opts)
        disagree = False
        if check[i]:
            best = multistart(law, cols, lnLs[i], fs, weights[i], scale, extra_starts=[theta_hat], opts=opts)[0]
            if beaten(st.J, best.J) and np.max(np.abs(best.theta - st.theta)) > AGREE_PARAM:
                disagree, st = True, best
        good = np.all(np.isfinite(st.theta)) and np.isfinite(st.J) and st.nit < TOLERANCES["maxiter"]
        out.append((st.theta if good else np.full(law.n_params, np.nan), disagree))
    return out


def bootstrap(law: Law, cols: Cols, lnL: np.ndarray, theta_hat: np.ndarray, fs: FitSettings, bs: BootstrapSettings,
              clusters: np.ndarray | None = None, residual: bool = False, scale: float = 1.0,
              opts: dict | None = None) -> BootResult:
    """Run `bs.n` replicates (cluster bootstrap, or residual bootstrap when `residual`).
    `scale` multiplies the objective and `opts` replaces the L-BFGS-B tolerances (only the Chinchilla-bug
    regression test changes them)."""
    rng = np.random.default_rng(bs.seed)
    n = lnL.size
    if residual:
        fitted = law.predict(theta_hat, cols)
        res = lnL - fitted
        lnLs = fitted + rng.choice(res, size=(bs.n, n), replace=True)
        # unit weights: multiplying by 1.0 is exact, so this is the unweighted objective
        weights, method = np.ones((bs.n, n)), "residual (points on one checkpoint are not independent runs)"
    else:
        clusters = np.arange(n) if clusters is None else clusters
        n_cl = int(clusters.max()) + 1  # (B, n) row weights: each replicate draws n_cl clusters with replacement
        draws = rng.integers(0, n_cl, size=(bs.n, n_cl))
        weights = np.stack([np.bincount(d, minlength=n_cl) for d in draws])[:, clusters].astype(float)
        lnLs = np.broadcast_to(lnL, (bs.n, n))
        method = "nonparametric over runs (cluster resampling), warm-started"
    check = np.zeros(bs.n, bool)
    if bs.check_every > 0:
        check[bs.check_every - 1 :: bs.check_every] = True
    blocks = np.array_split(np.arange(bs.n), max(1, min(bs.n_jobs, bs.n)))
    args = [(law, cols, lnLs[b], weights[b], theta_hat, fs, check[b], scale, opts) for b in blocks]
    flat = [r for part in process_map(_replicates, args, len(blocks)) for r in part]
    return BootResult(np.stack([r[0] for r in flat]), int(check.sum()), int(sum(r[1] for r in flat)), method)


def process_map(fn: Callable, args: list[tuple], processes: int) -> Iterator:
    """fn(*a) for each a, in order, on up to `processes` worker processes (in this process when 1).
    Fork: workers start in milliseconds and never re-import the caller's __main__. A caller whose other
    threads hold locks at fork time (heavy torch use) keeps processes = 1; the scaling stage imports no torch."""
    if processes <= 1 or len(args) <= 1:
        yield from (fn(*a) for a in args)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=min(processes, len(args)), mp_context=ctx) as ex:
        yield from ex.map(fn, *zip(*args))


def summarize(estimate: float, samples: np.ndarray) -> dict[str, object]:
    """Point estimate with percentile 95 % and 80 % (Chinchilla's 10/90) intervals and the bootstrap SE."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return {"estimate": float(estimate), "ci95": None, "ci80": None, "se": None}
    q = np.percentile(s, [2.5, 97.5, 10.0, 90.0])
    return {"estimate": float(estimate), "ci95": [float(q[0]), float(q[1])], "ci80": [float(q[2]), float(q[3])],
            "se": float(np.std(s, ddof=1))}
