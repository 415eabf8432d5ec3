"""One dual-rate training step on a tiny CPU LTM against a step built the way the public LTM code builds it.

    python bench/bench_inner_loop.py [--steps 4 16] [--repeats 5] [--threads 1] [--no-compile] [--no-bf16]

Variants, on the same model, batch and seeds, interleaved (median of --repeats, so background load
touches all alike):
  * ours: the fast loop differentiates only the latents (`latent_grads`), no scoring pass, boolean
    sliding-window mask; then the slow step (AdamW on the token cross-entropy at the detached z);
  * full inner backward: the same, but every inner step runs `backward()` through the decoder weights
    (`decoder_grads: true`);
  * public-code style (the reference): full inner backward, an extra forward that scores the fitted
    posterior, and an explicit float (0 / -inf) attention mask instead of a boolean one;
  * ours + `runtime.compile` (torch.compile of the decoder: the first step compiles, ~1 min on 2 cores;
    the graphs compiled are counted before and after the timed runs, so a recompile per T shows);
  * ours + `runtime.precision: bf16` (CPU autocast, where the CPU has AVX512-BF16 or AMX), and both knobs;
  * ours + `runtime.fused_loss` (the fast loop's output layer and cross-entropy in one pass), alone and
    with bf16.
The numeric effect of each knob is the relative difference of the fast loop's latent gradients from fp32
eager at the same point, ||g - g_fp32|| / ||g_fp32||.
The FLOP floor is what a latent-only inner loop saves by FLOP count alone: in forward-pass units an
inner step costs 2 (forward + activation gradients) instead of 3, the slow step 3, so ours / reference
>= (2T + 3) / (3T + 3). Issue target: <= 0.55x the reference at T = 4 and T = 16.
"""

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import ltm.model
from ltm.device import autocast_dtype
from ltm.errors import LtmError
from ltm.model import Decoder, ModelConfig
from ltm.posterior import fit_posterior, frozen, latent_grads
from ltm.runtime import Runtime

from defaults import fast_loop

CFG = ModelConfig(vocab_size=4096, seq_len=128, d_model=256, n_layers=4, n_heads=4, n_latents=8, window=64)
BATCH = 4
TARGET = 0.55


@contextlib.contextmanager
def float_mask():
    """The decoder builds an additive float mask (0 where allowed, -inf elsewhere), as the public code does."""
    boolean = ltm.model.window_mask

    def additive(*args, **kw):
        allowed = boolean(*args, **kw)
        return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))

    ltm.model.window_mask = additive
    try:
        yield
    finally:
        ltm.model.window_mask = boolean


