"""The `fit` section of params.yaml (workflow/schemas/params.schema.yaml): its keys and their checks.

Only what params.yaml can set is a key; the method's fixed choices are named constants next to the code
that uses them (fit.FitSettings, checks.CheckSettings, nd, axes). Every key must be given (the values
live in params.yaml only); unknown or missing keys and wrong types are refused with a message naming them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltm.errors import LtmError
from ltm.scaling.checks import CheckSettings
from ltm.scaling.fit import FitSettings
from ltm.scaling.uncertainty import BootstrapSettings

KEYS: dict[str, type] = {
    "huber_delta": float,  # δ of the summed Huber objective (docs/scaling.md §3.3)
    "n_starts": int,  # L-BFGS-B runs from the best grid points (§3.4)
    "n_bootstrap": int,  # replicates for the CIs (§3.5)
    "seed": int,
    "heldout_rule": str,  # 'compute': train on C < heldout_fraction*C_max; 'largest_size' (§3.6)
    "heldout_fraction": float,
    "min_points_per_param": float,  # design minimum (§3.7)
    "min_tokens_per_param": float,  # exclude runs with D/N below this (§3.2)
}


def _type_ok(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


@dataclass(frozen=True)
class Settings:
    cfg: dict[str, Any]
    fit: FitSettings
    checks: CheckSettings
    boot: BootstrapSettings


def resolve(cfg: dict[str, Any] | None) -> Settings:
    """Check the `fit` section (every key of KEYS, nothing else) and build the settings."""
    full = dict(cfg or {})
    unknown = sorted(set(full) - set(KEYS))
    if unknown:
        raise LtmError(f"fit: unknown key(s) {', '.join(unknown)}")
    for k, v in full.items():
        if not _type_ok(KEYS[k], v):
            raise LtmError(f"fit.{k}: wrong type or value {v!r} (a {KEYS[k].__name__})")
    missing = [k for k in KEYS if k not in full]
    if missing:
        raise LtmError(f"fit: missing key(s) {', '.join(missing)}")
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
