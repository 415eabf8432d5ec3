"""A corpus with known ground truth: documents generated from a document-level latent topic.

Generative process (seeded, offline). A vocabulary of `words` pseudo-words; `topics` topic
distributions over it, each a mixture p_k = (1 - topic_weight) * background + topic_weight * own_k,
with the background drawn from a symmetric Dirichlet(`concentration`) and every own_k from a sparse
Dirichlet(`topic_concentration`): most words are background, a few per topic are the topic's own. A document draws
its topic k uniformly, then `words_per_doc` words i.i.d. from p_k, joined by single spaces.

Because the topic is shared by the whole document but a word or two say little about it, a model that
sees only a short window cannot know the topic, while a model with a per-document latent can: the
paper's mechanism, on data where the answer is known. The exact log-probability of a document is
    log p(doc) = logsumexp_k [ -log K + sum_t log p_k(w_t) ]
(its length is fixed, so stopping costs nothing). It is a function of the text alone, so the corpus
stage records the exact total per split: no model's expected cross-entropy on the same text can be
lower (Gibbs' inequality; a model scoring a document piece without its start only knows less).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
from scipy.special import logsumexp

from ltm.config import FromParams
from ltm.errors import LtmError

_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class TopicProcess(FromParams):
    """The generating process of the synthetic corpus (params data.corpus.synthetic)."""
    documents: int
    topics: int
    words: int
    words_per_doc: int
    concentration: float  # of the background distribution
    topic_concentration: float  # of each topic's own distribution: small = few words per topic
    topic_weight: float
    seed: int

    def __post_init__(self) -> None:
        for name in ("documents", "topics", "words", "words_per_doc"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LtmError(f"data.corpus.synthetic.{name} must be a positive integer, got {value!r}")
        if self.words > len(_ONSETS) ** 2 * len(_VOWELS) ** 2:
            raise LtmError(f"data.corpus.synthetic.words must be at most {len(_ONSETS) ** 2 * len(_VOWELS) ** 2}")
        for name in ("concentration", "topic_concentration"):
            if not getattr(self, name) > 0:
                raise LtmError(f"data.corpus.synthetic.{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.topic_weight <= 1:
            raise LtmError(f"data.corpus.synthetic.topic_weight must be in [0, 1], got {self.topic_weight!r}")

    def vocabulary(self) -> list[str]:
        """Two-syllable pseudo-words: distinct, lowercase ASCII, no spaces."""
        syllables = [c + v for c, v in itertools.product(_ONSETS, _VOWELS)]
        return [a + b for a, b in itertools.islice(itertools.product(syllables, syllables), self.words)]

    def log_topic_probs(self) -> np.ndarray:
        """log p_k(w), shape (topics, words)."""
        rng = np.random.default_rng([self.seed, 0])
        background = rng.dirichlet(np.full(self.words, self.concentration))
        own = rng.dirichlet(np.full(self.words, self.topic_concentration), size=self.topics)
        return np.log((1 - self.topic_weight) * background + self.topic_weight * own)

    def sample(self) -> Iterator[str]:
        vocab = np.array(self.vocabulary())
        probs = np.exp(self.log_topic_probs())
        rng = np.random.default_rng([self.seed, 1])
        for _ in range(self.documents):
            k = rng.integers(self.topics)
            yield " ".join(vocab[rng.choice(self.words, size=self.words_per_doc, p=probs[k])])

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic", "process": "topic mixture", **asdict(self)}


class DocumentScorer:
    """Exact -log p(doc) in nats for documents of one process (parsed back from their text)."""

    def __init__(self, process: TopicProcess):
        self.process = process
        self.index = {w: i for i, w in enumerate(process.vocabulary())}
        self.log_probs = process.log_topic_probs()
        self.log_prior = -math.log(process.topics)

    def nll(self, text: str) -> float:
        words = text.split(" ")
        if len(words) != self.process.words_per_doc or any(w not in self.index for w in words):
            return math.inf  # not a document of this process: probability zero
        ids = np.fromiter((self.index[w] for w in words), dtype=np.int64, count=len(words))
        return float(-logsumexp(self.log_prior + self.log_probs[:, ids].sum(axis=1)))


class GroundTruth:
    """Per-split running totals of the exact NLL, for the corpus manifest."""

    def __init__(self, process: TopicProcess):
        self.scorer = DocumentScorer(process)
        self.totals: dict[str, dict[str, float]] = {}

    def add(self, split: str, text: str) -> None:
        nll = self.scorer.nll(text)
        t = self.totals.setdefault(split, {"documents": 0, "bytes": 0, "nats": 0.0, "nats_sq": 0.0})
        t["documents"] += 1
        t["bytes"] += len(text.encode("utf-8"))
        t["nats"] += nll
        t["nats_sq"] += nll * nll

    def summary(self) -> dict[str, Any]:
        out = {}
        for split, t in sorted(self.totals.items()):
            n, mean = t["documents"], t["nats"] / t["documents"]
            var = max(0.0, t["nats_sq"] / n - mean * mean) * n / max(1, n - 1)
            per_byte = t["nats"] / t["bytes"]
            out[split] = {
                "documents": n, "bytes": t["bytes"], "nats": t["nats"],
                "nats_per_document": mean,
                "bpb": per_byte / math.log(2),
                # the documents are i.i.d., so the mean over them has this standard error
                "bpb_stderr": math.sqrt(var / n) * n / t["bytes"] / math.log(2),
            }
        return {"note": "exact -log p(text) of the generating process, summed over the split's documents; "
                        "no model's expected cross-entropy of the same text can be lower", "splits": out}
