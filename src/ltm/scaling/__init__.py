"""Scaling-law fitting (docs/scaling.md): L(N, D) = E + A/N^α + B/D^β and friends.

Entry points
------------
run_scaling(records, cfg) -> dict      fit every law the records support, per (family, loss_kind)
write_outputs(result, out_dir)         fit.json + residuals.csv, written atomically
format_summary(result) -> str          short text report (refused laws show only their reason)

Record keys (one dict per evaluated run or checkpoint)
------------------------------------------------------
required  run (str, run id; also the bootstrap cluster), family ('ltm' | 'ar' | 'diffusion'),
          loss_kind (str; kinds starting with 'nll' are exact, every other kind is a bound),
          loss (nats/token, > 0), params (N, > 0), tokens (D, > 0)
optional  flops     training compute C_train including the inner loop (compute.py); missing → 6ND + warning
          T         inner steps during training (required for family 'ltm'; 0 otherwise)
          n_latents number of latent vectors N_z
          T_eval    inner steps used at evaluation. Rows with T_eval missing or equal to T carry a run's
                    headline loss (used by the N, D, T, N_z laws); all rows of one (run, tokens) with
                    T_eval >= 1 form its loss-vs-T_eval curve
          seed      (used to measure seed noise: configs are equal N, D, T, N_z)
          final     False for an intermediate checkpoint (excluded unless fit.use_checkpoints)
          diverged  True to exclude the run (logged)
Records are never mixed across loss kinds or families: each (family, loss_kind) is a separate group.
Duplicate (loss_kind, run, tokens, T_eval) records, non-finite or non-positive values → LtmError.

Laws attempted per group
------------------------
- L(N,D) per (T, N_z) configuration, with bootstrap CIs, compute-optimal frontier at target budgets,
  held-out extrapolation, leave-one-size-out, δ-sensitivity, a second optimiser, exclusion sensitivity;
- when L(N,D) is refused: one-variable laws L(N)|D, L(N)|D/N, L(D)|N that the design may still support;
- L(C) on the Pareto-optimal runs (Kaplan's L(C_min) with an offset);
- LTM only: four forms in T (and in N_z) chosen by held-out error at the largest T (N_z);
- loss vs T_eval on each fixed checkpoint: saturating power vs saturating exponential.
A law that fails a check is reported as refused with its reason and never with parameter values.

The `fit` config keys and their defaults are `ltm.scaling.config.DEFAULTS`.

Modules: laws / laws_axes (the forms), objective (summed Huber), fit (multi-start L-BFGS-B + acceptance),
checks (design minimums, identifiability), uncertainty (bootstrap), quality (held-out error), frontier
(compute-optimal N*, D*, crossover), compute (FLOPs accounting incl. the inner loop), records (input
validation), analyse / nd / axes (one law → one JSON entry), api (entry points), synthetic (known-truth
data and the Epoch validation set), blas (single-threaded BLAS while fitting), config (the `fit` keys).
"""
from ltm.scaling.api import format_summary, run_scaling, write_outputs
from ltm.scaling.config import DEFAULTS
from ltm.scaling.fit import FitError

__all__ = ["DEFAULTS", "FitError", "format_summary", "run_scaling", "write_outputs"]
