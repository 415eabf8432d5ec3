"""The `fit` section of params.yaml (workflow/schemas/params.schema.yaml): keys, defaults, validation.

Only what params.yaml can set is a key; the method's fixed choices are named constants next to the code
that uses them (fit.FitSettings, checks.CheckSettings, nd, axes). Unknown keys and wrong types are
refused with a message naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltm.errors import LtmError
from ltm.scaling.checks import CheckSettings
from ltm.scaling.fit import FitSettings
from ltm.scaling.uncertainty import BootstrapSettings

DEFAULTS: dict[str, Any] = {
    "huber_delta": 1e-3,  # δ of the summed Huber objective (docs/scaling.md §3.3)
    "n_starts": 20,  # L-BFGS-B runs from the best grid points (§3.4)
    "n_bootstrap": 1000,  # replicates for the CIs (§3.5)
    "seed": 0,
    "heldout_rule": "compute",  # 'compute': train on C < heldout_fraction*C_max; 'largest_size' (§3.6)
    "heldout_fraction": 0.25,
    "min_points_per_param": 4.0,  # design minimum (§3.7)
    "min_tokens_per_param": 1.0,  # exclude runs with D/N below this (§3.2)
}


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, str)


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
        if not _type_ok(DEFAULTS[k], v):
            raise LtmError(f"fit.{k}: wrong type or value {v!r} (default {DEFAULTS[k]!r})")
    full = {**DEFAULTS, **cfg}
    fit = FitSettings(delta=float(full["huber_delta"]), n_starts=full["n_starts"])
    if not fit.delta > 0:
        raise LtmError("fit.huber_delta must be > 0")
    if fit.n_starts < fit.min_agree:
        raise LtmError(f"fit.n_starts must be >= {fit.min_agree} (the starts that must agree)")
    if not 0 < full["heldout_fraction"] < 1:
        raise LtmError("fit.heldout_fraction must be in (0, 1)")
    if full["heldout_rule"] not in ("compute", "largest_size"):
        raise LtmError("fit.heldout_rule must be 'compute' or 'largest_size'")
    if full["n_bootstrap"] < 0:
        raise LtmError("fit.n_bootstrap must be >= 0")
    checks = CheckSettings(min_points_per_param=float(full["min_points_per_param"]))
    return Settings(full, fit, checks, BootstrapSettings(n=full["n_bootstrap"], seed=full["seed"]))