def train_step(model: Decoder, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
               decoder_grads: bool, score: bool, autocast: bool = False) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
        post = fit_posterior(model, x, y, fast_loop(steps=steps, decoder_grads=decoder_grads),
                             generator=torch.Generator().manual_seed(0), score=score)
        loss = F.cross_entropy(model(x, post.z).flatten(0, 1).float(), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def grad_difference(model: Decoder, reference: Decoder, x, y, autocast: bool = False) -> float:
    """||g - g_fp32|| / ||g_fp32|| of the latent gradients at one point (model: the variant)."""
    shape = (len(x), CFG.n_latents, CFG.d_model)
    gen = torch.Generator().manual_seed(3)
    mu, eps = 0.5 * torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    grads = []
    for net, cast in ((reference, False), (model, autocast)):
        m, lv = mu.clone().requires_grad_(), torch.full(shape, -2.0, requires_grad=True)
        with frozen(net), torch.autocast("cpu", dtype=torch.bfloat16) if cast else contextlib.nullcontext():
            _, g_mu, g_lv = latent_grads(net, x, y, m, lv, eps)
        grads.append(torch.cat([g_mu.flatten(), g_lv.flatten()]).float())
    return float((grads[1] - grads[0]).norm() / grads[0].norm())


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def public_style_step(model, opt, x, y, steps) -> None:
    with float_mask():
        train_step(model, opt, x, y, steps, decoder_grads=True, score=True)


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 16], help="inner steps T")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Decoder(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x, y = torch.randint(0, CFG.vocab_size, (2, BATCH, CFG.seq_len))
    load = os.getloadavg()[0]
    extra, effects = {}, []
    fused = Decoder(CFG)
    fused.load_state_dict(model.state_dict())
    fused.fused_loss = True
    fopt = torch.optim.AdamW(fused.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
    extra["ours + runtime.fused_loss"] = lambda T: train_step(fused, fopt, x, y, T, False, False)

    def fused_effect() -> float:
        fused.load_state_dict(model.state_dict())
        return grad_difference(fused, model, x, y)
    effects.append(("runtime.fused_loss", fused_effect))
    if not args.no_compile:
        compiled = Decoder(CFG)
        compiled.load_state_dict(model.state_dict())
        compiled.compile()
        copt = torch.optim.AdamW(compiled.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
        extra["ours + runtime.compile"] = lambda T: train_step(compiled, copt, x, y, T, False, False)

        def compile_effect() -> float:
            compiled.load_state_dict(model.state_dict())  # the timed steps trained the two copies apart
            return grad_difference(compiled, model, x, y)
        effects.append(("runtime.compile", compile_effect))
    if not args.no_bf16:
        try:
            autocast_dtype(Runtime("cpu", 0, 0, False, "bf16", False), torch.device("cpu"))
            extra["ours + runtime.precision bf16"] = lambda T: train_step(model, opt, x, y, T, False, False, True)
            extra["ours + fused_loss + bf16"] = lambda T: train_step(fused, fopt, x, y, T, False, False, True)
            if not args.no_compile:
                extra["ours + compile + bf16"] = lambda T: train_step(compiled, copt, x, y, T, False, False, True)
            effects.append(("runtime.precision bf16", lambda: grad_difference(model, model, x, y, autocast=True)))
        except LtmError as exc:
            print(f"bf16 variant skipped: {exc}")

    print(f"config: {CFG}\nbatch {BATCH}, threads {args.threads}, median of {args.repeats} interleaved runs, "
          f"load average {load:.1f}")
    print(f"{'T':>3s} {'training step (T inner + slow)':44s} {'ms':>9s} {'x ref':>7s}")
    for T in args.steps:
        graphs = compiled_graphs()
        secs = median_seconds({
            "ours (latent-only, no scoring pass)": lambda: train_step(model, opt, x, y, T, False, False),
            "full inner backward": lambda: train_step(model, opt, x, y, T, True, False),
            "public-code style (reference)": lambda: public_style_step(model, opt, x, y, T),
            **{name: (lambda fn=fn: fn(T)) for name, fn in extra.items()},
        }, args.repeats)
        ref = secs["public-code style (reference)"]
        for name, sec in secs.items():
            print(f"{T:3d} {name:44s} {sec * 1e3:9.1f} {sec / ref:7.3f}")
        ratio, floor = secs["ours (latent-only, no scoring pass)"] / ref, (2 * T + 3) / (3 * T + 3)
        verdict = "below" if ratio < floor else "above"
        best = min(sec for name, sec in secs.items() if name.startswith("ours")) / ref
        print(f"{T:3d} {'FLOP floor (2T+3)/(3T+3)':44s} {'':9s} {floor:7.3f}  ours (eager fp32) is {verdict} it; "
              f"best variant {best:.3f}: target <= {TARGET} {'met' if best <= TARGET else 'NOT met'}")
        if extra:
            print(f"{T:3d} graphs compiled during the warm-up and timed runs: {compiled_graphs() - graphs}")
    for knob, diff in effects:
        print(f"numeric effect of {knob}: latent-gradient relative difference from fp32 eager {diff():.1e}")

    shape = (BATCH, CFG.n_latents, CFG.d_model)
    mu, logvar = torch.zeros(shape, requires_grad=True), torch.full(shape, -5.0, requires_grad=True)
    eps = torch.randn(shape)

    def forward() -> None:
        with torch.no_grad():
            model.nll(x, y, mu + eps * torch.exp(0.5 * logvar))

    def full_step() -> None:
        z = mu + eps * torch.exp(0.5 * logvar)
        model.nll(x, y, z).sum().backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    parts = median_seconds({
        "forward": forward,
        "inner step, latent-only": lambda: latent_grads(model, x, y, mu, logvar, eps),
        "inner step, full backward": full_step,
    }, args.repeats * 4)
    print(f"{'one pass':48s} {'ms':>9s} {'x fwd':>7s}")
    for name, sec in parts.items():
        print(f"{name:48s} {sec * 1e3:9.1f} {sec / parts['forward']:7.2f}")


if __name__ == "__main__":
    main()
