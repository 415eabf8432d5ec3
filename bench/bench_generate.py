"""Generation speed on a tiny CPU model: incremental decoding with the key/value cache vs recomputing the prefix.

    python bench/bench_generate.py [--new-tokens 512] [--prompt 64] [--batch 1] [--repeats 3] [--threads 1]

Greedy decoding of the LTM (z fixed, drawn from the prior) and the AR baseline of the same size. Without
the cache every new token re-runs the whole prefix through the model, so the cost per token grows with
the sequence; with it each token runs only its own position. The two outputs are checked to be equal.
The median over repeats is reported.
"""

import argparse
import statistics
import time

import torch

from ltm.generate import prior_z, sample
from ltm.model import Decoder, ModelConfig


def config(n_latents: int, seq_len: int) -> ModelConfig:
    return ModelConfig(vocab_size=4096, seq_len=seq_len, d_model=128, n_layers=4, n_heads=4,
                       n_latents=n_latents, window=256)


def time_generation(model: Decoder, prompt: torch.Tensor, z: torch.Tensor | None, new_tokens: int,
                    use_cache: bool, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], prompt
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = sample(model, prompt, new_tokens, z, greedy=True, use_cache=use_cache)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq_len = max(576, args.prompt + args.new_tokens)
    prompt = torch.randint(0, 4096, (args.batch, args.prompt), generator=torch.Generator().manual_seed(0))

    print(f"batch {args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, seq_len {seq_len}, "
          f"d_model 128, 4 layers, window 256, {args.threads} thread(s)")
    print(f"{'model':<6}{'cache':<7}{'seconds':>9}{'tokens/s':>10}{'speed-up':>10}")
    for name, n_latents in (("ltm", 8), ("ar", 0)):
        torch.manual_seed(0)
        model = Decoder(config(n_latents, seq_len)).eval()
        z = prior_z(model, args.batch, generator=torch.Generator().manual_seed(1)) if n_latents else None
        sample(model, prompt, 8, z, greedy=True)  # warm-up
        slow, out_plain = time_generation(model, prompt, z, args.new_tokens, False, args.repeats)
        fast, out_cached = time_generation(model, prompt, z, args.new_tokens, True, args.repeats)
        if not torch.equal(out_plain, out_cached):
            raise SystemExit(f"{name}: cached and uncached greedy outputs differ")
        new = out_cached.shape[1] - args.prompt
        for label, seconds in (("no", slow), ("yes", fast)):
            rate = args.batch * new / seconds
            print(f"{name:<6}{label:<7}{seconds:>9.3f}{rate:>10.0f}{slow / seconds:>9.1f}x")


if __name__ == "__main__":
    main()
