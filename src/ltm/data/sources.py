"""Document sources for the corpus stage: builtin (gensim's shipped text), files, HuggingFace datasets,
synthetic (generated with a known ground truth, ltm.data.synthetic).

Each source is an iterator of document strings; skipped input is counted in a shared Counter
(`skipped_non_utf8`, `skipped_empty`, `skipped_redirect`). See `ltm.data.corpus` for the policy.
"""
from __future__ import annotations

import bz2
import glob
import importlib.resources
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ltm.data.synthetic import TopicProcess
from ltm.errors import LtmError
from ltm.io import sha256_file

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".jsonl", ".parquet")
WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_FILE = "test/test_data/lee_background.cor"
MIN_WIKI_CHARS = 200  # shorter pages are stubs or disambiguation leftovers
_READ_BATCH = 1024  # Parquet rows per read


# --- builtin --------------------------------------------------------------------------------------

def _gensim_file(relative: str) -> Path:
    try:
        path = Path(str(importlib.resources.files("gensim") / relative))
    except ModuleNotFoundError:
        raise LtmError("source 'builtin' needs the gensim package, which is not installed") from None
    if not path.is_file():
        raise LtmError(f"source 'builtin': gensim's test data file {relative} is missing from this install")
    return path


_EMPHASIS = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def tidy_wiki(text: str) -> str:
    """Drop leftover wiki emphasis and heading marks, collapse runs of spaces and blank lines."""
    text = _HEADING.sub(r"\2", _EMPHASIS.sub("", text))
    text = "\n".join(" ".join(line.split()) for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", text).strip()


def wiki_documents(stats: Counter) -> Iterator[str]:
    from gensim.corpora.wikicorpus import (  # gensim is slow to import: only here
        extract_pages,
        filter_wiki,
    )

    with bz2.open(_gensim_file(WIKI_FILE)) as fh:
        for _title, raw, _pageid in extract_pages(fh, filter_namespaces=("0",)):
            if raw.lstrip().upper().startswith("#REDIRECT"):
                stats["skipped_redirect"] += 1
                continue
            text = tidy_wiki(filter_wiki(raw))
            if len(text) < MIN_WIKI_CHARS:
                stats["skipped_empty"] += 1
                continue
            yield text


def lee_documents() -> Iterator[str]:
    with open(_gensim_file(LEE_FILE), encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield " ".join(line.split())


def builtin_description() -> dict[str, Any]:
    import gensim

    return {"kind": "builtin", "gensim_version": gensim.__version__,
            "files": [{"path": f"gensim/{rel}", "sha256": sha256_file(_gensim_file(rel))}
                      for rel in (WIKI_FILE, LEE_FILE)]}


# --- files ----------------------------------------------------------------------------------------

def resolve_paths(patterns: Iterable[str]) -> list[Path]:
    """Expand glob patterns (sorted per pattern, duplicates dropped); fail on anything unusable."""
    files: list[Path] = []
    for pattern in patterns:
        if not glob.has_magic(pattern):
            path = Path(pattern)
            if not path.exists():
                raise LtmError(f"corpus path does not exist: {pattern}")
            if not path.is_file():
                raise LtmError(f"corpus path is not a file: {pattern} (use a glob such as {pattern}/*.txt)")
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
            if not matches:
                raise LtmError(f"corpus glob matches no file: {pattern}")
        for path in matches:
            if path.suffix not in EXTENSIONS:
                raise LtmError(f"unknown corpus file extension {path.suffix or '(none)'!r} for {path}; "
                               f"expected one of {', '.join(EXTENSIONS)}")
            if path not in files:
                files.append(path)
    if not files:
        raise LtmError("corpus source 'files' needs at least one entry in paths")
    return files


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _txt_documents(path: Path, stats: Counter) -> Iterator[str]:
    text = _decode(path.read_bytes())
    if text is None:
        stats["skipped_non_utf8"] += 1
        log.warning("skipping %s: not valid UTF-8", path)
    else:
        yield text


def _jsonl_documents(path: Path, field: str, stats: Counter) -> Iterator[str]:
    bad = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw)
            if line is None:
                bad += 1
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise LtmError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise LtmError(f"{path}:{lineno}: no string field {field!r}")
            yield record[field]
    if bad:
        stats["skipped_non_utf8"] += bad
        log.warning("skipping %d line(s) of %s: not valid UTF-8", bad, path)


def _parquet_documents(path: Path, field: str, stats: Counter) -> Iterator[str]:
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise LtmError(f"cannot read Parquet file {path}: {str(err).splitlines()[0]}") from None
    schema = pfile.schema_arrow
    if field not in schema.names:
        raise LtmError(f"{path}: no column {field!r} (columns: {', '.join(schema.names)})")
    if not (pa.types.is_string(schema.field(field).type) or pa.types.is_large_string(schema.field(field).type)):
        raise LtmError(f"{path}: column {field!r} has type {schema.field(field).type}, expected string")
    bad = 0
    for batch in pfile.iter_batches(columns=[field], batch_size=_READ_BATCH):
        # Through binary so one bad value skips that value only, like a bad .jsonl line.
        for value in batch.column(0).cast(pa.large_binary()).to_pylist():
            if value is None:
                continue
            text = _decode(value)
            if text is None:
                bad += 1
            else:
                yield text
    if bad:
        stats["skipped_non_utf8"] += bad
        log.warning("skipping %d value(s) of %s: not valid UTF-8", bad, path)


def file_documents(files: list[Path], field: str, stats: Counter) -> Iterator[str]:
    for path in files:
        if path.suffix == ".txt":
            yield from _txt_documents(path, stats)
        elif path.suffix == ".jsonl":
            yield from _jsonl_documents(path, field, stats)
        else:
            yield from _parquet_documents(path, field, stats)


# --- hf -------------------------------------------------------------------------------------------

def hf_documents(cfg: dict, field: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise LtmError("source 'hf' needs the optional 'datasets' package: pip install 'ltm[hf]'") from None
    try:
        dataset = datasets.load_dataset(cfg["hf_path"], cfg["hf_name"], split=cfg["hf_split"], streaming=True)
        for record in dataset:
            if not isinstance(record.get(field), str):
                raise LtmError(f"dataset {cfg['hf_path']} has no string field {field!r}")
            yield record[field]
    except LtmError:
        raise
    except Exception as err:  # the hub raises many types; the user needs the first line only
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LtmError(f"cannot load dataset {cfg['hf_path']}: {reason}") from None


def open_source(cfg: dict, stats: Counter) -> tuple[dict[str, Any], Iterator[str], dict[str, Iterator[str]]]:
    """(description for the manifest, training documents, held-out domains) of the configured source."""
    source = cfg["source"]
    if source == "builtin":
        return builtin_description(), wiki_documents(stats), {"heldout-lee": lee_documents()}
    if source == "files":
        files, field = resolve_paths(cfg["paths"]), cfg["text_field"]
        description = {"kind": "files", "text_field": field,
                       "files": [{"path": p.as_posix(), "sha256": sha256_file(p)} for p in files]}
        return description, file_documents(files, field, stats), {}
    if source == "synthetic":
        process = TopicProcess.from_params(cfg["synthetic"])
        return process.describe(), process.sample(), {}
    if source == "hf":
        field = cfg["text_field"]
        description = {"kind": "hf", "hf_path": cfg["hf_path"], "hf_name": cfg["hf_name"],
                       "hf_split": cfg["hf_split"], "text_field": field}
        return description, hf_documents(cfg, field), {}
    raise LtmError(f"unknown corpus source {source!r}; expected builtin, files, hf or synthetic")
