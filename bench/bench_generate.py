"""Generation speed on a tiny CPU model: our key/value-cached decoder against a textbook incremental decoder.

    python bench/bench_generate.py [--new-tokens 512] [--prompt 64] [--batch 1] [--repeats 3] [--threads 1]

Greedy decoding of the LTM (z fixed, drawn from the prior) and the AR baseline of the same size, three ways,
interleaved (median of --repeats):
  * ours: `ltm.generate.sample` with `ltm.kvcache` (buffers of seq_len positions allocated once, the window
    read as a slice, the latents' cross-attention keys/values computed once);
  * textbook incremental (the reference): the same weights decoded one token at a time with per-layer
    key/value tensors grown by `torch.cat` each step (as a dynamic cache does), the window applied by
    slicing the last `window` keys, the latents' keys/values also computed once;
  * full prefix: every new token re-runs the whole prefix (no cache), for scale.
All three outputs are checked to be the same tokens. Target: ours <= 1.0x the textbook decoder's time.
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from ltm.generate import prior_z, sample
from ltm.model import Decoder, ModelConfig, window_mask


def config(n_latents: int, seq_len: int) -> ModelConfig:
    return ModelConfig(vocab_size=4096, seq_len=seq_len, d_model=128, n_layers=4, n_heads=4,
                       n_latents=n_latents, window=256)


@torch.no_grad()
def textbook_decode(model: Decoder, prompt: torch.Tensor, z: torch.Tensor | None, new_tokens: int) -> torch.Tensor:
    """Greedy decoding with a growing (torch.cat) key/value cache, written from the model's own modules."""
    cfg, B = model.cfg, prompt.shape[0]
    rope_z = (model.rope_cos_z, model.rope_sin_z)
    cross = [None if z_l is None else block.cross.latent_kv(z_l, rope_z)
             for block, z_l in zip(model.blocks, model.split_latents(z, B))]
    keys: list[torch.Tensor | None] = [None] * cfg.n_layers
    values: list[torch.Tensor | None] = [None] * cfg.n_layers
    ids, step_ids, start = prompt, prompt, 0
    for _ in range(new_tokens):
        pos = torch.arange(start, start + step_ids.shape[1])
        rope = (model.rope_cos[pos], model.rope_sin[pos])
        x = model.embed(step_ids)
        for layer, block in enumerate(model.blocks):
            q, k, v = block.attn.project(block.attn_norm(x), rope)
            keys[layer] = k if keys[layer] is None else torch.cat([keys[layer], k], dim=2)
            values[layer] = v if values[layer] is None else torch.cat([values[layer], v], dim=2)
            if len(pos) > 1:  # the prompt: every query its own window
                mask = window_mask(pos, torch.arange(pos[-1] + 1), cfg.window)
                y = F.scaled_dot_product_attention(q, keys[layer], values[layer], attn_mask=mask)
            else:  # one token sees the last `window` keys
                y = F.scaled_dot_product_attention(q, keys[layer][:, :, -cfg.window:], values[layer][:, :, -cfg.window:])
            x = x + block.attn.out(y.transpose(1, 2).flatten(2))
            if cross[layer] is not None:
                x = x + block.cross.attend(block.cross_norm(x), rope, *cross[layer])
            x = x + block.mlp(block.mlp_norm(x))
        token = model.head(model.norm(x[:, -1])).float().argmax(-1)
        ids = torch.cat([ids, token[:, None]], dim=1)
        start += step_ids.shape[1]
        step_ids = token[:, None]
    return ids


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

    print(f"batch {args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, seq_len {seq_len}, d_model 128, "
          f"4 layers, window 256, {args.threads} thread(s), median of {args.repeats} interleaved runs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'model':<6}{'decoder':<22}{'seconds':>9}{'tokens/s':>10}{'x ref':>8}")
    for name, n_latents in (("ltm", 8), ("ar", 0)):
        torch.manual_seed(0)
        model = Decoder(config(n_latents, seq_len)).eval()
        z = prior_z(model, args.batch, generator=torch.Generator().manual_seed(1)) if n_latents else None
        variants = {
            "ours (kvcache)": lambda: sample(model, prompt, args.new_tokens, z, greedy=True),
            "textbook (reference)": lambda: textbook_decode(model, prompt, z, args.new_tokens),
            "full prefix": lambda: sample(model, prompt, args.new_tokens, z, greedy=True, use_cache=False),
        }
        outputs = {label: fn() for label, fn in variants.items()}  # warm-up, and the outputs compared
        first = outputs["ours (kvcache)"]
        if any(not torch.equal(first, out) for out in outputs.values()):
            raise SystemExit(f"{name}: the decoders' greedy outputs differ")
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):
            for label, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
        ref = statistics.median(times["textbook (reference)"])
        for label, ts in times.items():
            seconds = statistics.median(ts)
            rate = args.batch * (first.shape[1] - args.prompt) / seconds
            print(f"{name:<6}{label:<22}{seconds:>9.3f}{rate:>10.0f}{seconds / ref:>7.2f}x")


if __name__ == "__main__":
    main()
