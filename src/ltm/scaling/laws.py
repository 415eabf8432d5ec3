"""The law registry: every functional form the scaling stage fits, under a stable id (`LAWS`).

Every law predicts the log loss as `ℓ̂ = logsumexp_k(term_k(θ, x))`, each term the log of one additive
piece of `L = E + A/N^α + ...`, so one objective, optimiser and identifiability check serve every form.
A law is a table: its parameters (bounds, start grid, natural scale) and its terms, each either a constant
θ_c or θ_c − rate·x. fit.json names each fitted law by its `id`; `name` is the display label. Extra axes
x (T, N_z) enter through ln(1+x), so T = 0 is a valid point (docs/scaling.md §3.8.3).

Data columns a law may read (`records.Points.cols`): lnN, lnD, lnC, lnT1 = ln(1+T), lnZ1 = ln(1+N_z),
Teval, lnTeval.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

Cols = dict[str, np.ndarray]


class Param(NamedTuple):
    name: str  # internal (what the optimiser sees)
    natural: str  # reported name: e^θ when `log`, θ itself otherwise
    log: bool
    bounds: tuple[float, float]
    grid: tuple[float, ...]


class Term(NamedTuple):
    """θ[coef] alone (rate None), or θ[coef] − r·x with r = θ[rate] (exp(−θ[rate]) when `decay`) and x the
    data column, plus the extra-axis shift (kind 'log': ln(1 + θ[k]·x_axis), 'pow': θ[k]·x_axis)."""

    coef: int
    rate: int | None = None
    column: str = ""
    shift: tuple[str, int, str] | None = None  # (kind, parameter index k, axis column)
    decay: bool = False


def _at(th: np.ndarray, i: int):
    """θ_i for one θ of shape (P,), or a column (M, 1) for a batch of shape (M, P)."""
    return th[i] if th.ndim == 1 else th[:, i : i + 1]


def _x(t: Term, th: np.ndarray, c: Cols) -> np.ndarray:
    if t.shift is None:
        return c[t.column]
    kind, k, axis = t.shift
    g = np.log1p(_at(th, k) * c[axis]) if kind == "log" else _at(th, k) * c[axis]
    return c[t.column] + g


@dataclass(frozen=True)
class Law:
    id: str
    name: str
    form: str
    parametrisation: str
    table: tuple[Param, ...]
    spec: tuple[Term, ...]
    shape: tuple[str, ...]  # exponent-like parameters that must agree across starts

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.table)

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        return tuple(p.bounds for p in self.table)

    @cached_property  # read twice per objective call, ~10^5 calls per bootstrap
    def columns(self) -> tuple[str, ...]:
        cols = [t.column for t in self.spec if t.column] + [t.shift[2] for t in self.spec if t.shift]
        return tuple(dict.fromkeys(cols))

    @cached_property
    def n_params(self) -> int:
        return len(self.table)

    def grid_points(self) -> np.ndarray:
        return np.array(list(itertools.product(*(p.grid for p in self.table))), dtype=float)

    def natural(self, theta: np.ndarray) -> dict[str, float]:
        return {p.natural: float(np.exp(v)) if p.log else float(v) for p, v in zip(self.table, theta)}

    def terms(self, th: np.ndarray, c: Cols) -> np.ndarray:
        """θ of shape (M, P) → term values (K, M, n). Filled in place: the objective calls this ~10^5 times
        per bootstrap, and np.stack + broadcast_to is slower."""
        out = np.empty((len(self.spec), th.shape[0], c[self.columns[0]].size))
        for k, t in enumerate(self.spec):
            if t.rate is None:
                out[k] = _at(th, t.coef)
            elif t.decay:
                out[k] = _at(th, t.coef) - c[t.column] * np.exp(-_at(th, t.rate))
            else:
                out[k] = _at(th, t.coef) - _at(th, t.rate) * _x(t, th, c)
        return out

    def jac(self, th: np.ndarray, c: Cols) -> np.ndarray:
        """∂term/∂θ for θ of shape (P,): (K, P, n)."""
        j = np.zeros((len(self.spec), self.n_params, c[self.columns[0]].size))
        for k, t in enumerate(self.spec):
            j[k, t.coef] = 1.0
            if t.decay:
                j[k, t.rate] = c[t.column] * np.exp(-th[t.rate])
            elif t.rate is not None:
                j[k, t.rate] = -_x(t, th, c)
                if t.shift is not None:
                    kind, i, axis = t.shift
                    r, xa = th[t.rate], c[axis]
                    j[k, i] = -r * xa / (1.0 + th[i] * xa) if kind == "log" else -r * xa
        return j

    def predict(self, theta: np.ndarray, cols: Cols) -> np.ndarray:
        """Predicted log loss ℓ̂ for one θ."""
        return lse(self.terms(np.asarray(theta, float)[None, :], cols)[:, 0])

    def log_jacobian(self, theta: np.ndarray, cols: Cols) -> np.ndarray:
        """∂ℓ̂/∂θ, shape (n, P): softmax-weighted term derivatives."""
        theta = np.asarray(theta, float)
        t = self.terms(theta[None, :], cols)[:, 0]
        w = np.exp(t - lse(t))
        return np.einsum("kn,kpn->np", w, self.jac(theta, cols))


def lse(t: np.ndarray) -> np.ndarray:
    m = t.max(axis=0)
    return m + np.log(np.exp(t - m).sum(axis=0))


# docs/scaling.md §3.3 bounds; unbounded fits of collinear designs ran off to β < 0 and E → 0.
_AB, _E, _EXP = (-10.0, 50.0), (-10.0, float(np.log(20.0))), (0.0, 3.0)
_COEF_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
_E_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
_EXP_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)

# Chinchilla's Approach-3 start grid (6·6·5·5·5 = 4 500 points), θ = (a, b, e, alpha, beta).
_ND_TABLE = (Param("a", "A", True, _AB, _COEF_GRID), Param("b", "B", True, _AB, _COEF_GRID),
             Param("e", "E", True, _E, _E_GRID), Param("alpha", "alpha", False, _EXP, _EXP_GRID),
             Param("beta", "beta", False, _EXP, _EXP_GRID))

# Published optima, two extra starts for L(N, D) (docs/scaling.md §3.4).
PUBLISHED_ND = {
    "chinchilla_tex": (6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083),
    "epoch_refit": (float(np.log(477.84)), float(np.log(2143.86)), float(np.log(1.8172)), 0.3473, 0.3672),
}


def _nd_terms(n_shift: tuple[str, int, str] | None = None, d_shift: tuple[str, int, str] | None = None):
    return (Term(0, 3, "lnN", n_shift), Term(1, 4, "lnD", d_shift), Term(2))


ND = Law("chinchilla_nd", "L(N,D)", "L = E + A/N^alpha + B/D^beta",
         "log L = LSE(a - alpha ln N, b - beta ln D, e); A=e^a, B=e^b, E=e^e",
         _ND_TABLE, _nd_terms(), ("alpha", "beta"))


def _power1(law_id: str, column: str, name: str) -> Law:
    """L = E + A/x^α: N at fixed D or D/N, D at fixed N (fallbacks when L(N, D) is refused), C on the envelope."""
    table = (Param("a", "A", True, _AB, _COEF_GRID), Param("e", "E", True, _E, _E_GRID),
             Param("alpha", "alpha", False, _EXP, (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)))
    return Law(law_id, name, f"L = E + A/{column[2:]}^alpha", f"log L = LSE(a - alpha {column}, e); A=e^a, E=e^e",
               table, (Term(0, 2, column), Term(1)), ("alpha",))


# extra axis x (T or N_z): form → (formula, parametrisation, extra parameters, terms given the axis column)
_KAPPA_P = (Param("kappa", "kappa", False, (0.0, 20.0), (0.1, 0.3, 1.0, 3.0)),)
_AXIS_FORMS = {
    "eff_params_log": ("L = E + A/(N*(1+kappa*ln(1+{x})))^alpha + B/D^beta",
                       "log L = LSE(a - alpha(ln N + ln(1+kappa ln(1+x))), b - beta ln D, e)",
                       _KAPPA_P, lambda x: _nd_terms(n_shift=("log", 5, x))),
    "eff_params_pow": ("L = E + A/(N*(1+{x})^phi)^alpha + B/D^beta",
                       "log L = LSE(a - alpha(ln N + phi ln(1+x)), b - beta ln D, e)",
                       (Param("phi", "phi", False, _EXP, (0.1, 0.3, 0.6, 1.0)),),
                       lambda x: _nd_terms(n_shift=("pow", 5, x))),
    "eff_data_log": ("L = E + A/N^alpha + B/(D*(1+kappa*ln(1+{x})))^beta",
                     "log L = LSE(a - alpha ln N, b - beta(ln D + ln(1+kappa ln(1+x))), e)",
                     _KAPPA_P, lambda x: _nd_terms(d_shift=("log", 5, x))),
    "additive": ("L = E + A/N^alpha + B/D^beta + C_x/(1+{x})^gamma",
                 "log L = LSE(a - alpha ln N, b - beta ln D, e, c - gamma ln(1+x)); C_x=e^c",
                 (Param("c", "C_x", True, (-15.0, 5.0), (-3.0, -1.0, 1.0)),
                  Param("gamma", "gamma", False, (0.0, 5.0), (0.25, 0.75, 2.0))),
                 lambda x: (*_nd_terms(), Term(5, 6, x))),
}
_AXES = {"T": ("t", "lnT1"), "N_z": ("nz", "lnZ1")}  # axis → (law id prefix, data column)
# the four candidate forms for axis 'T' (inner steps) or 'N_z' (number of latents), by form name
AXIS_LAWS = {axis: {form: Law(f"{prefix}_{form}", f"L(N,D,{axis}) {form}", formula.format(x=axis),
                              param, _ND_TABLE + extra, terms(column), ("alpha", "beta"))
                    for form, (formula, param, extra, terms) in _AXIS_FORMS.items()}
             for axis, (prefix, column) in _AXES.items()}

# loss against eval-time inner steps on one checkpoint
_TEVAL_HEAD = (Param("e", "L_inf", True, _E, (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)),
               Param("c", "c", True, (-20.0, 10.0), (-4.0, -2.0, 0.0, 2.0)))
TEVAL_LAWS: dict[str, Law] = {
    "saturating_power": Law("teval_power", "L(T_eval) saturating_power", "L = L_inf + c*T_eval^(-gamma)",
                            "log L = LSE(e, c - gamma ln T_eval); L_inf=e^e",
                            _TEVAL_HEAD + (Param("gamma", "gamma", False, (0.0, 5.0), (0.25, 0.5, 1.0, 2.0)),),
                            (Term(0), Term(1, 2, "lnTeval")), ("gamma",)),
    "saturating_exp": Law("teval_exp", "L(T_eval) saturating_exp", "L = L_inf + c*exp(-T_eval/tau)",
                          "log L = LSE(e, c - T_eval*exp(-s)); L_inf=e^e, tau=e^s",
                          _TEVAL_HEAD + (Param("s", "tau", True, (float(np.log(0.05)), float(np.log(1e5))),
                                               (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)),),
                          (Term(0), Term(1, 2, "Teval", decay=True)), ("s",)),
}

# one-variable laws by (x, the variable held fixed); the compute envelope L(C)
ONE_VARIABLE = {("N", "D"): _power1("n_at_fixed_d", "lnN", "L(N)|D"),
                ("N", "D/N"): _power1("n_at_fixed_ratio", "lnN", "L(N)|D/N"),
                ("D", "N"): _power1("d_at_fixed_n", "lnD", "L(D)|N")}
ENVELOPE = _power1("c_envelope", "lnC", "L(C) envelope")

LAWS: dict[str, Law] = {law.id: law for law in (
    ND, *ONE_VARIABLE.values(), ENVELOPE, *AXIS_LAWS["T"].values(), *AXIS_LAWS["N_z"].values(),
    *TEVAL_LAWS.values())}

