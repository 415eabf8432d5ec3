"""Raw text corpus: gather documents from a source, split them into train/val, write Arrow files.

Sources (`cfg["source"]`, read by `ltm.data.sources`):
  builtin  offline default: the Wikipedia excerpt shipped in the gensim wheel (cleaned with gensim's
           `extract_pages` + `filter_wiki`; redirects and near-empty pages skipped), plus the Lee news
           corpus from the same wheel as a separate held-out domain `heldout-lee` (zero-shot evaluation
           only: never split, never used for training or for the tokenizer).
  files    `.txt` (one document per file), `.jsonl` (one document per line, field `text_field`),
           `.parquet` (column `text_field`). Glob patterns are relative to the current directory;
           the matches of each pattern are sorted, a file matched twice is read once.
  synthetic documents generated from a per-document latent topic (ltm.data.synthetic); the manifest
           then carries `ground_truth`: the exact -log p of every split's text.
  hf       a HuggingFace `datasets` dataset, streamed (optional extra `ltm[hf]`, needs internet);
           `hf_path`, `hf_name`, `hf_split` name it, `text_field` its text column.

Non-UTF-8 input is skipped, never guessed at: a `.txt` file that does not decode, a `.jsonl` line that
does not decode, or a Parquet value that is not valid UTF-8 is left out, counted in the manifest as
`skipped_non_utf8` (in documents) and reported with a warning. Blank documents are counted as
`skipped_empty`. If nothing is left, the build fails with the empty-corpus error.

The split is per document and deterministic: a document goes to `val` when a hash of (seed, its text)
falls below `val_fraction`. It depends on nothing else, so identical documents always share a split and
adding documents never moves the others.

Output (`out_dir`): `<split>.arrow` (Arrow IPC file, one string column `text`) for `train`, `val` and
held-out domains, and `manifest.json` (per split: file, documents, UTF-8 bytes, sha256).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa

from ltm.data.sources import open_source
from ltm.data.synthetic import GroundTruth, TopicProcess
from ltm.data.zeroshot import zeroshot_documents
from ltm.errors import LtmError
from ltm.io import atomic_dir, read_json, sha256_file, write_json
from ltm.progress import progress

SCHEMA = pa.schema([("text", pa.string())])
TRAIN, VAL = "train", "val"
_BATCH_DOCS = 1024  # documents per Arrow record batch
_BATCH_BYTES = 64 << 20


class SplitWriter:
    """Stream documents into one Arrow IPC file in bounded record batches, counting as it goes."""

    def __init__(self, path: Path):
        self.path = path
        self.documents = 0
        self.bytes = 0
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._writer = pa.ipc.new_file(str(path), SCHEMA)

    def add(self, text: str) -> None:
        size = len(text.encode("utf-8"))
        self._pending.append(text)
        self._pending_bytes += size
        self.documents += 1
        self.bytes += size
        if len(self._pending) >= _BATCH_DOCS or self._pending_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_batch(pa.record_batch([pa.array(self._pending, pa.string())], schema=SCHEMA))
            self._pending, self._pending_bytes = [], 0

    def close(self) -> dict[str, Any]:
        self._flush()
        self._writer.close()
        return {"file": self.path.name, "documents": self.documents, "bytes": self.bytes,
                "sha256": sha256_file(self.path)}


PIECE_CHARS = 1 << 16  # longest text the tokenizer gets at once: its memory is bounded by this, not a document


def pieces(text: str, max_chars: int = PIECE_CHARS) -> list[str]:
    """`text` cut into pieces of at most `max_chars`, each cut just before a space that starts a word.

    GPT-2's pre-tokeniser (every alternative of its regex takes one optional leading space) splits
    there too, so the pieces encode to exactly the tokens of the whole text; only a run of `max_chars`
    without such a space is cut where it ends. Bounds tokenizer memory for one-line documents."""
    if len(text) <= max_chars:
        return [text]
    out, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = text.rfind(" ", start + 1, end)
        while cut > start and text[cut + 1].isspace():
            cut = text.rfind(" ", start + 1, cut)
        cut = cut if cut > start else end
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def iter_texts(path: Path, batch_docs: int = _BATCH_DOCS) -> Iterator[list[str]]:
    """Yield the documents of a corpus Arrow file in lists of at most `batch_docs` (memory-mapped)."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            column = reader.get_batch(i).column(0)
            for start in range(0, len(column), batch_docs):
                yield column.slice(start, batch_docs).to_pylist()


