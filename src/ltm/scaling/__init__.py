"""Scaling-law fitting (docs/scaling.md): L(N, D) = E + A/N^α + B/D^β and friends.

run_scaling(records, cfg) -> dict   fit every law the records support, per (family, loss_kind)
write_outputs(result, out_dir)      fit.json + residuals.csv, written atomically
format_summary(result) -> str       short text report (refused laws show only their reason)

Records (one dict per evaluated run or checkpoint): run, family ('ltm' | 'ar' | 'diffusion'), loss_kind
(kinds starting with 'nll' are exact, the others bounds), loss, params (N), tokens (D); optional flops
(training compute, 6ND when missing), T (inner steps, required for 'ltm'), n_latents, T_eval (rows with
T_eval missing or equal to T carry a run's headline loss; the other rows of one (run, tokens) form its
loss-vs-T_eval curve), seed, final (False: a checkpoint, excluded), diverged (True: excluded).
`cfg` is params.yaml's `fit` section without loss_kinds and split: every key of `ltm.scaling.config.KEYS`.
"""
from ltm.scaling.api import format_summary, run_scaling, write_outputs
from ltm.scaling.config import KEYS
from ltm.scaling.fit import FitError

__all__ = ["KEYS", "FitError", "format_summary", "run_scaling", "write_outputs"]
