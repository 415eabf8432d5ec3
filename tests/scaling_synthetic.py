"""Synthetic run records with known parameters, and the external Epoch/Chinchilla validation set.

Used by the tests and the benchmark; also handy to check a planned sweep design before running it
(fit synthetic data on the planned grid and see whether the checks accept it).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from ltm.errors import LtmError
from ltm.scaling.fit import FitSettings
from ltm.scaling.laws import Law

# docs/scaling.md §6
CHINCHILLA_ROUNDED = {"A": 406.4, "B": 410.7, "E": 1.69, "alpha": 0.34, "beta": 0.28}
CHINCHILLA_TEX = {"A": 406.40, "B": 410.72, "E": 1.6934, "alpha": 0.33917084, "beta": 0.2849083}
EPOCH_REFIT = {"A": 477.84, "B": 2143.86, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}

# The method's settings of docs/scaling.md (the library has no defaults; the pipeline's values are params.yaml's
# `fit:`): what the synthetic and external tests fit with unless they name a change.
METHOD = {"huber_delta": 1e-3, "n_starts": 20, "n_bootstrap": 1000, "seed": 0, "heldout_rule": "compute",
          "heldout_fraction": 0.25, "min_points_per_param": 4.0, "min_tokens_per_param": 1.0}
FIT = FitSettings(delta=METHOD["huber_delta"], n_starts=METHOD["n_starts"])  # the main fit, as params.yaml sets it

SIZES_5 = (10e6, 20e6, 40e6, 80e6, 160e6)
RATIOS_5 = (5.0, 10.0, 20.0, 40.0, 80.0)


def nd_theta(nat: dict[str, float]) -> np.ndarray:
    """Natural (A, B, E, alpha, beta) → the fit's internal θ = (ln A, ln B, ln E, alpha, beta)."""
    return np.array([np.log(nat["A"]), np.log(nat["B"]), np.log(nat["E"]), nat["alpha"], nat["beta"]])


def nd_loss(nat: dict[str, float], N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return nat["E"] + nat["A"] / np.asarray(N) ** nat["alpha"] + nat["B"] / np.asarray(D) ** nat["beta"]


def grid_design(sizes=SIZES_5, ratios=RATIOS_5) -> tuple[np.ndarray, np.ndarray]:
    """Every size at every tokens-per-parameter ratio: (N, D) arrays."""
    N, R = np.meshgrid(np.asarray(sizes, float), np.asarray(ratios, float), indexing="ij")
    return N.ravel(), (N * R).ravel()


def make_records(loss: np.ndarray, N: np.ndarray, D: np.ndarray, family: str = "ar",
                 loss_kind: str = "nll_exact", prefix: str = "run", **columns: Any) -> list[dict[str, Any]]:
    """Records with run ids `prefix-i` and flops = 6ND unless given; extra columns are arrays or scalars."""
    n = len(loss)
    cols = {"flops": 6.0 * np.asarray(N) * np.asarray(D), **columns}
    out = []
    for i in range(n):
        rec = {"run": f"{prefix}-{i}", "family": family, "loss_kind": loss_kind, "loss": float(loss[i]),
               "params": float(N[i]), "tokens": float(D[i])}
        for k, v in cols.items():
            x = v[i] if np.ndim(v) else v
            rec[k] = x.item() if isinstance(x, np.generic) else x
        out.append(rec)
    return out


def noisy(loss: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative log-normal noise: ln L + σ·ε."""
    return np.asarray(loss) * np.exp(sigma * np.random.default_rng(seed).standard_normal(np.shape(loss)))


def law_loss(law: Law, theta: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Loss predicted by any law (for synthetic extra-axis or T_eval data)."""
    return np.exp(law.predict(theta, cols))


def load_epoch(path: str | Path, drop_highest: int = 5) -> list[dict[str, Any]]:
    """Epoch's reconstruction of the Chinchilla Approach-3 data as records (D = C/(6N), their convention).

    Epoch's default analysis drops the 5 highest-loss points (240 left)."""
    path = Path(path)
    if not path.is_file():
        raise LtmError(f"external validation data not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # tests/data/chinchilla_approach3.csv (params, flops, loss), or Epoch's own file (Model Size, Training FLOP)
    n_col, c_col = ("params", "flops") if rows and "params" in rows[0] else ("Model Size", "Training FLOP")
    N = np.array([float(r[n_col]) for r in rows])
    C = np.array([float(r[c_col]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(L, kind="stable")[: len(L) - drop_highest])
    return make_records(L[keep], N[keep], C[keep] / (6 * N[keep]), prefix="epoch", flops=C[keep])


def numeric_allocation(
    loss: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ctok: Callable[[np.ndarray], np.ndarray],
    C: float,
    lnN_range: tuple[float, float] = (np.log(1e3), np.log(1e16)),
) -> tuple[float, float, float]:
    """(N*, D*, L*) minimising loss(N, D) over ln N with D = C/ctok(N), for any accounting ctok(N).

    A dense grid brackets the minimum; the root of a central-difference slope then pins it down. (Near a
    flat minimum, comparing loss values can only resolve ln N to ~sqrt(machine eps); the slope's root
    resolves it ~1000x better.)"""
    def f(lnN: np.ndarray) -> np.ndarray:
        N = np.exp(lnN)
        return loss(N, C / ctok(N))

    grid = np.linspace(*lnN_range, 4001)
    vals = f(grid)
    i = int(np.nanargmin(vals))
    if i in (0, grid.size - 1):
        raise LtmError(f"compute-optimal N at C = {C:.3g} lies outside the searched range of N")
    h = 1e-4
    slope = lambda x: float((f(np.array([x + h])) - f(np.array([x - h])))[0])  # noqa: E731
    lo, hi = grid[i - 1], grid[i + 1]
    if slope(lo) < 0 < slope(hi):
        x = brentq(slope, lo, hi, xtol=1e-13)
    else:  # flat to rounding at this scale: fall back to comparing values
        x = minimize_scalar(lambda v: float(f(np.array([v]))[0]), bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-12}).x
    N = float(np.exp(x))
    return N, float(C / ctok(np.array([N]))[0]), float(f(np.array([x]))[0])
