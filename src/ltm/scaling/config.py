"""The `fit` section of params.yaml as one typed object: every key required (no defaults), checked against
the params schema (workflow/schemas/params.schema.yaml, the one statement of types and ranges) by the
same code that checks params.yaml, since a library caller hands run_scaling these keys alone; errors name
the key. The method's fixed choices are constants next to the code using them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ltm.config import FromParams, section_error
from ltm.errors import LtmError
from ltm.scaling.fit import FitSettings
from ltm.scaling.uncertainty import BootstrapSettings


@dataclass(frozen=True)
class Settings(FromParams):
    """params.yaml `fit:` without loss_kinds and split (they choose the records, in ltm.stages.scaling)."""

    huber_delta: float
    n_starts: int
    n_bootstrap: int
    seed: int
    heldout_rule: str  # 'compute' | 'largest_size'
    heldout_fraction: float
    min_points_per_param: float
    min_tokens_per_param: float

    @property
    def fit(self) -> FitSettings:
        return FitSettings(delta=self.huber_delta, n_starts=self.n_starts)

    @property
    def boot(self) -> BootstrapSettings:
        return BootstrapSettings(n=self.n_bootstrap, seed=self.seed)


KEYS = tuple(f.name for f in fields(Settings))


def resolve(cfg: dict[str, Any] | None) -> Settings:
    """Check the `fit` keys (every key of KEYS, nothing else) and build the settings."""
    full = dict(cfg or {})
    unknown = sorted(set(full) - set(KEYS))
    if unknown:
        raise LtmError(f"fit: unknown key(s) {', '.join(unknown)}")
    error = section_error("fit", full, KEYS)  # before the missing keys: a bad value is the more specific message
    if error:
        raise LtmError(error)
    missing = [k for k in KEYS if k not in full]
    if missing:
        raise LtmError(f"fit: missing key(s) {', '.join(missing)}")
    return Settings.from_params(full)
