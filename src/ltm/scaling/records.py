"""Run records (keys: the package docstring) → validated column arrays (docs/scaling.md §3.1): anything a
fit must never see is refused with a one-line `LtmError`."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any, Iterable

import numpy as np

from ltm.errors import LtmError
from ltm.families import FAMILIES
from ltm.scaling.laws import Cols

REQUIRED = ("run", "family", "loss_kind", "loss", "params", "tokens")
# numeric record keys: (Points column, key, must be > 0 (else >= 0), value when missing)
_NUMBERS = (("loss", "loss", True, math.nan), ("N", "params", True, math.nan), ("D", "tokens", True, math.nan),
            ("C", "flops", True, math.nan), ("T", "T", False, 0.0), ("Nz", "n_latents", True, math.nan),
            ("Teval", "T_eval", False, math.nan))


def is_bound(loss_kind: str) -> bool:
    """Exact NLL kinds start with 'nll'; every other kind (ELBO, IWAE, paper protocol) is a bound."""
    return not loss_kind.startswith("nll")


def _num(rec: dict, key: str, where: str, positive: bool, default: float) -> float:
    v = rec.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, Real):
        raise LtmError(f"{where}: '{key}' must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise LtmError(f"{where}: '{key}' must be finite and {'> 0' if positive else '>= 0'}, got {v!r}")
    return v


def normalize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check every record; return plain dicts with all keys present (missing optional ones filled)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise LtmError(f"record {i}: expected a mapping, got {type(rec).__name__}")
        missing = [k for k in REQUIRED if rec.get(k) is None]
        where = f"record {i} (run {rec.get('run')!r})"
        if missing:
            raise LtmError(f"{where}: missing key(s) {', '.join(missing)}")
        name = rec["family"]
        if name not in FAMILIES:
            raise LtmError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {name!r}")
        kind = rec["loss_kind"]
        if not isinstance(kind, str) or not kind:
            raise LtmError(f"{where}: loss_kind must be a non-empty string")
        if FAMILIES[name].has_latents and rec.get("T") is None:
            raise LtmError(f"{where}: an ltm record needs 'T' (inner steps during training)")
        r = {"run": str(rec["run"]), "family": name, "loss_kind": kind,
             **{k: _num(rec, k, where, positive, default) for _, k, positive, default in _NUMBERS},
             "seed": rec.get("seed"), "final": bool(rec.get("final", True)),
             "diverged": bool(rec.get("diverged", False))}
        key = (kind, r["run"], r["tokens"], None if math.isnan(r["T_eval"]) else r["T_eval"])
        if key in seen:
            raise LtmError(f"{where}: duplicate record (same run, loss_kind, tokens and T_eval)")
        seen.add(key)
        out.append(r)
    if not out:
        raise LtmError("no run records to fit")
    return out


@dataclass(frozen=True)
class Points:
    """Column arrays of one (family, loss_kind) group; NaN marks a missing optional value."""

    family: str
    loss_kind: str
    run: np.ndarray
    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    T: np.ndarray
    Nz: np.ndarray
    Teval: np.ndarray
    loss: np.ndarray
    final: np.ndarray
    diverged: np.ndarray

    def __len__(self) -> int:
        return int(self.loss.size)

    @property
    def lnL(self) -> np.ndarray:
        return np.log(self.loss)

    @property
    def C_fit(self) -> np.ndarray:
        """Training compute; 6ND where a record carries no `flops` (callers warn about it)."""
        return np.where(np.isnan(self.C), 6.0 * self.N * self.D, self.C)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("family", "loss_kind")}

    def take(self, idx: np.ndarray) -> "Points":
        """The rows at integer indices `idx`, or where the boolean mask `idx` is True (in order)."""
        return Points(self.family, self.loss_kind, **{k: v[idx] for k, v in self.arrays().items()})

    def cols(self) -> Cols:
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"lnN": np.log(self.N), "lnD": np.log(self.D), "lnC": np.log(self.C_fit), "lnT1": np.log1p(self.T),
                    "lnZ1": np.log1p(np.nan_to_num(self.Nz)), "Teval": np.nan_to_num(self.Teval),
                    "lnTeval": np.log(np.where(self.Teval > 0, self.Teval, np.nan))}

    def clusters(self) -> np.ndarray:
        """Bootstrap cluster index per row: all checkpoints of one run resample together."""
        return np.unique(self.run.astype(str), return_inverse=True)[1]

    def concat(self, other: "Points") -> "Points":
        """Rows of self then other (same family and loss kind)."""
        more = other.arrays()
        return Points(self.family, self.loss_kind,
                      **{k: np.concatenate([v, more[k]]) for k, v in self.arrays().items()})


def to_points(records: list[dict[str, Any]]) -> Points:
    """Normalised records of ONE family and ONE loss kind → Points; mixing them is refused."""
    kinds = sorted({r["loss_kind"] for r in records})
    fams = sorted({r["family"] for r in records})
    if len(kinds) > 1:
        raise LtmError(f"one fit got mixed loss kinds {kinds}: bounds and exact NLL are never fitted together")
    if len(fams) > 1:
        raise LtmError(f"one fit got mixed families {fams}: each family is fitted separately")
    return Points(fams[0], kinds[0], run=np.array([r["run"] for r in records], dtype=object),
                  **{k: np.array([r[k] for r in records], dtype=bool) for k in ("final", "diverged")},
                  **{f: np.array([r[k] for r in records], dtype=float) for f, k, _, _ in _NUMBERS})


def group(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Normalised records split by (family, loss_kind), in a stable order."""
    keys = sorted({(r["family"], r["loss_kind"]) for r in records})
    return {key: [r for r in records if (r["family"], r["loss_kind"]) == key] for key in keys}


def main_mask(p: Points) -> np.ndarray:
    """Rows that carry a run's headline loss: evaluated with T_eval = T (or no T_eval given).
    The other rows are points of a loss-vs-T_eval curve on a fixed checkpoint."""
    return np.isnan(p.Teval) | (p.Teval == p.T)


def distinct(x: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """Sorted distinct finite values, treating values within `rel` (relative) as equal; each distinct
    value is reported as the smallest data value of its cluster (no round-off from log/exp)."""
    x = np.asarray(x, float)
    x = np.sort(x[np.isfinite(x)])
    return x[np.diff(np.log(np.maximum(x, 1e-300)), prepend=-np.inf) > rel]