def iter_pieces(path: Path, chunk_chars: int) -> Iterator[tuple[list[str], list[bool], list[bool]]]:
    """The documents of a corpus Arrow file as texts of about `chunk_chars` characters in all, a long
    document in pieces (`pieces`), with flags saying which text starts a document and which ends one."""
    chunk, starts, ends, size = [], [], [], 0
    for texts in iter_texts(path, batch_docs=256):
        for text in texts:
            parts = pieces(text)
            for k, part in enumerate(parts):
                chunk.append(part)
                starts.append(k == 0)
                ends.append(k == len(parts) - 1)
                size += len(part)
                if size >= chunk_chars:
                    yield chunk, starts, ends
                    chunk, starts, ends, size = [], [], [], 0
    if chunk:
        yield chunk, starts, ends


def load_corpus_manifest(corpus_dir: Path) -> dict[str, Any]:
    """The corpus manifest; split files whose content no longer matches it are refused."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        raise LtmError(f"no corpus manifest at {path}; build the corpus first")
    manifest = read_json(path)
    for split in manifest["splits"].values():
        file = Path(corpus_dir) / split["file"]
        if not file.is_file() or sha256_file(file) != split["sha256"]:
            raise LtmError(f"corpus file {file} is missing or does not match its manifest; rebuild the corpus")
    return manifest


def in_val(text: str, seed: int, val_fraction: float) -> bool:
    """Deterministic split decision from (seed, document text)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


# --- build ----------------------------------------------------------------------------------------

def _limit(docs: Iterable[str], max_docs: int, stats: Counter) -> Iterator[str]:
    taken = 0
    for text in docs:
        if max_docs and taken >= max_docs:
            return
        if not text.strip():
            stats["skipped_empty"] += 1
            continue
        taken += 1
        yield text


def build_corpus(cfg: dict, out_dir: Path) -> dict:
    """Gather the documents named by `cfg`, split them, write `out_dir`; return the manifest."""
    out_dir = Path(out_dir)
    val_fraction, seed = float(cfg["val_fraction"]), int(cfg["seed"])
    max_docs = int(cfg.get("max_docs") or 0)  # absent where a caller passes only what its source reads (demo)
    if not 0.0 < val_fraction < 1.0:
        raise LtmError(f"corpus val_fraction must be in (0, 1), got {val_fraction}")

    stats: Counter = Counter()
    description, docs, heldout = open_source(cfg, stats)
    for name in cfg.get("zeroshot") or []:  # the paper's zero-shot sets, as further held-out domains
        heldout[f"heldout-{name}"] = zeroshot_documents(name, max_docs)

    truth = GroundTruth(TopicProcess.from_params(cfg["synthetic"])) if description["kind"] == "synthetic" else None
    with atomic_dir(out_dir, owner="corpus") as tmp:
        writers = {name: SplitWriter(tmp / f"{name}.arrow") for name in (TRAIN, VAL)}
        for text in progress(_limit(docs, max_docs, stats), desc="corpus", unit="doc"):
            split = VAL if in_val(text, seed, val_fraction) else TRAIN
            writers[split].add(text)
            if truth is not None:
                truth.add(split, text)
        splits = {name: {**w.close(), "heldout": False} for name, w in writers.items()}
        total = splits[TRAIN]["documents"] + splits[VAL]["documents"]
        if total == 0:
            raise LtmError(f"corpus is empty: no documents from source {description['kind']!r} "
                           f"(skipped {stats['skipped_non_utf8']} non-UTF-8, {stats['skipped_empty']} empty)")
        for name, split in splits.items():
            if split["documents"] == 0:
                raise LtmError(f"corpus split {name!r} is empty ({total} documents, val_fraction={val_fraction}); "
                               "add documents or change val_fraction")
        for name, texts in heldout.items():
            writer = SplitWriter(tmp / f"{name}.arrow")
            for text in texts:
                writer.add(text)
            splits[name] = {**writer.close(), "heldout": True}
        skipped = {k: stats[k] for k in ("skipped_non_utf8", "skipped_empty", "skipped_redirect")}
        manifest = {"source": description, "seed": seed, "val_fraction": val_fraction, "max_docs": max_docs,
                    "splits": splits, **skipped}
        if truth is not None:
            manifest["ground_truth"] = truth.summary()
        write_json(tmp / "manifest.json", manifest)
    return manifest
