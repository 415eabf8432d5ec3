"""Scaling-law fitting speed (a script, not a test).

    .venv/bin/python bench/bench_scaling.py [--points 250] [--bootstrap 1000] [--repeat 1]

Target, as a ratio measured in the same run: one bootstrap replicate costs at most 1/8 of one accepted
multi-start fit (a replicate is one warm-started L-BFGS-B run, and every 20th also reruns the full
multi-start check). On the 2-core machine that keeps 1000 replicates on ~250 points under a minute
(docs/scaling.md §3.5). Rows, all on the same synthetic data (Chinchilla-rounded
truth, 0.5 % log noise, 10 sizes × 25 tokens-per-parameter ratios):
  * objective on the 4 500-point start grid (vectorised);
  * one accepted multi-start fit (20 grid starts + 2 published optima): the reference unit of work;
  * the same fit + B bootstrap replicates, serial and with 2 worker processes (every 20th replicate
    also reruns the full multi-start);
  * the whole stage, `run_scaling` with default settings (adds held-out and leave-one-size-out refits,
    δ-sensitivity, a second optimiser, the L(C) envelope and its bootstrap).
Also Epoch's 240-point Chinchilla reconstruction (tests/data/chinchilla_approach3.csv) with the same settings.
Timings are wall-clock; the header prints the load average because other jobs on the machine slow them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ltm.scaling import run_scaling
from ltm.scaling.fit import Objective, fit_law, one_blas_thread
from ltm.scaling.laws import ND, PUBLISHED_ND

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the scaling tests' synthetic data
from ltm.scaling.uncertainty import BootstrapSettings, bootstrap

from scaling_synthetic import CHINCHILLA_ROUNDED, FIT, METHOD, grid_design, load_epoch, make_records, nd_loss, noisy  # noqa: E402

REPLICATE_TARGET = 1 / 8  # seconds per bootstrap replicate / seconds of one accepted multi-start fit
EPOCH_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_approach3.csv"


def _records(n_points: int) -> list[dict]:
    n_sizes = 10
    sizes = np.geomspace(10e6, 2e9, n_sizes)
    ratios = np.geomspace(2, 200, max(3, n_points // n_sizes))
    N, D = grid_design(sizes, ratios)
    return make_records(noisy(nd_loss(CHINCHILLA_ROUNDED, N, D), 0.005, 0), N, D)


def _arrays(recs: list[dict]):
    N = np.array([r["params"] for r in recs])
    D = np.array([r["tokens"] for r in recs])
    return {"lnN": np.log(N), "lnD": np.log(D)}, np.log([r["loss"] for r in recs])


def _best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench(name: str, recs: list[dict], B: int, repeat: int, cfg: dict) -> tuple[list[tuple[str, float, str]], float]:
    """The table rows, and the serial bootstrap's cost per replicate in units of one multi-start fit."""
    cols, lnL = _arrays(recs)
    fs = FIT
    rows = []
    with one_blas_thread():
        obj = Objective(ND, cols, lnL)
        t, _ = _best_of(lambda: obj.grid_values(ND.grid_points()), repeat)
        rows.append((f"{name}: objective on the 4500-point grid", t, ""))
        t_fit, fit = _best_of(lambda: fit_law(ND, cols, lnL, fs, extra_starts=PUBLISHED_ND.values()), repeat)
        alpha = fit.natural()["alpha"]
        rows.append((f"{name}: one accepted multi-start fit", t_fit, f"alpha={alpha:.4f}, 1.0x"))
    for jobs in (1, 2):
        def fit_and_boot(jobs=jobs):
            f = fit_law(ND, cols, lnL, fs, extra_starts=PUBLISHED_ND.values())
            return bootstrap(ND, cols, lnL, f.theta, fs, BootstrapSettings(n=B, seed=0, n_jobs=jobs))
        t, boot = _best_of(fit_and_boot, repeat)
        per_replicate = (t - t_fit) / B / t_fit
        if jobs == 1:  # as the stage runs it; 2 workers pay their start-up
            serial = per_replicate
        lo, hi = np.percentile(boot.samples[boot.ok(), 3], [2.5, 97.5])
        rows.append((f"{name}: fit + {B} bootstrap, n_jobs={jobs}", t,
                     f"alpha 95% CI ({lo:.3f}, {hi:.3f}), failed {boot.n_failed}, {t / t_fit:.0f}x; "
                     f"per replicate {per_replicate:.3f}x a fit"))
    t, res = _best_of(lambda: run_scaling(recs, {**METHOD, "n_bootstrap": B, **cfg}), repeat)
    main = res["groups"][0]["laws"][0]
    rows.append((f"{name}: run_scaling (whole stage, as the pipeline runs it)", t, f"L(N,D) {main['status']}, {t / t_fit:.0f}x"))
    return rows, serial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=250)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    recs = _records(args.points)
    rows, serial = bench(f"synthetic {len(recs)} pts", recs, args.bootstrap, args.repeat, {})
    per_replicate = [serial]
    if EPOCH_CSV.is_file():
        more, serial = bench("Epoch 240 pts", load_epoch(EPOCH_CSV), args.bootstrap, args.repeat,
                             {"min_tokens_per_param": 0.0})
        rows, per_replicate = rows + more, per_replicate + [serial]
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'seconds':>8}  note")
    for label, t, note in rows:
        print(f"{label:<{width}}  {t:8.2f}  {note}")
    worst = max(per_replicate)
    verdict = "PASS" if worst <= REPLICATE_TARGET else "FAIL"
    print(f"{verdict}: the costliest bootstrap replicate (n_jobs=1) is {worst:.3f}x one multi-start fit "
          f"(target <= {REPLICATE_TARGET:.3f}x)")


if __name__ == "__main__":
    main()
