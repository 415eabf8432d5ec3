"""Time one dual-rate training step on a tiny CPU LTM: latent-only inner gradients vs a full backward.

    python bench/bench_inner_loop.py [--steps 16] [--repeats 5] [--threads N]

Both variants run the same model, batch and seeds; the reference is the public code's inner loop
(every inner step calls backward() through the decoder weights, decoder_grads=True). The slow step
is a plain AdamW step on the mean token cross-entropy at the detached z. Variants are interleaved and
the median is reported, so background load affects both alike.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from defaults import fast_loop

from ltm.model import Decoder, ModelConfig
from ltm.posterior import fit_posterior, latent_grads

CFG = ModelConfig(vocab_size=4096, seq_len=128, d_model=256, n_layers=4, n_heads=4, n_latents=8, window=64)
BATCH = 4


def train_step(model: Decoder, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               steps: int, decoder_grads: bool) -> None:
    post = fit_posterior(model, x, y, fast_loop(steps=steps, decoder_grads=decoder_grads),
                         generator=torch.Generator().manual_seed(0), score=False)
    loss = F.cross_entropy(model(x, post.z).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


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
    parser.add_argument("--steps", type=int, default=16, help="inner steps T")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Decoder(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x, y = torch.randint(0, CFG.vocab_size, (2, BATCH, CFG.seq_len))

    steps = median_seconds({
        "latent-only": lambda: train_step(model, opt, x, y, args.steps, decoder_grads=False),
        "full backward": lambda: train_step(model, opt, x, y, args.steps, decoder_grads=True),
    }, args.repeats)

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

    print(f"config: {CFG}\nbatch {BATCH}, T {args.steps}, threads {args.threads}, median of {args.repeats}")
    print(f"{'training step (T inner + slow)':34s} {'ms':>9s} {'ratio':>7s}")
    for name, sec in steps.items():
        print(f"{name:34s} {sec * 1e3:9.1f} {sec / steps['full backward']:7.3f}")
    print(f"{'one pass':34s} {'ms':>9s} {'x fwd':>7s}")
    for name, sec in parts.items():
        print(f"{name:34s} {sec * 1e3:9.1f} {sec / parts['forward']:7.2f}")


if __name__ == "__main__":
    main()
