"""Scaling-law forms, each written as a log-sum-exp of terms.

Every law predicts the log loss as `ℓ̂ = logsumexp_k(term_k(θ, x))`, where each term is the log of one
additive piece of `L = E + A/N^α + ...`. One objective, one optimiser and one identifiability check then
serve every form: a law only supplies its terms, their derivatives, bounds and a start grid.

Data columns a law may read (built by `records.Points.cols`): lnN, lnD, lnC, lnT1 = ln(1+T),
lnZ1 = ln(1+N_z), Teval, lnTeval.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

Cols = dict[str, np.ndarray]

# docs/scaling.md §3.3 bounds; unbounded fits of collinear designs ran off to β < 0 and E → 0.
_AB = (-10.0, 50.0)
_E = (-10.0, float(np.log(20.0)))
_EXP = (0.0, 3.0)

# Chinchilla's Approach-3 start grid (5·5·5·6·6 = 4 500 points).
CHINCHILLA_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}

# Published optima, used as two extra starts for the L(N, D) law (docs/scaling.md §3.4).
PUBLISHED_ND = {
    "chinchilla_tex": (6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083),
    "epoch_refit": (float(np.log(477.84)), float(np.log(2143.86)), float(np.log(1.8172)), 0.3473, 0.3672),
}


@dataclass(frozen=True)
class Law:
    """One functional form. `terms` takes θ of shape (M, P) and returns (K, M, n); `jac` takes θ of shape
    (P,) and returns ∂term/∂θ of shape (K, P, n)."""

    name: str
    form: str
    parametrisation: str
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    grid: tuple[tuple[float, ...], ...]
    shape: tuple[str, ...]  # exponent-like parameters that must agree across starts
    columns: tuple[str, ...]
    terms: Callable[[np.ndarray, Cols], np.ndarray]
    jac: Callable[[np.ndarray, Cols], np.ndarray]
    natural: Callable[[np.ndarray], dict[str, float]]

    @property
    def n_params(self) -> int:
        return len(self.params)

    def grid_points(self) -> np.ndarray:
        return np.array(list(itertools.product(*self.grid)), dtype=float)

    def predict(self, theta: np.ndarray, cols: Cols) -> np.ndarray:
        """Predicted log loss ℓ̂ for one θ."""
        t = self.terms(np.asarray(theta, float)[None, :], cols)[:, 0]
        return _lse(t)

    def log_jacobian(self, theta: np.ndarray, cols: Cols) -> np.ndarray:
        """∂ℓ̂/∂θ, shape (n, P): softmax-weighted term derivatives."""
        theta = np.asarray(theta, float)
        t = self.terms(theta[None, :], cols)[:, 0]
        w = np.exp(t - _lse(t))
        return np.einsum("kn,kpn->np", w, self.jac(theta, cols))

    def with_grid(self, grid: dict[str, tuple[float, ...]]) -> "Law":
        values = tuple(tuple(float(v) for v in grid.get(p, g)) for p, g in zip(self.params, self.grid))
        return Law(**{**self.__dict__, "grid": values})


def _lse(t: np.ndarray) -> np.ndarray:
    m = t.max(axis=0)
    return m + np.log(np.exp(t - m).sum(axis=0))


def _p(th: np.ndarray, i: int) -> np.ndarray:
    return th[:, i : i + 1]



def _fill(th: np.ndarray, n: int, rows: list) -> np.ndarray:
    """Stack term rows into (K, M, n); a row is an array or a column index (a constant term).
    Faster than np.stack + broadcast_to: the objective calls this ~10^5 times per bootstrap."""
    out = np.empty((len(rows), th.shape[0], n))
    for k, row in enumerate(rows):
        out[k] = th[:, row : row + 1] if isinstance(row, int) else row
    return out


# ---------------------------------------------------------------- L(N, D) = E + A/N^α + B/D^β
def _nd_terms(th: np.ndarray, c: Cols) -> np.ndarray:
    lnN, lnD = c["lnN"], c["lnD"]
    return _fill(th, lnN.size, [_p(th, 0) - _p(th, 3) * lnN, _p(th, 1) - _p(th, 4) * lnD, 2])


def _nd_jac(th: np.ndarray, c: Cols) -> np.ndarray:
    lnN, lnD = c["lnN"], c["lnD"]
    j = np.zeros((3, 5, lnN.size))
    j[0, 0], j[0, 3] = 1.0, -lnN
    j[1, 1], j[1, 4] = 1.0, -lnD
    j[2, 2] = 1.0
    return j


def _nd_natural(th: np.ndarray) -> dict[str, float]:
    a, b, e, al, be = (float(v) for v in th[:5])
    return {"A": float(np.exp(a)), "B": float(np.exp(b)), "E": float(np.exp(e)), "alpha": al, "beta": be}


ND = Law(
    name="L(N,D)",
    form="L = E + A/N^alpha + B/D^beta",
    parametrisation="log L = LSE(a - alpha ln N, b - beta ln D, e); A=e^a, B=e^b, E=e^e",
    params=("a", "b", "e", "alpha", "beta"),
    bounds=(_AB, _AB, _E, _EXP, _EXP),
    grid=tuple(CHINCHILLA_GRID[k] for k in ("a", "b", "e", "alpha", "beta")),
    shape=("alpha", "beta"),
    columns=("lnN", "lnD"),
    terms=_nd_terms,
    jac=_nd_jac,
    natural=_nd_natural,
)


# ---------------------------------------------------------------- one-variable power law with offset
def power1(column: str, label: str) -> Law:
    """`L = E + A/x^alpha` in one variable (N at fixed D, D at fixed N, or C on the compute envelope)."""
    return Law(
        name=label,
        form=f"L = E + A/{column[2:]}^alpha",
        parametrisation=f"log L = LSE(a - alpha {column}, e); A=e^a, E=e^e",
        params=("a", "e", "alpha"),
        bounds=(_AB, _E, _EXP),
        grid=((0.0, 5.0, 10.0, 15.0, 20.0, 25.0), (-1.0, -0.5, 0.0, 0.5, 1.0), (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)),
        shape=("alpha",),
        columns=(column,),
        terms=partial(_power1_terms, column=column),
        jac=partial(_power1_jac, column=column),
        natural=_power1_natural,
    )


def _power1_natural(th: np.ndarray) -> dict[str, float]:
    return {"A": float(np.exp(th[0])), "E": float(np.exp(th[1])), "alpha": float(th[2])}


def _power1_terms(th: np.ndarray, c: Cols, column: str) -> np.ndarray:
    x = c[column]
    return _fill(th, x.size, [_p(th, 0) - _p(th, 2) * x, 1])


def _power1_jac(th: np.ndarray, c: Cols, column: str) -> np.ndarray:
    x = c[column]
    j = np.zeros((2, 3, x.size))
    j[0, 0], j[0, 2] = 1.0, -x
    j[1, 1] = 1.0
    return j
