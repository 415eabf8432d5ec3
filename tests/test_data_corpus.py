"""Corpus stage: sources, deterministic split, manifest, every bad input, atomic rebuild."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltm.data.corpus import build_corpus, iter_texts
from ltm.errors import LtmError
from ltm.io import sha256_file

from settings import data_settings

WORDS = "the a model latent thought vector token layer train data value small large fast slow".split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + f" doc{i}." for i in range(n)]


def files_cfg(*paths: str, val_fraction: float = 0.3, seed: int = 7, **extra) -> dict:
    return {"source": "files", "paths": list(paths), "text_field": "text", "max_docs": 0,
            "val_fraction": val_fraction, "seed": seed, **extra}


def read_split(out: Path, split: str) -> list[str]:
    return [t for batch in iter_texts(out / f"{split}.arrow") for t in batch]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("builtin") / "corpus"
    return out, build_corpus({**data_settings("corpus"), "source": "builtin", "val_fraction": 0.1, "seed": 1}, out)


def test_builtin_corpus_builds_with_heldout_lee(builtin):
    out, manifest = builtin
    splits = manifest["splits"]
    assert splits["train"]["documents"] + splits["val"]["documents"] > 100
    assert splits["val"]["documents"] > 0
    assert splits["heldout-lee"]["documents"] == 300 and splits["heldout-lee"]["heldout"]
    for name, split in splits.items():
        texts = read_split(out, name)
        assert len(texts) == split["documents"]
        assert sum(len(t.encode("utf-8")) for t in texts) == split["bytes"]
        assert sha256_file(out / split["file"]) == split["sha256"]
    train = read_split(out, "train")
    assert not any(t.upper().startswith("#REDIRECT") for t in train)
    assert not any("'''" in t or "\n\n\n" in t for t in train)  # wiki emphasis and blank runs tidied away
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_builtin_rerun_is_byte_identical(tmp_path):
    cfg = {"source": "builtin", "val_fraction": 0.2, "seed": 3, "max_docs": 15}
    build_corpus(cfg, tmp_path / "a")
    manifest = build_corpus(cfg, tmp_path / "b")
    assert manifest["splits"]["train"]["documents"] + manifest["splits"]["val"]["documents"] == 15
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_files_source_txt_jsonl_parquet(in_tmp):
    docs = make_docs(60)
    (in_tmp / "txt").mkdir()
    for i, doc in enumerate(docs[:20]):
        (in_tmp / "txt" / f"{i:02d}.txt").write_text(doc, encoding="utf-8")
    with open(in_tmp / "part.jsonl", "w", encoding="utf-8") as fh:
        for doc in docs[20:40]:
            fh.write(json.dumps({"body": doc, "id": 1}) + "\n")
        fh.write("\n")  # blank lines are ignored
    pq.write_table(pa.table({"body": docs[40:], "n": list(range(20))}), in_tmp / "part.parquet")

    manifest = build_corpus(files_cfg("txt/*.txt", "part.jsonl", "part.parquet", text_field="body"), in_tmp / "out")
    train, val = read_split(in_tmp / "out", "train"), read_split(in_tmp / "out", "val")
    assert sorted(train + val) == sorted(docs) and train and val
    # Source order is kept inside each split.
    assert train == [d for d in docs if d in set(train)] and val == [d for d in docs if d in set(val)]
    assert [f["path"] for f in manifest["source"]["files"]] == [f"txt/{i:02d}.txt" for i in range(20)] + [
        "part.jsonl", "part.parquet"]
    assert manifest["splits"]["val"]["bytes"] == sum(len(d.encode()) for d in val)
    assert "heldout-lee" not in manifest["splits"]

    again = build_corpus(files_cfg("txt/*.txt", "part.jsonl", "part.parquet", text_field="body"), in_tmp / "again")
    assert again == manifest and snapshot(in_tmp / "out") == snapshot(in_tmp / "again")


def test_split_depends_on_seed_and_max_docs_limits(in_tmp):
    with open("d.jsonl", "w") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in make_docs(80))
    a = build_corpus(files_cfg("d.jsonl", seed=1), in_tmp / "a")
    build_corpus(files_cfg("d.jsonl", seed=2), in_tmp / "b")
    assert read_split(in_tmp / "a", "val") != read_split(in_tmp / "b", "val")
    assert 10 < a["splits"]["val"]["documents"] < 40  # about val_fraction = 0.3 of 80
    limited = build_corpus(files_cfg("d.jsonl", max_docs=30), in_tmp / "c")
    assert limited["splits"]["train"]["documents"] + limited["splits"]["val"]["documents"] == 30


def test_non_utf8_is_skipped_counted_and_warned(in_tmp, caplog):
    for i, doc in enumerate(make_docs(30)):
        Path(f"{i:02d}.txt").write_text(doc)
    Path("bad.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    with open("mixed.jsonl", "wb") as fh:
        fh.write(json.dumps({"text": "fine line one"}).encode() + b"\n")
        fh.write(b'{"text": "bro\xffken"}\n')
    manifest = build_corpus(files_cfg("*.txt", "mixed.jsonl"), in_tmp / "out")
    assert manifest["skipped_non_utf8"] == 2
    assert manifest["splits"]["train"]["documents"] + manifest["splits"]["val"]["documents"] == 31
    assert "bad.txt" in caplog.text and "mixed.jsonl" in caplog.text


def test_only_non_utf8_is_the_empty_corpus_error(in_tmp):
    Path("bad.txt").write_bytes(b"\xff\xfe\x00broken")
    with pytest.raises(LtmError) as err:
        build_corpus(files_cfg("bad.txt"), in_tmp / "out")
    assert "empty" in one_line_error(err) and "1 non-UTF-8" in str(err.value)


@pytest.mark.parametrize("setup, paths, expected", [
    (lambda: [Path(f"{i}.txt").write_text("  \n") for i in range(3)], ["*.txt"], "corpus is empty"),
    (lambda: None, ["nope.txt"], "does not exist: nope.txt"),
    (lambda: None, ["data/*.jsonl"], "glob matches no file: data/*.jsonl"),
    (lambda: Path("a.csv").write_text("x"), ["a.csv"], "unknown corpus file extension '.csv'"),
    (lambda: Path("d").mkdir(), ["d"], "not a file: d"),
    (lambda: Path("one.txt").write_text("a single document"), ["one.txt"], "split"),
    (lambda: Path("x.jsonl").write_text('{"title": "no text"}\n'), ["x.jsonl"], "x.jsonl:1: no string field 'text'"),
    (lambda: Path("x.jsonl").write_text("{not json\n"), ["x.jsonl"], "x.jsonl:1: invalid JSON"),
    (lambda: None, [], "at least one entry"),
])
def test_bad_file_inputs_fail_with_one_line(in_tmp, setup, paths, expected):
    setup()
    with pytest.raises(LtmError) as err:
        build_corpus(files_cfg(*paths), in_tmp / "out")
    assert expected in one_line_error(err)
    assert not (in_tmp / "out").exists()


def test_bad_parquet_column_and_settings(in_tmp):
    pq.write_table(pa.table({"body": ["x"]}), "p.parquet")
    with pytest.raises(LtmError) as err:
        build_corpus(files_cfg("p.parquet"), in_tmp / "out")
    assert "no column 'text'" in one_line_error(err)
    with pytest.raises(LtmError, match="val_fraction"):
        build_corpus(files_cfg("p.parquet", val_fraction=1.0), in_tmp / "out")
    with pytest.raises(LtmError, match="unknown corpus source"):
        build_corpus({**data_settings("corpus"), "source": "web", "val_fraction": 0.1, "seed": 0}, in_tmp / "out")


def test_hf_without_datasets_is_a_clear_error(in_tmp):
    try:
        import datasets  # noqa: F401
        pytest.skip("datasets is installed; the missing-package error cannot be shown")
    except ImportError:
        pass
    with pytest.raises(LtmError) as err:
        build_corpus({**data_settings("corpus"), "source": "hf", "hf_path": "wikitext", "val_fraction": 0.1, "seed": 0}, in_tmp / "out")
    assert "datasets" in one_line_error(err)


def test_failed_rebuild_leaves_earlier_corpus_untouched(in_tmp):
    for i, doc in enumerate(make_docs(20)):
        Path(f"{i:02d}.txt").write_text(doc)
    build_corpus(files_cfg("*.txt"), in_tmp / "out")
    before = snapshot(in_tmp / "out")
    Path("late.txt").write_bytes(b"\xff")  # all-bad input set: empty corpus, found only after reading
    with pytest.raises(LtmError):
        build_corpus(files_cfg("late.txt"), in_tmp / "out")
    with pytest.raises(LtmError):
        build_corpus(files_cfg("missing/*.txt"), in_tmp / "out")
    assert snapshot(in_tmp / "out") == before
    assert sorted(p.name for p in in_tmp.iterdir() if p.name.startswith(".")) == []  # no temp leftovers
