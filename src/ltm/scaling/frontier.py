"""Compute-optimal allocation on a fitted L(N, D) surface (docs/scaling.md §1.2, §3.8.2).

With training compute C = k·N^p·D (k = 6, p = 1 is Chinchilla's 6ND; a family's own accounting is fitted
as a power law of per-token FLOPs in N), minimising E + A/N^α + B/D^β along C = const has the closed form
    N*(C) = [αA/(pβB) · (C/k)^β]^(1/(α + pβ)),   D*(C) = C/(k·N*^p),
which for p = 1 is N* = G·(C/k)^a, D* = G⁻¹·(C/k)^b with G = (αA/(βB))^(1/(α+β)), a = β/(α+β).
Everything is vectorised so bootstrap replicates go through in one call.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import brentq

from ltm.errors import LtmError


def exponents(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chinchilla's a = β/(α+β) (N* ∝ C^a) and b = α/(α+β) (D* ∝ C^b)."""
    s = np.asarray(alpha) + np.asarray(beta)
    return np.asarray(beta) / s, np.asarray(alpha) / s


def chinchilla_G(A, B, alpha, beta) -> np.ndarray:
    return (np.asarray(alpha) * A / (np.asarray(beta) * B)) ** (1.0 / (np.asarray(alpha) + beta))


def optimal_allocation(A, B, E, alpha, beta, C, k: float = 6.0, p: float = 1.0):
    """(N*, D*, L*) at compute C for C = k·N^p·D. Arguments broadcast against each other."""
    A, B, E, alpha, beta, C = (np.asarray(v, float) for v in (A, B, E, alpha, beta, C))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lnN = (np.log(alpha * A / (p * beta * B)) + beta * np.log(C / k)) / (alpha + p * beta)
        N = np.exp(lnN)
        D = C / (k * N**p)
        L = E + A * N**-alpha + B * D**-beta
    return N, D, L


def fit_ctok(N: np.ndarray, flops_per_token: np.ndarray) -> dict[str, float]:
    """Fit per-token training FLOPs as k·N^p (least squares in logs); report the worst relative misfit."""
    lnN, lnc = np.log(N), np.log(flops_per_token)
    if np.ptp(lnN) < 1e-9:
        raise LtmError("cannot fit per-token FLOPs against N from a single model size")
    p, lnk = np.polyfit(lnN, lnc, 1)
    dev = np.exp(lnc - (lnk + p * lnN)) - 1.0
    return {"k": float(np.exp(lnk)), "p": float(p), "max_rel_dev": float(np.max(np.abs(dev)))}


def crossover(lstar_a: Callable[[np.ndarray], np.ndarray], lstar_b: Callable[[np.ndarray], np.ndarray],
              lnC_range: tuple[float, float], n_grid: int = 401) -> float | None:
    """Smallest compute C in the range where the frontier losses of a and b cross (None if they don't)."""
    grid = np.linspace(*lnC_range, n_grid)
    diff = lstar_a(grid) - lstar_b(grid)
    ok = np.isfinite(diff)
    idx = np.nonzero(ok[:-1] & ok[1:] & (np.sign(diff[:-1]) != np.sign(diff[1:])))[0]
    if idx.size == 0:
        return None
    i = int(idx[0])
    g = lambda x: float((lstar_a(np.array([x])) - lstar_b(np.array([x])))[0])  # noqa: E731
    return float(np.exp(brentq(g, grid[i], grid[i + 1], xtol=1e-12)))
