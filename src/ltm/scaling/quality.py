"""Goodness of fit (docs/scaling.md §3.6): in-sample error and held-out extrapolation splits.

The primary check is extrapolation: fit on the small-compute runs, predict the largest. Errors are in
nats (loss units) and relative, with the sign convention predicted − observed.
"""
from __future__ import annotations

import numpy as np

from ltm.errors import LtmError


def errors(pred_lnL: np.ndarray, obs_lnL: np.ndarray) -> dict[str, float]:
    """MAE/RMSE/bias in nats, mean and max |relative error|, median |log residual|."""
    pred, obs = np.exp(pred_lnL), np.exp(obs_lnL)
    d = pred - obs
    rel = np.abs(d) / obs
    return {
        "n": int(d.size),
        "mae": float(np.mean(np.abs(d))),
        "rmse": float(np.sqrt(np.mean(d * d))),
        "bias": float(np.mean(d)),
        "mean_abs_rel": float(np.mean(rel)),
        "max_abs_rel": float(np.max(rel)),
        "median_abs_log_residual": float(np.median(np.abs(pred_lnL - obs_lnL))),
    }


def split_mask(rule: str, fraction: float, C: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, str]:
    """Training mask and a description of the split.

    'compute': train on C < fraction·C_max; 'largest_size': train on every size but the largest."""
    if rule == "compute":
        cut = fraction * float(np.max(C))
        return C < cut, f"train on C < {fraction:g} * C_max = {cut:.4g} FLOPs, predict the rest"
    if rule == "largest_size":
        top = float(np.max(N))
        return N < top * (1 - 1e-9), f"train on N < {top:.4g}, predict the largest size"
    raise LtmError(f"fit.heldout_rule must be 'compute' or 'largest_size', got {rule!r}")


def largest_value_mask(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Training mask that leaves out the rows at the largest value of x (extra axes, T_eval)."""
    top = float(np.max(x))
    return x < top * (1 - 1e-9), top
