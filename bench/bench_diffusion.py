"""The masked-diffusion baseline next to the AR baseline of the same size, on real token shards (CPU).

    python bench/bench_diffusion.py [--shards DIR] [--steps 100] [--rows 32] [--samples 8] [--threads 2]

Without --shards (or when the folder holds no shards, as on a fresh clone) it builds them first in a
temporary folder from the repository's `data:` settings (builtin corpus, its BPE tokenizer), ~30 s.

Both models (d 64, 2 layers, 4 heads, the ar-tiny preset; the denoiser bidirectional with full attention)
see the same batches with the same AdamW settings. Reported: the validation loss per token (AR: exact
NLL of y = row[1:]; diffusion: the NELBO bound of x = row[:-1], count form, --samples draws), the
seconds per training step, and the time to sample one full-length sequence with 128 steps. MDLM's own
time-sampled estimate (method="time", truncated, slightly optimistic) is printed beside the bound.
About 2.5 s per step for both models together on 2 cores with the default vocab-4096 shards.
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ltm.data.corpus import build_corpus
from ltm.data.loader import BatchLoader, TokenShards, iter_eval_batches
from ltm.data.shards import build_shards
from ltm.data.tokenizer import build_tokenizer
from ltm.diffusion import (
    MaskedDiffusionLM,
    diffusion_loss,
    nelbo_bound,
    sample,
    summarise_bound,
)
from ltm.model import Decoder, ModelConfig

from defaults import PARAMS, diffusion_settings

PRESET = dict(d_model=64, n_layers=2, n_heads=4)


def lr_at(step: int, steps: int, lr: float) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm))))


def default_shards(root: Path) -> Path:
    """The pipeline's corpus -> tokenizer -> shards with the repository's data settings, under `root`."""
    data = PARAMS["data"]
    build_corpus(data["corpus"], root / "corpus")
    build_tokenizer(data["tokenizer"], root / "corpus", root / "tokenizer")
    build_shards(data["shards"], root / "corpus", root / "tokenizer", root / "shards")
    return root / "shards"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, default=None, help="a shards folder (default: build one)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rows", type=int, default=32, help="sequences per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=8, help="Monte-Carlo draws of the diffusion bound")
    parser.add_argument("--eval-rows", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ltm-bench-") as tmp:
        have = args.shards is not None and (args.shards / "manifest.json").is_file()
        if args.shards is not None and not have:
            print(f"{args.shards} holds no shards: building them from the repository's data settings")
        run(args, args.shards if have else default_shards(Path(tmp)))


def run(args: argparse.Namespace, shards: Path) -> None:
    train, val = TokenShards(shards, "train"), TokenShards(shards, "val")
    vocab, seq = train.manifest["vocab_size"], train.manifest["seq_len"]
    torch.manual_seed(0)
    ar = Decoder(ModelConfig(vocab_size=vocab, seq_len=seq, window=seq, **PRESET))
    torch.manual_seed(0)
    mdlm = MaskedDiffusionLM.build(vocab, seq, diffusion_settings(), **PRESET)
    opts = {name: torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
            for name, m in (("ar", ar), ("mdlm", mdlm))}
    loader, gen = BatchLoader(train, args.rows, seed=1), torch.Generator().manual_seed(2)
    spent = {"ar": 0.0, "mdlm": 0.0}
    for step in range(args.steps):
        x, y = next(loader)
        for name, opt in opts.items():
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args.steps, args.lr)
            t0 = time.perf_counter()
            if name == "ar":
                loss = F.cross_entropy(ar(x).flatten(0, 1), y.flatten())
            else:
                loss, _ = diffusion_loss(mdlm, x, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
            opt.step()
            spent[name] += time.perf_counter() - t0
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  last {name} loss {loss.item():.3f}", flush=True)

    ar_nats = bound_nats = time_nats = 0.0
    tokens, eval_gen = 0, torch.Generator().manual_seed(3)
    with torch.no_grad():
        for x, y in iter_eval_batches(val, 32, args.eval_rows):
            ar_nats += F.cross_entropy(ar(x).flatten(0, 1), y.flatten(), reduction="sum").item()
            bound_nats += nelbo_bound(mdlm, x, args.samples, eval_gen).sum().item()
            time_nats += nelbo_bound(mdlm, x, args.samples, eval_gen, method="time").sum().item()
            tokens += y.numel()
        t0 = time.perf_counter()
        sample(mdlm, 1, 128, generator=eval_gen)
        sample_s = time.perf_counter() - t0
    ar_per_token = ar_nats / tokens
    diff = summarise_bound(bound_nats, tokens)
    print(f"{args.steps} steps x {args.rows} x {seq} tokens, vocab {vocab}, {tokens} validation tokens")
    print(f"AR   val NLL {ar_per_token:.3f} nats/token (PPL {math.exp(ar_per_token):.1f}), "
          f"{spent['ar'] / args.steps * 1e3:.0f} ms/step")
    print(f"MDLM val NELBO <= {diff['nats_per_token']:.3f} nats/token (PPL <= {diff['ppl_bound']:.1f}), "
          f"{spent['mdlm'] / args.steps * 1e3:.0f} ms/step; one {seq}-token sample, 128 steps: {sample_s:.2f} s")
    print(f"MDLM val time-sampled estimate {time_nats / tokens:.3f} nats/token")


if __name__ == "__main__":
    main()
