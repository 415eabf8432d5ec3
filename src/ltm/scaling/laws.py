"""The law registry: every functional form the scaling stage fits, under a stable id (`LAWS`).

Every law predicts the log loss as `ℓ̂ = logsumexp_k(term_k(θ, x))`, each term the log of one additive
piece of `L = E + A/N^α + ...`, so one objective, optimiser and identifiability check serve every form:
a law only supplies its terms, their derivatives, bounds and a start grid. fit.json names each fitted
law by its `id`; `name` is the display label. Extra axes x (T, N_z) enter through ln(1+x), so T = 0 is
a valid point (docs/scaling.md §3.8.3).

Data columns a law may read (`records.Points.cols`): lnN, lnD, lnC, lnT1 = ln(1+T), lnZ1 = ln(1+N_z),
Teval, lnTeval.
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
_KAPPA = (0.0, 20.0)

# Chinchilla's Approach-3 start grid (6·6·5·5·5 = 4 500 points), in θ order a, b, e, alpha, beta.
ND_GRID = ((0.0, 5.0, 10.0, 15.0, 20.0, 25.0), (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), (-1.0, -0.5, 0.0, 0.5, 1.0),
           (0.0, 0.5, 1.0, 1.5, 2.0), (0.0, 0.5, 1.0, 1.5, 2.0))
_KAPPA_GRID = (0.1, 0.3, 1.0, 3.0)
_LINF_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)

# Published optima, two extra starts for L(N, D) (docs/scaling.md §3.4).
PUBLISHED_ND = {
    "chinchilla_tex": (6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083),
    "epoch_refit": (float(np.log(477.84)), float(np.log(2143.86)), float(np.log(1.8172)), 0.3473, 0.3672),
}


@dataclass(frozen=True)
class Law:
    """One functional form. `terms` takes θ of shape (M, P) and returns (K, M, n); `jac` takes θ of shape
    (P,) and returns ∂term/∂θ of shape (K, P, n)."""

    id: str
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
        return _lse(self.terms(np.asarray(theta, float)[None, :], cols)[:, 0])

    def log_jacobian(self, theta: np.ndarray, cols: Cols) -> np.ndarray:
        """∂ℓ̂/∂θ, shape (n, P): softmax-weighted term derivatives."""
        theta = np.asarray(theta, float)
        t = self.terms(theta[None, :], cols)[:, 0]
        w = np.exp(t - _lse(t))
        return np.einsum("kn,kpn->np", w, self.jac(theta, cols))


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


def _nd_jac(th: np.ndarray, c: Cols, n_terms: int = 3, n_params: int = 5) -> np.ndarray:
    """The L(N, D) derivatives; the extra-axis forms start from these and overwrite what they change."""
    lnN, lnD = c["lnN"], c["lnD"]
    j = np.zeros((n_terms, n_params, lnN.size))
    j[0, 0], j[0, 3] = 1.0, -lnN
    j[1, 1], j[1, 4] = 1.0, -lnD
    j[2, 2] = 1.0
    return j


def _nd_natural(th: np.ndarray) -> dict[str, float]:
    a, b, e, al, be = (float(v) for v in th[:5])
    return {"A": float(np.exp(a)), "B": float(np.exp(b)), "E": float(np.exp(e)), "alpha": al, "beta": be}


ND = Law(
    id="chinchilla_nd",
    name="L(N,D)",
    form="L = E + A/N^alpha + B/D^beta",
    parametrisation="log L = LSE(a - alpha ln N, b - beta ln D, e); A=e^a, B=e^b, E=e^e",
    params=("a", "b", "e", "alpha", "beta"),
    bounds=(_AB, _AB, _E, _EXP, _EXP),
    grid=ND_GRID,
    shape=("alpha", "beta"),
    columns=("lnN", "lnD"),
    terms=_nd_terms,
    jac=_nd_jac,
    natural=_nd_natural,
)


# ---------------------------------------------------------------- one variable: L = E + A/x^α
def _power1_terms(th: np.ndarray, c: Cols, column: str) -> np.ndarray:
    x = c[column]
    return _fill(th, x.size, [_p(th, 0) - _p(th, 2) * x, 1])


def _power1_jac(th: np.ndarray, c: Cols, column: str) -> np.ndarray:
    x = c[column]
    j = np.zeros((2, 3, x.size))
    j[0, 0], j[0, 2] = 1.0, -x
    j[1, 1] = 1.0
    return j


def _power1_natural(th: np.ndarray) -> dict[str, float]:
    return {"A": float(np.exp(th[0])), "E": float(np.exp(th[1])), "alpha": float(th[2])}


def _power1(law_id: str, column: str, name: str) -> Law:
    """N at fixed D or D/N, D at fixed N (fallbacks when L(N, D) is refused), or C on the envelope."""
    return Law(
        id=law_id, name=name, form=f"L = E + A/{column[2:]}^alpha",
        parametrisation=f"log L = LSE(a - alpha {column}, e); A=e^a, E=e^e",
        params=("a", "e", "alpha"), bounds=(_AB, _E, _EXP),
        grid=((0.0, 5.0, 10.0, 15.0, 20.0, 25.0), (-1.0, -0.5, 0.0, 0.5, 1.0), (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)),
        shape=("alpha",), columns=(column,), terms=partial(_power1_terms, column=column),
        jac=partial(_power1_jac, column=column), natural=_power1_natural,
    )


# ---------------------------------------------------------------- extra axis x (T or N_z)
def _epl_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:  # effective parameters N·(1 + κ ln(1+x))
    g = np.log1p(_p(th, 5) * c[x])
    return _fill(th, c["lnN"].size, [_p(th, 0) - _p(th, 3) * (c["lnN"] + g), _p(th, 1) - _p(th, 4) * c["lnD"], 2])


def _epl_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    al, kappa, xv = th[3], th[5], c[x]
    j = _nd_jac(th, c, 3, 6)
    j[0, 3] = -(c["lnN"] + np.log1p(kappa * xv))
    j[0, 5] = -al * xv / (1.0 + kappa * xv)
    return j


def _epp_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:  # effective parameters N·(1+x)^φ
    return _fill(th, c["lnN"].size,
                 [_p(th, 0) - _p(th, 3) * (c["lnN"] + _p(th, 5) * c[x]), _p(th, 1) - _p(th, 4) * c["lnD"], 2])


def _epp_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    j = _nd_jac(th, c, 3, 6)
    j[0, 3] = -(c["lnN"] + th[5] * c[x])
    j[0, 5] = -th[3] * c[x]
    return j


def _edl_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:  # effective data D·(1 + κ ln(1+x))
    h = np.log1p(_p(th, 5) * c[x])
    return _fill(th, c["lnN"].size, [_p(th, 0) - _p(th, 3) * c["lnN"], _p(th, 1) - _p(th, 4) * (c["lnD"] + h), 2])


def _edl_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    be, kappa, xv = th[4], th[5], c[x]
    j = _nd_jac(th, c, 3, 6)
    j[1, 4] = -(c["lnD"] + np.log1p(kappa * xv))
    j[1, 5] = -be * xv / (1.0 + kappa * xv)
    return j


def _add_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:  # a separate saturating term C_x·(1+x)^(−γ)
    return _fill(th, c["lnN"].size, [_p(th, 0) - _p(th, 3) * c["lnN"], _p(th, 1) - _p(th, 4) * c["lnD"], 2,
                                     _p(th, 5) - _p(th, 6) * c[x]])


def _add_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    j = _nd_jac(th, c, 4, 7)
    j[3, 5] = 1.0
    j[3, 6] = -c[x]
    return j


def _nat_extra(th: np.ndarray, names: tuple[str, ...], exp_first: bool = False) -> dict[str, float]:
    out = _nd_natural(th)
    for i, name in enumerate(names):
        v = float(th[5 + i])
        out[name] = float(np.exp(v)) if (exp_first and i == 0) else v
    return out


# form → (formula, parametrisation, extra params, extra bounds, extra grid, terms, jac, natural names)
_AXIS_FORMS = {
    "eff_params_log": ("L = E + A/(N*(1+kappa*ln(1+{x})))^alpha + B/D^beta",
                       "log L = LSE(a - alpha(ln N + ln(1+kappa ln(1+x))), b - beta ln D, e)",
                       ("kappa",), (_KAPPA,), (_KAPPA_GRID,), _epl_terms, _epl_jac, ("kappa",)),
    "eff_params_pow": ("L = E + A/(N*(1+{x})^phi)^alpha + B/D^beta",
                       "log L = LSE(a - alpha(ln N + phi ln(1+x)), b - beta ln D, e)",
                       ("phi",), (_EXP,), ((0.1, 0.3, 0.6, 1.0),), _epp_terms, _epp_jac, ("phi",)),
    "eff_data_log": ("L = E + A/N^alpha + B/(D*(1+kappa*ln(1+{x})))^beta",
                     "log L = LSE(a - alpha ln N, b - beta(ln D + ln(1+kappa ln(1+x))), e)",
                     ("kappa",), (_KAPPA,), (_KAPPA_GRID,), _edl_terms, _edl_jac, ("kappa",)),
    "additive": ("L = E + A/N^alpha + B/D^beta + C_x/(1+{x})^gamma",
                 "log L = LSE(a - alpha ln N, b - beta ln D, e, c - gamma ln(1+x)); C_x=e^c",
                 ("c", "gamma"), ((-15.0, 5.0), (0.0, 5.0)), ((-3.0, -1.0, 1.0), (0.25, 0.75, 2.0)),
                 _add_terms, _add_jac, ("C_x", "gamma")),
}
AXIS_ID_PREFIX = {"T": "t", "N_z": "nz"}
_AXIS_COLUMN = {"T": "lnT1", "N_z": "lnZ1"}


def _axis_law(axis: str, form: str) -> Law:
    formula, param, extra, bounds, grid, terms, jac, names = _AXIS_FORMS[form]
    col = _AXIS_COLUMN[axis]
    return Law(
        id=f"{AXIS_ID_PREFIX[axis]}_{form}", name=f"L(N,D,{axis}) {form}", form=formula.format(x=axis),
        parametrisation=param, params=ND.params + extra, bounds=ND.bounds + bounds, grid=ND_GRID + grid,
        shape=("alpha", "beta"), columns=("lnN", "lnD", col), terms=partial(terms, x=col),
        jac=partial(jac, x=col), natural=partial(_nat_extra, names=names, exp_first=form == "additive"),
    )


# ---------------------------------------------------------------- loss against eval-time inner steps
def _tp_terms(th: np.ndarray, c: Cols) -> np.ndarray:
    x = c["lnTeval"]
    return _fill(th, x.size, [0, _p(th, 1) - _p(th, 2) * x])


def _tp_jac(th: np.ndarray, c: Cols) -> np.ndarray:
    x = c["lnTeval"]
    j = np.zeros((2, 3, x.size))
    j[0, 0] = 1.0
    j[1, 1], j[1, 2] = 1.0, -x
    return j


def _te_terms(th: np.ndarray, c: Cols) -> np.ndarray:
    t = c["Teval"]
    return _fill(th, t.size, [0, _p(th, 1) - t * np.exp(-_p(th, 2))])


def _te_jac(th: np.ndarray, c: Cols) -> np.ndarray:
    t = c["Teval"]
    j = np.zeros((2, 3, t.size))
    j[0, 0] = 1.0
    j[1, 1], j[1, 2] = 1.0, t * np.exp(-th[2])
    return j


def _tp_nat(th: np.ndarray) -> dict[str, float]:
    return {"L_inf": float(np.exp(th[0])), "c": float(np.exp(th[1])), "gamma": float(th[2])}


def _te_nat(th: np.ndarray) -> dict[str, float]:
    return {"L_inf": float(np.exp(th[0])), "c": float(np.exp(th[1])), "tau": float(np.exp(th[2]))}


TEVAL_LAWS: dict[str, Law] = {
    "saturating_power": Law(
        id="teval_power", name="L(T_eval) saturating_power", form="L = L_inf + c*T_eval^(-gamma)",
        parametrisation="log L = LSE(e, c - gamma ln T_eval); L_inf=e^e", params=("e", "c", "gamma"),
        bounds=(_E, (-20.0, 10.0), (0.0, 5.0)), grid=(_LINF_GRID, (-4.0, -2.0, 0.0, 2.0), (0.25, 0.5, 1.0, 2.0)),
        shape=("gamma",), columns=("lnTeval",), terms=_tp_terms, jac=_tp_jac, natural=_tp_nat,
    ),
    "saturating_exp": Law(
        id="teval_exp", name="L(T_eval) saturating_exp", form="L = L_inf + c*exp(-T_eval/tau)",
        parametrisation="log L = LSE(e, c - T_eval*exp(-s)); L_inf=e^e, tau=e^s", params=("e", "c", "s"),
        bounds=(_E, (-20.0, 10.0), (float(np.log(0.05)), float(np.log(1e5)))),
        grid=(_LINF_GRID, (-4.0, -2.0, 0.0, 2.0), (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)),
        shape=("s",), columns=("Teval",), terms=_te_terms, jac=_te_jac, natural=_te_nat,
    ),
}

# one-variable laws by (x, the variable held fixed); the compute envelope L(C)
ONE_VARIABLE = {("N", "D"): _power1("n_at_fixed_d", "lnN", "L(N)|D"),
                ("N", "D/N"): _power1("n_at_fixed_ratio", "lnN", "L(N)|D/N"),
                ("D", "N"): _power1("d_at_fixed_n", "lnD", "L(D)|N")}
ENVELOPE = _power1("c_envelope", "lnC", "L(C) envelope")
AXIS_LAWS = {axis: {form: _axis_law(axis, form) for form in _AXIS_FORMS} for axis in AXIS_ID_PREFIX}

LAWS: dict[str, Law] = {law.id: law for law in (
    ND, *ONE_VARIABLE.values(), ENVELOPE, *AXIS_LAWS["T"].values(), *AXIS_LAWS["N_z"].values(),
    *TEVAL_LAWS.values())}


def extra_axis_laws(axis: str) -> dict[str, Law]:
    """The four candidate forms for axis 'T' (inner steps) or 'N_z' (number of latents), by form name."""
    return AXIS_LAWS[axis]
