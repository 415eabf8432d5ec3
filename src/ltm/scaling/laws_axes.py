"""Laws with an extra axis: inner steps T or number of latents N_z (docs/scaling.md §3.8.3), and loss against
eval-time inner steps on a fixed checkpoint (§3.8.4).

The extra axis x enters through ln(1+x), so T = 0 (no inner loop) is a valid point. Candidate forms:
- eff_params_log: N·(1 + κ·ln(1+x))            (ParScale-like effective parameters)
- eff_params_pow: N·(1+x)^φ                    (Schwethelm-like effective parameters)
- eff_data_log:   D·(1 + κ·ln(1+x))            (effective data: "higher sample efficiency")
- additive:       + C_x·(1+x)^(−γ)              (a separate saturating term)
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ltm.scaling.laws import _E, _EXP, CHINCHILLA_GRID, ND, Cols, Law, _fill, _nd_natural, _p

_KAPPA = (0.0, 20.0)
_KAPPA_GRID = (0.1, 0.3, 1.0, 3.0)
_BASE_GRID = tuple(CHINCHILLA_GRID[k] for k in ("a", "b", "e", "alpha", "beta"))


def _base(th: np.ndarray, c: Cols) -> tuple[np.ndarray, np.ndarray, int]:
    return _p(th, 0), _p(th, 1), 2  # 2: the constant term e, filled by _fill


def _base_jac(c: Cols, n_terms: int, n_params: int) -> np.ndarray:
    j = np.zeros((n_terms, n_params, c["lnN"].size))
    j[0, 0] = 1.0
    j[1, 1] = 1.0
    j[2, 2] = 1.0
    return j


# ---------------------------------------------------------------- effective parameters, log
def _epl_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    a, b, e = _base(th, c)
    g = np.log1p(_p(th, 5) * c[x])
    return _fill(th, c["lnN"].size, [a - _p(th, 3) * (c["lnN"] + g), b - _p(th, 4) * c["lnD"], e])


def _epl_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    al, kappa, xv = th[3], th[5], c[x]
    j = _base_jac(c, 3, 6)
    j[0, 3] = -(c["lnN"] + np.log1p(kappa * xv))
    j[0, 5] = -al * xv / (1.0 + kappa * xv)
    j[1, 4] = -c["lnD"]
    return j


# ---------------------------------------------------------------- effective parameters, power
def _epp_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    a, b, e = _base(th, c)
    return _fill(th, c["lnN"].size, [a - _p(th, 3) * (c["lnN"] + _p(th, 5) * c[x]), b - _p(th, 4) * c["lnD"], e])


def _epp_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    j = _base_jac(c, 3, 6)
    j[0, 3] = -(c["lnN"] + th[5] * c[x])
    j[0, 5] = -th[3] * c[x]
    j[1, 4] = -c["lnD"]
    return j


# ---------------------------------------------------------------- effective data, log
def _edl_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    a, b, e = _base(th, c)
    h = np.log1p(_p(th, 5) * c[x])
    return _fill(th, c["lnN"].size, [a - _p(th, 3) * c["lnN"], b - _p(th, 4) * (c["lnD"] + h), e])


def _edl_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    be, kappa, xv = th[4], th[5], c[x]
    j = _base_jac(c, 3, 6)
    j[0, 3] = -c["lnN"]
    j[1, 4] = -(c["lnD"] + np.log1p(kappa * xv))
    j[1, 5] = -be * xv / (1.0 + kappa * xv)
    return j


# ---------------------------------------------------------------- additive saturating term
def _add_terms(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    a, b, e = _base(th, c)
    return _fill(th, c["lnN"].size,
                 [a - _p(th, 3) * c["lnN"], b - _p(th, 4) * c["lnD"], e, _p(th, 5) - _p(th, 6) * c[x]])


def _add_jac(th: np.ndarray, c: Cols, x: str) -> np.ndarray:
    j = _base_jac(c, 4, 7)
    j[0, 3] = -c["lnN"]
    j[1, 4] = -c["lnD"]
    j[3, 5] = 1.0
    j[3, 6] = -c[x]
    return j


def _nat_extra(th: np.ndarray, names: tuple[str, ...], exp_first: bool = False) -> dict[str, float]:
    out = _nd_natural(th)
    for i, name in enumerate(names):
        v = float(th[5 + i])
        out[name] = float(np.exp(v)) if (exp_first and i == 0) else v
    return out


def extra_axis_laws(axis: str) -> dict[str, Law]:
    """The four candidate forms for axis 'T' (inner steps) or 'N_z' (number of latents)."""
    col = {"T": "lnT1", "N_z": "lnZ1"}[axis]
    x = axis
    base = dict(columns=("lnN", "lnD", col), shape=("alpha", "beta"))
    nd_params = ND.params
    return {
        "eff_params_log": Law(
            name=f"L(N,D,{x}) eff_params_log",
            form=f"L = E + A/(N*(1+kappa*ln(1+{x})))^alpha + B/D^beta",
            parametrisation="log L = LSE(a - alpha(ln N + ln(1+kappa ln(1+x))), b - beta ln D, e)",
            params=nd_params + ("kappa",),
            bounds=ND.bounds + (_KAPPA,),
            grid=_BASE_GRID + (_KAPPA_GRID,),
            terms=partial(_epl_terms, x=col),
            jac=partial(_epl_jac, x=col),
            natural=partial(_nat_extra, names=("kappa",)),
            **base,
        ),
        "eff_params_pow": Law(
            name=f"L(N,D,{x}) eff_params_pow",
            form=f"L = E + A/(N*(1+{x})^phi)^alpha + B/D^beta",
            parametrisation="log L = LSE(a - alpha(ln N + phi ln(1+x)), b - beta ln D, e)",
            params=nd_params + ("phi",),
            bounds=ND.bounds + (_EXP,),
            grid=_BASE_GRID + ((0.1, 0.3, 0.6, 1.0),),
            terms=partial(_epp_terms, x=col),
            jac=partial(_epp_jac, x=col),
            natural=partial(_nat_extra, names=("phi",)),
            **base,
        ),
        "eff_data_log": Law(
            name=f"L(N,D,{x}) eff_data_log",
            form=f"L = E + A/N^alpha + B/(D*(1+kappa*ln(1+{x})))^beta",
            parametrisation="log L = LSE(a - alpha ln N, b - beta(ln D + ln(1+kappa ln(1+x))), e)",
            params=nd_params + ("kappa",),
            bounds=ND.bounds + (_KAPPA,),
            grid=_BASE_GRID + (_KAPPA_GRID,),
            terms=partial(_edl_terms, x=col),
            jac=partial(_edl_jac, x=col),
            natural=partial(_nat_extra, names=("kappa",)),
            **base,
        ),
        "additive": Law(
            name=f"L(N,D,{x}) additive",
            form=f"L = E + A/N^alpha + B/D^beta + C_x/(1+{x})^gamma",
            parametrisation="log L = LSE(a - alpha ln N, b - beta ln D, e, c - gamma ln(1+x)); C_x=e^c",
            params=nd_params + ("c", "gamma"),
            bounds=ND.bounds + ((-15.0, 5.0), (0.0, 5.0)),
            grid=_BASE_GRID + ((-3.0, -1.0, 1.0), (0.25, 0.75, 2.0)),
            terms=partial(_add_terms, x=col),
            jac=partial(_add_jac, x=col),
            natural=partial(_nat_extra, names=("C_x", "gamma"), exp_first=True),
            **base,
        ),
    }


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


_LINF_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)

TEVAL_LAWS: dict[str, Law] = {
    "saturating_power": Law(
        name="L(T_eval) saturating_power",
        form="L = L_inf + c*T_eval^(-gamma)",
        parametrisation="log L = LSE(e, c - gamma ln T_eval); L_inf=e^e",
        params=("e", "c", "gamma"),
        bounds=(_E, (-20.0, 10.0), (0.0, 5.0)),
        grid=(_LINF_GRID, (-4.0, -2.0, 0.0, 2.0), (0.25, 0.5, 1.0, 2.0)),
        shape=("gamma",),
        columns=("lnTeval",),
        terms=_tp_terms,
        jac=_tp_jac,
        natural=_tp_nat,
    ),
    "saturating_exp": Law(
        name="L(T_eval) saturating_exp",
        form="L = L_inf + c*exp(-T_eval/tau)",
        parametrisation="log L = LSE(e, c - T_eval*exp(-s)); L_inf=e^e, tau=e^s",
        params=("e", "c", "s"),
        bounds=(_E, (-20.0, 10.0), (float(np.log(0.05)), float(np.log(1e5)))),
        grid=(_LINF_GRID, (-4.0, -2.0, 0.0, 2.0), (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)),
        shape=("s",),
        columns=("Teval",),
        terms=_te_terms,
        jac=_te_jac,
        natural=_te_nat,
    ),
}
