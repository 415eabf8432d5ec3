"""Zero-shot evaluation corpora of the paper (§4), through HuggingFace `datasets` (needs internet).

Each named set becomes a held-out domain `heldout-<name>` of the corpus: never used for training or for
the tokenizer, detokenised the way MDLM/SEDD evaluate (undoing the corpora's own tokenisation so that
a byte-level BPE sees ordinary text), then packed like every split (documents framed by BOS/EOS and cut
into fixed blocks of seq_len + 1 tokens by the shards stage).
"""
from __future__ import annotations

import re
from typing import Callable, Iterator

from ltm.errors import LtmError


def _spaces_before_punctuation(text: str) -> str:
    text = re.sub(r" ([.,;:!?%)\]}])", r"\1", text)
    return re.sub(r"([(\[{$]) ", r"\1", text)


def _contractions(text: str) -> str:
    text = re.sub(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", r"\1", text)
    return re.sub(r"s ' ", "s' ", text)


def wikitext_detokenize(text: str) -> str:
    """WikiText's ' @-@ ', ' @,@ ', ' @.@ ' number joins, spaced punctuation and '= = heading = ='."""
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    text = re.sub(r"= = = (.*?) = = =", r"=== \1 ===", text)
    text = re.sub(r"= = (.*?) = =", r"== \1 ==", text)
    text = _contractions(_spaces_before_punctuation(text))
    return re.sub(r'" (.*?) "', r'"\1"', text)


def ptb_detokenize(text: str) -> str:
    """Penn Treebank: escaped slashes, spaced clitics and punctuation; line breaks are sentence ends."""
    text = text.replace("\\/", "/").replace(" \n ", "\n").replace("\\*", "*")
    return _contractions(_spaces_before_punctuation(text))


def lm1b_detokenize(text: str) -> str:
    """One Billion Words: spaced punctuation, clitics and quotes."""
    text = _contractions(_spaces_before_punctuation(text))
    text = re.sub(r'" (.*?) "', r'"\1"', text)
    return text.replace(" - ", "-") if re.search(r"\w - \w", text) else text


def lambada_detokenize(text: str) -> str:
    """LAMBADA: typographic quotes to ASCII, surrounding whitespace removed."""
    return text.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'").strip()


def identity(text: str) -> str:
    return text


# name -> (dataset path, config name, split, text field, detokeniser)
SETS: dict[str, tuple[str, str | None, str, str, Callable[[str], str]]] = {
    "ptb": ("ptb_text_only", None, "test", "sentence", ptb_detokenize),
    "wikitext2": ("wikitext", "wikitext-2-raw-v1", "test", "text", wikitext_detokenize),
    "lm1b": ("lm1b", None, "test", "text", lm1b_detokenize),
    "lambada": ("EleutherAI/lambada_openai", "en", "test", "text", lambada_detokenize),
    "ag_news": ("ag_news", None, "test", "text", identity),
    "pubmed": ("scientific_papers", "pubmed", "test", "article", identity),
    "arxiv": ("scientific_papers", "arxiv", "test", "article", identity),
}


def zeroshot_documents(name: str, max_docs: int = 0) -> Iterator[str]:
    """Detokenised documents of one zero-shot set (streamed; max_docs 0 = all)."""
    if name not in SETS:
        raise LtmError(f"unknown zero-shot set {name!r}; known: {', '.join(SETS)}")
    path, config, split, field, detok = SETS[name]
    try:
        import datasets
    except ImportError:
        raise LtmError(f"zero-shot set {name!r} needs the optional 'datasets' package: pip install 'ltm[hf]'") from None
    try:
        for i, record in enumerate(datasets.load_dataset(path, config, split=split, streaming=True)):
            if max_docs and i >= max_docs:
                return
            text = detok(record[field])
            if text.strip():
                yield text
    except Exception as err:  # the hub raises many types; one line is enough
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LtmError(f"cannot load zero-shot set {name!r} ({path}): {reason}") from None
