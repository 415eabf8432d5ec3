"""Token shards: encode every corpus split and pack it into fixed rows of `seq_len + 1` tokens.

Each document becomes BOS + ids + EOS; documents are concatenated in corpus order and cut into rows of
`row_len = seq_len + 1` tokens (x = row[:-1], y = row[1:]); the last partial row of a split is dropped.
Text that happens to contain a special token's spelling is encoded as plain text, so only the framing
produces BOS/EOS ids.

Layout: `out_dir/<split>/shard-00000.arrow`, ... Each shard is an Arrow IPC file holding ONE record
batch with ONE flat, null-free column `tokens` (uint16 or uint32) of rows * row_len values, so a
memory-mapped read is a zero-copy numpy view that reshapes to (rows, row_len). Nothing in the files
depends on time or thread count: the same inputs give the same bytes.

`manifest.json`: seq_len, row_len, dtype, vocab_size, bos_id, eos_id, tokenizer and corpus hashes, and
per split: documents, text_bytes (UTF-8 bytes of its documents, for bits per byte), tokens_encoded
(all tokens before packing, BOS/EOS included), tokens (kept = rows * row_len), rows, and per shard its
file, rows, bytes and sha256.
"""
from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from ltm.data.corpus import iter_pieces, load_corpus_manifest
from ltm.data.tokenizer import load_tokenizer
from ltm.errors import LtmError
from ltm.io import atomic_dir, sha256_file, write_json
from ltm.progress import progress

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
COLUMN = "tokens"
_CHUNK_CHARS = 4 << 20  # text per encode_batch call: enough to keep all threads busy, bounded memory


def choose_dtype(requested: str, vocab_size: int) -> str:
    """Resolve `auto` to the smallest dtype that holds every id; refuse a dtype that is too small."""
    if requested == "auto":
        return "uint16" if vocab_size <= 2**16 else "uint32"
    limit = int(np.iinfo(DTYPES[requested]).max) + 1
    if vocab_size > limit:
        raise LtmError(f"vocabulary of {vocab_size} ids does not fit dtype {requested} (at most {limit} ids); "
                       "use dtype auto or uint32")
    return requested


def shard_schema(dtype: str, row_len: int) -> pa.Schema:
    return pa.schema([pa.field(COLUMN, pa.from_numpy_dtype(DTYPES[dtype]), nullable=False)],
                     metadata={"row_len": str(row_len)})


