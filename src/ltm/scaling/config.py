"""The `fit` section of params.yaml: every key required (no defaults), checked against the params schema
(workflow/schemas/params.schema.yaml, the one statement of types and ranges); errors name the key.
Only what params.yaml can set is a key; the method's fixed choices are constants next to the code using them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

from ltm.config import load_schema, non_finite_key
from ltm.errors import LtmError
from ltm.scaling.checks import CheckSettings
from ltm.scaling.fit import FitSettings
from ltm.scaling.uncertainty import BootstrapSettings

# loss_kinds and split choose the records (ltm.stages.scaling); the fits get the other keys
KEYS = tuple(k for k in load_schema()["properties"]["fit"]["required"] if k not in ("loss_kinds", "split"))


@dataclass(frozen=True)
class Settings:
    cfg: dict[str, Any]
    fit: FitSettings
    checks: CheckSettings
    boot: BootstrapSettings


def _schema_error(cfg: dict[str, Any]) -> str | None:
    """The schema's verdict on the `fit` keys (the first violation, naming its key), or None."""
    root = load_schema()
    section = root["properties"]["fit"]
    schema = {"$defs": root["$defs"], "type": "object", "properties": {k: section["properties"][k] for k in KEYS}}
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(root)(schema).iter_errors(cfg))
    if error is not None:
        return f"fit.{'.'.join(map(str, error.absolute_path))}: {error.message}"
    bad = non_finite_key(cfg)
    return None if bad is None else f"fit.{bad}: must be a finite number, not NaN or infinity"


def resolve(cfg: dict[str, Any] | None) -> Settings:
    """Check the `fit` section (every key of KEYS, nothing else) and build the settings."""
    full = dict(cfg or {})
    unknown = sorted(set(full) - set(KEYS))
    if unknown:
        raise LtmError(f"fit: unknown key(s) {', '.join(unknown)}")
    error = _schema_error(full)  # before the missing keys: a bad value is the more specific message
    if error:
        raise LtmError(error)
    missing = [k for k in KEYS if k not in full]
    if missing:
        raise LtmError(f"fit: missing key(s) {', '.join(missing)}")
    fit = FitSettings(delta=float(full["huber_delta"]), n_starts=full["n_starts"])
    if fit.n_starts < fit.min_agree:  # a cross-field check the schema cannot state
        raise LtmError(f"fit.n_starts must be >= {fit.min_agree} (the starts that must agree)")
    checks = CheckSettings(min_points_per_param=float(full["min_points_per_param"]))
    return Settings(full, fit, checks, BootstrapSettings(n=full["n_bootstrap"], seed=full["seed"]))
