"""The `fit` section of params.yaml: keys, defaults, validation.

Unknown keys and wrong types are refused with a message naming the key. `resolve` returns the full
key set (defaults filled in) plus the typed settings objects the fitting code uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltm.errors import LtmError
from ltm.scaling.checks import CheckSettings
from ltm.scaling.fit import FitSettings
from ltm.scaling.laws import CHINCHILLA_GRID
from ltm.scaling.uncertainty import BootstrapSettings

DEFAULTS: dict[str, Any] = {
    # objective and optimiser (docs/scaling.md §3.3-3.4)
    "huber_delta": 1e-3,
    "sensitivity_deltas": [1e-4, 1e-2],  # refits reported next to the main δ, plus plain least squares
    "grid": {},  # overrides of the L(N,D) start grid: any of a, b, e, alpha, beta -> list of values
    "n_starts": 20,  # L-BFGS-B runs from the best grid points
    "published_starts": True,  # also start from the Chinchilla and Epoch optima
    "ftol": 1e-15,
    "gtol": 1e-9,
    "maxiter": 10000,
    # acceptance (§3.4.3)
    "min_agree_starts": 3,
    "agree_rel_tol": 1e-9,
    "agree_param_tol": 1e-4,
    "bound_tol": 1e-6,
    "restart_rel_tol": 1e-10,
    "crosscheck_tol": 0.01,  # flag when trust-region least squares moves alpha or beta by more
    # uncertainty (§3.5)
    "n_bootstrap": 1000,
    "bootstrap_check_every": 20,  # every k-th replicate also runs the full multi-start
    "seed": 0,
    "n_jobs": 1,  # processes for the bootstrap
    "ci_narrow_flag": 0.005,  # flag a 95 % CI of a = beta/(alpha+beta) narrower than this
    # goodness of fit (§3.6)
    "heldout_rule": "compute",  # 'compute': train on C < heldout_fraction*C_max; 'largest_size'
    "heldout_fraction": 0.25,
    "leave_one_size_out": True,
    # design minimums and identifiability (§3.7)
    "min_points_per_param": 4.0,
    "min_distinct": 3,
    "min_range_ratio": 8.0,
    "identifiability_refuse": 1e-5,
    "identifiability_flag": 1e-3,
    "exponent_range": [0.05, 1.5],
    "axis_min_span": 4.0,  # T or N_z must span this factor for an extra-axis law
    "axis_runs_per_param": 5,  # extra runs needed per extra-axis parameter
    "teval_points_per_param": 2.0,  # one checkpoint, fixed eval seeds: less noise than across runs
    # exclusions (§3.2)
    "min_tokens_per_param": 1.0,
    "max_loss": None,  # exclude runs with loss >= this (diverged or far-off-frontier runs)
    "use_checkpoints": False,  # use non-final checkpoints (only with comparable LR schedules, e.g. WSD)
    # reporting
    "target_flops": [],  # budgets for N*, D*, L* (empty: the group's largest C and 10x it)
}

_NUMBER = (int, float)


def _check_type(key: str, value: Any) -> None:
    default = DEFAULTS[key]
    if key == "max_loss":
        ok = value is None or (isinstance(value, _NUMBER) and not isinstance(value, bool))
    elif key == "grid":
        ok = isinstance(value, dict) and all(
            k in CHINCHILLA_GRID and isinstance(v, list) and v and all(isinstance(x, _NUMBER) for x in v)
            for k, v in value.items()
        )
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, _NUMBER) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(x, _NUMBER) and not isinstance(x, bool) for x in value)
    else:  # pragma: no cover - every default has one of the types above
        ok = True
    if not ok:
        raise LtmError(f"fit.{key}: wrong type or value {value!r} (default {default!r})")


@dataclass(frozen=True)
class Settings:
    cfg: dict[str, Any]
    fit: FitSettings
    checks: CheckSettings
    boot: BootstrapSettings


def resolve(cfg: dict[str, Any] | None) -> Settings:
    """Validate the `fit` section and fill defaults."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise LtmError(f"fit: unknown key(s) {', '.join(unknown)}")
    for k, v in cfg.items():
        _check_type(k, v)
    full = {**DEFAULTS, **cfg}
    if not full["huber_delta"] > 0 or any(d <= 0 for d in full["sensitivity_deltas"]):
        raise LtmError("fit.huber_delta and fit.sensitivity_deltas must be > 0")
    if full["n_starts"] < full["min_agree_starts"]:
        raise LtmError("fit.n_starts must be >= fit.min_agree_starts")
    if not 0 < full["heldout_fraction"] < 1:
        raise LtmError("fit.heldout_fraction must be in (0, 1)")
    if full["heldout_rule"] not in ("compute", "largest_size"):
        raise LtmError("fit.heldout_rule must be 'compute' or 'largest_size'")
    if len(full["exponent_range"]) != 2:
        raise LtmError("fit.exponent_range must be [low, high]")
    if full["n_bootstrap"] < 0 or full["n_jobs"] < 1:
        raise LtmError("fit.n_bootstrap must be >= 0 and fit.n_jobs >= 1")
    fit = FitSettings(
        delta=float(full["huber_delta"]),
        n_starts=full["n_starts"],
        ftol=float(full["ftol"]),
        gtol=float(full["gtol"]),
        maxiter=full["maxiter"],
        min_agree=full["min_agree_starts"],
        agree_rel=float(full["agree_rel_tol"]),
        agree_param=float(full["agree_param_tol"]),
        bound_tol=float(full["bound_tol"]),
        restart_rel=float(full["restart_rel_tol"]),
    )
    checks = CheckSettings(
        min_points_per_param=float(full["min_points_per_param"]),
        min_distinct=full["min_distinct"],
        min_range_flag=float(full["min_range_ratio"]),
        id_refuse=float(full["identifiability_refuse"]),
        id_flag=float(full["identifiability_flag"]),
        exponent_range=(float(full["exponent_range"][0]), float(full["exponent_range"][1])),
        axis_min_span=float(full["axis_min_span"]),
        axis_runs_per_param=full["axis_runs_per_param"],
    )
    boot = BootstrapSettings(
        n=full["n_bootstrap"], check_every=full["bootstrap_check_every"], seed=full["seed"], n_jobs=full["n_jobs"]
    )
    return Settings(full, fit, checks, boot)
