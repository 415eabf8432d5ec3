"""Data-layer throughput on the builtin corpus (a script, not a test).

    .venv/bin/python bench/bench_data.py [--repeat 3]

Measures, in one run on this machine:
  * raw text -> shards: `build_shards` (streamed in chunks, the next chunk encoded while the current one
    is framed and written, sha256 and manifest) against the best plain use of the library: every
    document of a split in one `Tokenizer.encode_batch` call (multi-threaded), then the same rows
    written in one Arrow file;
  * loader: shuffled `BatchLoader` batches and sequential eval batches, in tokens per second (one thread).
Each timing is the best of --repeat runs; every run loads the tokenizer afresh (cold BPE cache).
Wall-clock speed-up needs idle cores: the header prints the load average, and the CPU-seconds column
shows the work saved by batching whatever the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tokenizers import Tokenizer

from ltm.data.corpus import build_corpus, iter_texts
from ltm.data.loader import BatchLoader, TokenShards, iter_eval_batches
from ltm.data.shards import build_shards, shard_schema
from ltm.data.tokenizer import build_tokenizer
from ltm.io import read_json

SHARDS = {"seq_len": 256, "rows_per_shard": 4096, "dtype": "auto"}


def best_of(repeat: int, fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all threads) of the fastest of `repeat` runs."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def batch_baseline(corpus_dir: Path, tok_dir: Path, out_dir: Path) -> None:
    """The plain library way: one `encode_batch` over a split's documents, then pack and write one file."""
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    tok.encode_special_tokens = True
    meta = read_json(tok_dir / "manifest.json")
    row_len = SHARDS["seq_len"] + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, split in read_json(corpus_dir / "manifest.json")["splits"].items():
        texts = [t for chunk in iter_texts(corpus_dir / split["file"]) for t in chunk]
        ids = np.concatenate([np.array([meta["bos_id"], *e.ids, meta["eos_id"]], dtype=np.int64)
                              for e in tok.encode_batch(texts)])
        tokens = ids[: len(ids) // row_len * row_len].astype(np.uint16)
        schema = shard_schema("uint16", row_len)
        with pa.ipc.new_file(str(out_dir / f"{name}.arrow"), schema) as writer:
            writer.write_batch(pa.record_batch([pa.array(tokens)], schema=schema))


def loader_rate(shards: TokenShards, batch_size: int, batches: int) -> float:
    loader = BatchLoader(shards, batch_size=batch_size, seed=0)
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(loader)
    return batches * x.numel() / (time.perf_counter() - start)


def eval_rate(shards: TokenShards, batch_size: int) -> float:
    start = time.perf_counter()
    n = sum(x.numel() for x, _ in iter_eval_batches(shards, batch_size))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]  # other processes on the machine skew the multi-threaded numbers
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        corpus = build_corpus({"source": "builtin", "val_fraction": 0.05, "seed": 0}, root / "corpus")
        corpus_s = time.perf_counter() - start
        text_mb = sum(s["bytes"] for s in corpus["splits"].values()) / 1e6
        rows.append(("corpus (wiki xml -> clean text)", f"{corpus_s:.2f} s", f"{text_mb:.2f} MB text"))

        start = time.perf_counter()
        build_tokenizer({"kind": "bpe", "vocab_size": 4096, "min_frequency": 2}, root / "corpus", root / "bpe")
        rows.append(("tokenizer bpe-4096 training", f"{time.perf_counter() - start:.2f} s", "train split"))
        build_tokenizer({"kind": "gpt2"}, root / "corpus", root / "gpt2")

        for kind in ("gpt2", "bpe"):
            fast, fast_cpu = best_of(args.repeat, partial(build_shards, SHARDS, root / "corpus", root / kind,
                                                          root / f"s-{kind}"))
            slow, slow_cpu = best_of(args.repeat, partial(batch_baseline, root / "corpus", root / kind,
                                                          root / f"plain-{kind}"))
            rows.append((f"text->shards {kind}: build_shards", f"{text_mb / fast:.2f} MB/s",
                         f"{fast:.2f} s wall, {fast_cpu:.2f} s CPU"))
            rows.append((f"text->shards {kind}: one encode_batch", f"{text_mb / slow:.2f} MB/s",
                         f"{slow:.2f} s wall, {slow_cpu:.2f} s CPU"))
            rows.append((f"text->shards {kind}: build_shards / encode_batch", f"{slow / fast:.2f}x",
                         f"target >= 1x (streaming and hashing for free); CPU {slow_cpu / fast_cpu:.2f}x"))

        shards = TokenShards(root / "s-gpt2", "train")
        for batch_size in (8, 64):
            rate = max(loader_rate(shards, batch_size, 300) for _ in range(args.repeat))
            rows.append((f"BatchLoader b={batch_size} seq=256", f"{rate / 1e6:.1f} M tok/s", "1 thread, int64 x/y"))
        rate = max(eval_rate(shards, 64) for _ in range(args.repeat))
        rows.append(("iter_eval_batches b=64", f"{rate / 1e6:.1f} M tok/s", "1 thread"))
        start = time.perf_counter()
        TokenShards(root / "s-gpt2", "train", verify=True)
        rows.append(("TokenShards open + sha256 verify", f"{(time.perf_counter() - start) * 1e3:.1f} ms",
                     f"{shards.rows * shards.row_len * 2 / 1e6:.1f} MB"))

    print(f"ltm data bench: builtin corpus, {os.cpu_count()} CPU cores, python {sys.version.split()[0]}, "
          f"best of {args.repeat}, load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>14}  note")
    for name, result, note in rows:
        print(f"{name:<{width}}  {result:>14}  {note}")


if __name__ == "__main__":
    main()
