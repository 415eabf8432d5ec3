"""Shards stage: packing, manifest numbers, determinism, dtype and seq_len errors, atomic rebuild."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from ltm.data.corpus import build_corpus, iter_texts
from ltm.data.shards import build_shards, choose_dtype
from ltm.data.tokenizer import build_tokenizer, load_tokenizer
from ltm.errors import LtmError
from ltm.io import sha256_file, write_json

from settings import data_settings

WORDS = "one two three latent thought shard arrow token row column file byte".split()
SHARDS = {"seq_len": 16, "rows_per_shard": 20, "dtype": "auto"}


def make_docs(n: int) -> list[str]:
    rng = random.Random(5)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 80))) for _ in range(n)]
    docs[3] += " a literal <|endoftext|> and <|bos|> stay text"
    return docs


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    with open(root / "docs.jsonl", "w") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in make_docs(60))
    build_corpus({**data_settings("corpus"), "source": "files", "paths": [str(root / "docs.jsonl")], "val_fraction": 0.25, "seed": 0},
                 root / "corpus")
    build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 300, "min_frequency": 2}, root / "corpus", root / "tok")
    build_shards(SHARDS, root / "corpus", root / "tok", root / "shards")
    return root


def read_rows(shards: Path, entry: dict) -> np.ndarray:
    with pa.memory_map(str(shards / entry["file"])) as source:
        return pa.ipc.open_file(source).read_all().column("tokens").to_numpy()


def test_shards_hold_bos_text_eos_packed_in_rows(built):
    manifest = json.loads((built / "shards" / "manifest.json").read_text())
    corpus = json.loads((built / "corpus" / "manifest.json").read_text())
    tok, tok_manifest = load_tokenizer(built / "tok")
    bos, eos, row_len = tok_manifest["bos_id"], tok_manifest["eos_id"], manifest["row_len"]
    assert row_len == SHARDS["seq_len"] + 1 and manifest["dtype"] == "uint16"
    assert set(manifest["splits"]) == {"train", "val"}
    for name, split in manifest["splits"].items():
        docs = [t for batch in iter_texts(built / "corpus" / f"{name}.arrow") for t in batch]
        tok.encode_special_tokens = True
        expected = [i for d in docs for i in [bos, *tok.encode(d).ids, eos]]  # one document at a time
        stored = np.concatenate([read_rows(built / "shards", s) for s in split["shards"]])
        assert stored.dtype == np.uint16
        assert split["rows"] == len(expected) // row_len == sum(s["rows"] for s in split["shards"])
        assert split["tokens"] == split["rows"] * row_len and split["tokens_encoded"] == len(expected)
        assert stored.tolist() == expected[: split["tokens"]]
        assert all(s["rows"] <= SHARDS["rows_per_shard"] for s in split["shards"])
        assert len(split["shards"]) > 1 or name == "val"
        assert split["documents"] == len(docs) == corpus["splits"][name]["documents"]
        assert split["text_bytes"] == sum(len(d.encode()) for d in docs)
        for s in split["shards"]:
            assert sha256_file(built / "shards" / s["file"]) == s["sha256"]
    # The literal special-token spellings in a document did not become special ids.
    all_ids = [t for d in make_docs(60) for t in tok.encode(d).ids]
    assert bos not in all_ids and eos not in all_ids
    assert manifest["tokenizer_sha256"] == tok_manifest["sha256"]


def test_rerun_is_byte_identical_whatever_the_threads(built, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYON_NUM_THREADS", "2")  # restored after the test
    build_shards(SHARDS, built / "corpus", built / "tok", tmp_path / "again", threads=1)
    assert os.environ["RAYON_NUM_THREADS"] == "1"
    assert snapshot(tmp_path / "again") == snapshot(built / "shards")


def test_seq_len_larger_than_a_split_is_an_error_naming_it(built, tmp_path):
    val_tokens = json.loads((built / "shards" / "manifest.json").read_text())["splits"]["val"]["tokens_encoded"]
    with pytest.raises(LtmError) as err:
        build_shards({**SHARDS, "seq_len": val_tokens + 5}, built / "corpus", built / "tok", tmp_path / "s")
    message = str(err.value)
    assert "'val'" in message and str(val_tokens) in message and str(val_tokens + 6) in message
    assert "\n" not in message and not (tmp_path / "s").exists()


def test_failed_rebuild_leaves_earlier_shards_untouched(built, tmp_path):
    out = tmp_path / "shards"
    build_shards(SHARDS, built / "corpus", built / "tok", out)
    before = snapshot(out)
    huge = json.loads((out / "manifest.json").read_text())["splits"]["val"]["tokens_encoded"]
    with pytest.raises(LtmError):  # train is written before val fails
        build_shards({**SHARDS, "seq_len": huge}, built / "corpus", built / "tok", out)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


def test_vocabulary_larger_than_dtype(built, tmp_path):
    assert choose_dtype("auto", 65536) == "uint16" and choose_dtype("auto", 65537) == "uint32"
    tok = Tokenizer.from_file(str(built / "tok" / "tokenizer.json"))
    tok.add_tokens([f"extra{i}" for i in range(70_000 - tok.get_vocab_size())])
    big = tmp_path / "big"
    big.mkdir()
    tok.save(str(big / "tokenizer.json"))
    write_json(big / "manifest.json", {**json.loads((built / "tok" / "manifest.json").read_text()),
                                       "vocab_size": tok.get_vocab_size(),
                                       "sha256": sha256_file(big / "tokenizer.json")})
    with pytest.raises(LtmError) as err:
        build_shards({**SHARDS, "dtype": "uint16"}, built / "corpus", big, tmp_path / "s")
    assert "70000" in str(err.value) and "uint16" in str(err.value)
    manifest = build_shards(SHARDS, built / "corpus", big, tmp_path / "s")
    assert manifest["dtype"] == "uint32"
    assert read_rows(tmp_path / "s", manifest["splits"]["train"]["shards"][0]).dtype == np.uint32


def test_changed_corpus_is_refused(built, tmp_path):
    shutil.copytree(built / "corpus", tmp_path / "corpus")
    with open(tmp_path / "corpus" / "val.arrow", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(LtmError, match="does not match its manifest"):
        build_shards(SHARDS, tmp_path / "corpus", built / "tok", tmp_path / "s")


def test_long_documents_are_encoded_in_pieces_to_the_same_tokens(built, tmp_path, monkeypatch):
    """A one-line document far longer than corpus.PIECE_CHARS gives the tokens of the whole text,
    while the tokenizer only ever sees pieces of at most PIECE_CHARS characters."""
    from ltm.data import corpus as corpus_mod
    from ltm.data.corpus import pieces
    from ltm.data.tokenizer import _gpt2

    rng = random.Random(3)
    seps = [" ", " ", " ", "  ", "\n", "\t", " \n ", ", ", ". "]
    text = "".join(rng.choice(WORDS + ["42", "3.14", "é", "über", "<|endoftext|>"]) + rng.choice(seps)
                   for _ in range(3000))
    tok = _gpt2()
    tok.encode_special_tokens = True  # as the shards stage: a literal <|endoftext|> is text
    whole = tok.encode(text).ids
    for max_chars in (200, 1000):
        parts = pieces(text, max_chars)
        assert "".join(parts) == text and all(len(p) <= max_chars for p in parts) and len(parts) > 1
        assert all(p.startswith(" ") and not p[1].isspace() for p in parts[1:])  # cut before a word
        assert [i for p in parts for i in tok.encode(p).ids] == whole
    assert pieces("short", 10) == ["short"]
    assert pieces("x" * 300, 50) == ["x" * 50] * 6  # no space to cut before: cut where the piece ends

    # the shards stage, pieces of 64 characters, stores exactly what the whole-document encoding gives
    doc = " ".join(rng.choice(WORDS) for _ in range(4000))
    with open(tmp_path / "docs.jsonl", "w") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in [doc, *make_docs(20)])
    build_corpus({**data_settings("corpus"), "source": "files", "paths": [str(tmp_path / "docs.jsonl")], "val_fraction": 0.25, "seed": 0},
                 tmp_path / "corpus")
    build_shards(SHARDS, tmp_path / "corpus", built / "tok", tmp_path / "whole")
    monkeypatch.setattr(corpus_mod, "PIECE_CHARS", 64)
    build_shards(SHARDS, tmp_path / "corpus", built / "tok", tmp_path / "pieces")
    assert snapshot(tmp_path / "pieces") == snapshot(tmp_path / "whole")


def test_a_split_too_small_for_one_row_is_refused_before_any_encoding(built, tmp_path, monkeypatch):
    import ltm.data.shards as shards_mod

    calls = []
    monkeypatch.setattr(shards_mod, "_encode_split", lambda *a, **k: calls.append(a))
    corpus = json.loads((built / "corpus" / "manifest.json").read_text())
    val = corpus["splits"]["val"]
    with pytest.raises(LtmError, match=r"split 'val' has \d+ bytes in \d+ documents"):
        build_shards({**SHARDS, "seq_len": val["bytes"] + 2 * val["documents"]}, built / "corpus", built / "tok",
                     tmp_path / "s")
    assert calls == [] and not (tmp_path / "s").exists()