class _ShardWriter:
    """Fill a fixed buffer of rows_per_shard rows; every full buffer becomes one shard file."""

    def __init__(self, split_dir: Path, dtype: str, row_len: int, rows_per_shard: int):
        self.split_dir, self.row_len = split_dir, row_len
        self.schema = shard_schema(dtype, row_len)
        self.buffer = np.empty(rows_per_shard * row_len, dtype=DTYPES[dtype])
        self.fill = 0
        self.tokens_in = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, tokens: np.ndarray) -> None:
        self.tokens_in += len(tokens)
        while len(tokens):
            take = min(len(tokens), len(self.buffer) - self.fill)
            self.buffer[self.fill:self.fill + take] = tokens[:take]
            self.fill += take
            tokens = tokens[take:]
            if self.fill == len(self.buffer):
                self._write(self.fill)

    def _write(self, n_tokens: int) -> None:
        path = self.split_dir / f"shard-{len(self.shards):05d}.arrow"
        batch = pa.record_batch([pa.array(self.buffer[:n_tokens])], schema=self.schema)
        with pa.ipc.new_file(str(path), self.schema) as writer:
            writer.write_batch(batch)
        self.shards.append({"file": f"{self.split_dir.name}/{path.name}", "rows": n_tokens // self.row_len,
                            "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        self.fill = 0

    def finish(self) -> dict[str, Any]:
        full = self.fill - self.fill % self.row_len  # the partial last row is dropped
        if full:
            self._write(full)
        rows = sum(s["rows"] for s in self.shards)
        return {"rows": rows, "tokens": rows * self.row_len, "tokens_encoded": self.tokens_in, "shards": self.shards}


def _encode_split(tok: Tokenizer, path: Path, writer: _ShardWriter, bos: int, eos: int, dtype: type,
                  desc: str) -> None:
    def encode(chunk: tuple[list[str], list[bool], list[bool]]) -> tuple[tuple, list]:
        return chunk, tok.encode_batch_fast(chunk[0], add_special_tokens=False)

    # The tokenizer releases the GIL: encode the next chunk while this one is framed and written.
    with progress(desc=desc, unit="char", unit_scale=True) as bar, ThreadPoolExecutor(1) as pool:
        pending = None
        for chunk in itertools.chain(iter_pieces(path, _CHUNK_CHARS), [None]):  # None flushes the last chunk
            ahead = pool.submit(encode, chunk) if chunk is not None else None
            if pending is not None:
                (texts, starts, ends), encodings = pending.result()
                ids: list[int] = []
                for enc, first, last in zip(encodings, starts, ends):
                    if first:
                        ids.append(bos)
                    ids.extend(enc.ids)
                    if last:
                        ids.append(eos)
                writer.add(np.array(ids, dtype=dtype))
                bar.update(sum(len(t) for t in texts))
            pending = ahead


def build_shards(cfg: dict, corpus_dir: Path, tokenizer_dir: Path, out_dir: Path,
                 threads: int | None = None) -> dict:
    """Encode every split of `corpus_dir` with the tokenizer in `tokenizer_dir` into `out_dir`.

    `threads` caps the tokenizer's thread pool (RAYON_NUM_THREADS); it takes effect only if no
    parallel tokenizers call ran earlier in this process. The output does not depend on it.
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    seq_len, rows_per_shard = int(cfg["seq_len"]), int(cfg["rows_per_shard"])
    if threads is not None:
        os.environ["RAYON_NUM_THREADS"] = str(threads)
    corpus = load_corpus_manifest(corpus_dir)
    tok, tok_manifest = load_tokenizer(tokenizer_dir)
    tok.encode_special_tokens = True  # a literal "<|endoftext|>" in a document stays text
    vocab_size = tok_manifest["vocab_size"]
    dtype = choose_dtype(cfg["dtype"], vocab_size)
    row_len = seq_len + 1

    for name, split in corpus["splits"].items():  # cheap checks first, not after minutes of encoding
        # byte-level BPE: at most one token per byte, plus BOS and EOS per document
        if split["bytes"] + 2 * split["documents"] < row_len:
            raise LtmError(f"split {name!r} has {split['bytes']} bytes in {split['documents']} documents: fewer "
                           f"than one row of seq_len + 1 = {row_len} tokens; lower seq_len or add documents")
    splits: dict[str, Any] = {}
    with atomic_dir(out_dir, owner="shards") as tmp:
        for name, split in corpus["splits"].items():
            (tmp / name).mkdir()
            writer = _ShardWriter(tmp / name, dtype, row_len, rows_per_shard)
            _encode_split(tok, corpus_dir / split["file"], writer, tok_manifest["bos_id"], tok_manifest["eos_id"],
                          DTYPES[dtype], desc=f"shards {name}")
            stats = writer.finish()
            if stats["rows"] == 0:
                raise LtmError(f"split {name!r} has {stats['tokens_encoded']} tokens, fewer than one row of "
                               f"seq_len + 1 = {row_len}; lower seq_len or add documents")
            splits[name] = {"documents": split["documents"], "text_bytes": split["bytes"],
                            "heldout": bool(split.get("heldout", False)), **stats}
        manifest = {"seq_len": seq_len, "row_len": row_len, "dtype": dtype, "vocab_size": vocab_size,
                    "bos_id": tok_manifest["bos_id"], "eos_id": tok_manifest["eos_id"],
                    "tokenizer_sha256": tok_manifest["sha256"],
                    "corpus_sha256": {name: split["sha256"] for name, split in corpus["splits"].items()},
                    "rows_per_shard": rows_per_shard, "splits": splits}
        if "ground_truth" in corpus:  # a synthetic corpus: the exact -log p of each split's text
            manifest["ground_truth"] = corpus["ground_truth"]
        write_json(tmp / "manifest.json", manifest)
    return manifest
