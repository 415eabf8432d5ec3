"""How many bytes of text the scored tokens stand for, for bits per byte.

Two ways, best first:
  exact  With the byte-level BPE tokenizer, every ordinary token is a fixed byte string, so the text
         of the scored targets has sum_t len(bytes(target_t)) bytes; special tokens (BOS, EOS) stand for
         no text and count 0 bytes (their NLL still counts: it prices document boundaries).
  ratio  Without the tokenizer: scored tokens * (text_bytes / tokens_encoded) of the split from the
         shards manifest. This assumes the scored rows have the split's average bytes per token
         (BOS/EOS included in both counts); good for many rows, rough for a handful.
"""

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, pre_tokenizers

from ltm.errors import LtmError


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 byte length of every id (int64, length vocab_size); special tokens are 0."""
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())  # the 256 characters standing for bytes
    special = {tok.content for tok in tokenizer.get_added_tokens_decoder().values() if tok.special}
    lengths = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for text, idx in tokenizer.get_vocab(with_added_tokens=True).items():
        if text in special:
            continue
        if not set(text) <= alphabet:
            raise LtmError(f"token {text!r} (id {idx}) is not byte-level BPE; exact byte counts need a "
                           "byte-level tokenizer")
        lengths[idx] = len(text)  # one character per byte
    return lengths


def load_token_byte_lengths(tokenizer_dir: Path) -> np.ndarray:
    from ltm.data.tokenizer import load_tokenizer  # only needed on this path

    tok, _ = load_tokenizer(Path(tokenizer_dir))
    return token_byte_lengths(tok)


def bytes_per_token(manifest: dict, split: str) -> float:
    """Average UTF-8 text bytes per encoded token of a split, from the shards manifest."""
    info = manifest.get("splits", {}).get(split, {})
    if not info.get("text_bytes") or not info.get("tokens_encoded"):
        raise LtmError(f"shards manifest has no text_bytes/tokens_encoded for split {split!r}; "
                       "rebuild the shards or pass the tokenizer for exact byte counts")
    return info["text_bytes"] / info["tokens_encoded"]


def target_bytes(y: torch.Tensor, lengths: np.ndarray) -> int:
    """Exact bytes of the scored targets of a batch (targets of -1 are ignored)."""
    ids = y[y >= 0].cpu().numpy()
    if len(ids) and ids.max() >= len(lengths):
        raise LtmError(f"token id {int(ids.max())} is outside the tokenizer's {len(lengths)} ids")
    return int(lengths[ids].sum())
