"""Evaluation throughput on CPU: a tiny LTM (per inner step, per fresh sample, end to end) vs the AR baseline.

    python bench/bench_eval.py [--steps 4 16] [--samples 16] [--repeats 5] [--threads 1]

Tokens/s counts scored target tokens (batch * seq_len) per second of wall time. The AR baseline needs
one forward pass per token; an LTM evaluation needs T_eval inner steps (forward + latent-only backward)
plus 1 scoring pass (paper protocol) plus K passes over fresh draws (fresh ELBO and IWAE share them).
The "x AR" column is the time relative to one AR forward of the same batch. Median of --repeats.
Then the T_eval curve of params.yaml (eval.t_curve, eval.samples) on one batch: a fit per point, as the
default lr_schedule respan needs, against one fit through the largest T scored at every point, as
lr_schedule continue allows (ltm.bounds.score_stops).
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ltm.bounds import ar_nll, draw_samples, fit_for_eval, score_batch, score_stops
from ltm.model import Decoder, ModelConfig

from defaults import PARAMS, fast_loop

LTM = ModelConfig(vocab_size=4096, seq_len=128, d_model=64, n_layers=2, n_heads=4, n_latents=8, window=64)
BATCH = 16


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function; runs are interleaved so background load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 16], help="T_eval values for end-to-end rows")
    parser.add_argument("--samples", type=int, default=16, help="K fresh draws")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ltm = Decoder(LTM).eval()
    ar = Decoder(ModelConfig(**{**LTM.__dict__, "n_latents": 0})).eval()
    x, y = torch.randint(0, LTM.vocab_size, (2, BATCH, LTM.seq_len))
    tokens = BATCH * LTM.seq_len
    K, T_big = args.samples, max(args.steps)

    post = fit_for_eval(ltm, x, y, steps=0, seed=0, post_cfg=fast_loop(steps=16))
    fns: dict[str, Callable[[], object]] = {
        "ar": lambda: ar_nll(ar, x, y),
        "fit0": lambda: fit_for_eval(ltm, x, y, steps=0, seed=0, post_cfg=fast_loop(steps=16)),
        "fitT": lambda: fit_for_eval(ltm, x, y, steps=T_big, seed=0, post_cfg=fast_loop(steps=16)),
        "draws1": lambda: draw_samples(ltm, x, y, post, samples=K, seed=1),
        "drawsK": lambda: draw_samples(ltm, x, y, post, samples=K, seed=1, rows_per_pass=BATCH * K),
    }
    for t in args.steps:
        fns[f"full{t}"] = lambda t=t: score_batch(ltm, x, y, steps=t, samples=K, seed=0, post_cfg=fast_loop(steps=16))
    curve, k_eval = tuple(sorted(set(PARAMS["eval"]["t_curve"]))), PARAMS["eval"]["samples"]
    span = PARAMS["posterior"]["inner_steps"]
    fns["curve_each"] = lambda: [score_batch(ltm, x, y, steps=t, samples=k_eval, seed=0, post_cfg=fast_loop(steps=t))
                                 for t in curve]
    fns["curve_one"] = lambda: score_stops(ltm, x, y, stops=curve, samples=k_eval, seed=0,
                                           post_cfg=fast_loop(steps=curve[-1], schedule_steps=span))
    sec = median_seconds(fns, args.repeats)
    rows: list[tuple[str, float]] = [
        ("AR exact NLL (1 forward)", sec["ar"]),
        ("LTM scoring pass, T_eval=0 (init q + 1 forward)", sec["fit0"]),
        (f"LTM one inner step (from T_eval={T_big} run)", (sec["fitT"] - sec["fit0"]) / T_big),
        ("LTM one fresh sample, 1 draw per pass", sec["draws1"] / K),
        (f"LTM one fresh sample, {K} draws per pass", sec["drawsK"] / K),
    ]
    rows += [(f"LTM full eval T_eval={t}, K={K}", sec[f"full{t}"]) for t in args.steps]
    ar_fwd = sec["ar"]

    print(f"LTM: {LTM}\nAR: same without latents; batch {BATCH} x {LTM.seq_len} tokens, "
          f"threads {args.threads}, median of {args.repeats}")
    print(f"{'what':48s} {'ms':>9s} {'tokens/s':>10s} {'x AR':>7s}")
    for name, seconds in rows:
        print(f"{name:48s} {seconds * 1e3:9.2f} {tokens / seconds:10.0f} {seconds / ar_fwd:7.2f}")
    steps_each, steps_one = sum(curve), curve[-1]
    print(f"\nT_eval curve {list(curve)}, K={k_eval}, one batch{'':14s} {'ms':>9s} {'fit steps':>10s} {'x each':>7s}")
    for name, key, n in (("a fit per point (lr_schedule respan)", "curve_each", steps_each),
                         ("one fit, scored at each T (continue)", "curve_one", steps_one)):
        print(f"{name:48s} {sec[key] * 1e3:9.2f} {n:10d} {sec[key] / sec['curve_each']:7.3f}")


if __name__ == "__main__":
    main()
