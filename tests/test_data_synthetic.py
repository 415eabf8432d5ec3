"""The synthetic corpus: a seeded topic process whose exact log-probability is known."""
import json
import math

import numpy as np
import pytest

from ltm.data.corpus import build_corpus
from ltm.data.synthetic import DocumentScorer
from ltm.errors import LtmError

from settings import data_settings, topic_process

SMALL = topic_process(documents=50, topics=3, words=6, words_per_doc=5, seed=3)


def nll_given_topic(scorer: DocumentScorer, text: str) -> float:
    """-log p(doc | its most likely topic): what a model that knows the topic pays (about)."""
    ids = [scorer.index[w] for w in text.split(" ")]
    return float(-scorer.log_probs[:, ids].sum(axis=1).max())


def test_process_is_seeded_and_documents_parse_back():
    a, b = list(SMALL.sample()), list(SMALL.sample())
    assert a == b and len(a) == 50
    vocab = set(SMALL.vocabulary())
    assert len(vocab) == 6
    assert all(len(d.split(" ")) == 5 and set(d.split(" ")) <= vocab for d in a)
    assert list(topic_process(documents=50, topics=3, words=6, words_per_doc=5, seed=4).sample()) != a


def test_exact_log_probability_matches_direct_summation():
    scorer = DocumentScorer(SMALL)
    probs = np.exp(SMALL.log_topic_probs())
    assert np.allclose(probs.sum(axis=1), 1.0)
    index = {w: i for i, w in enumerate(SMALL.vocabulary())}
    for doc in list(SMALL.sample())[:10]:
        ids = [index[w] for w in doc.split(" ")]
        direct = sum(np.prod(probs[k, ids]) / SMALL.topics for k in range(SMALL.topics))
        assert scorer.nll(doc) == pytest.approx(-math.log(direct), rel=1e-12)
        assert nll_given_topic(scorer, doc) <= scorer.nll(doc) + math.log(SMALL.topics) + 1e-9
    assert scorer.nll("not a document") == math.inf


def test_all_documents_of_the_process_sum_to_probability_one():
    tiny = topic_process(topics=2, words=3, words_per_doc=3, seed=1)
    scorer, vocab = DocumentScorer(tiny), tiny.vocabulary()
    total = sum(math.exp(-scorer.nll(f"{a} {b} {c}")) for a in vocab for b in vocab for c in vocab)
    assert total == pytest.approx(1.0, rel=1e-12)


def test_corpus_manifest_records_the_ground_truth(tmp_path):
    synthetic = {**data_settings("corpus")["synthetic"], "documents": 200, "words_per_doc": 20}
    cfg = data_settings("corpus", source="synthetic", val_fraction=0.2, seed=0, synthetic=synthetic)
    manifest = build_corpus(cfg, tmp_path / "corpus")
    truth = manifest["ground_truth"]["splits"]
    assert set(truth) == {"train", "val"}
    assert truth["train"]["documents"] + truth["val"]["documents"] == 200
    assert truth["val"]["bytes"] == manifest["splits"]["val"]["bytes"]
    docs = list(topic_process(documents=200, words_per_doc=20).sample())
    scorer = DocumentScorer(topic_process(documents=200, words_per_doc=20))
    assert truth["train"]["nats"] + truth["val"]["nats"] == pytest.approx(sum(map(scorer.nll, docs)))
    assert 0 < truth["val"]["bpb_stderr"] < truth["val"]["bpb"]
    assert json.loads((tmp_path / "corpus" / "manifest.json").read_text())["source"]["kind"] == "synthetic"


def test_bad_process_settings_are_one_line_errors():
    with pytest.raises(LtmError, match="topic_weight"):
        topic_process(topic_weight=1.5)
    with pytest.raises(LtmError, match="words must be at most"):
        topic_process(words=10**6)


@pytest.mark.usefixtures("one_thread")
def test_no_bound_goes_below_the_ground_truth(tmp_path, monkeypatch):
    """Tiny AR and LTM runs on the synthetic corpus: exact NLL and LTM bounds stay above the truth."""
    from ltm.stages.corpus import corpus
    from ltm.stages.evaluate import evaluate
    from ltm.stages.shards import shards
    from ltm.stages.tokenizer import tokenizer
    from ltm.stages.train import train

    from conftest import write_params

    params = str(write_params(tmp_path, {
        "data": {"corpus": {"source": "synthetic", "val_fraction": 0.2,
                            "synthetic": {"documents": 400, "words": 64, "words_per_doc": 30}}},
        "eval": {"splits": ["val"], "t_curve": [0, 3]}}))
    monkeypatch.chdir(tmp_path)
    corpus(params, "data/corpus")
    tokenizer(params, "data/corpus", "data/tokenizer")
    shards(params, "data/corpus", "data/tokenizer", "data/shards")
    for run in ("ar-tiny", "ltm-tiny"):
        train(params, run, "data/shards", f"runs/{run}")
        rec = evaluate(params, run, f"runs/{run}/model", "data/shards", "data/tokenizer", f"eval/{run}")["splits"]["val"]
        truth = rec["ground_truth"]
        floor = truth["bpb"] - 3 * truth["bpb_stderr"]
        bounds = [rec["exact"]["bpb"]] if run == "ar-tiny" else [rec["iwae"]["bpb"], rec["fresh_elbo"]["bpb"]]
        assert all(b > floor for b in bounds), (run, bounds, truth)
        if run == "ltm-tiny":
            assert "latents_carry_information" in rec["latent_usage"]


def test_process_defaults_are_the_params_yaml_values():
    """One set of defaults: the dataclass and params.yaml's data.corpus.synthetic must not disagree."""
    import dataclasses

    import yaml

    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["corpus"]["synthetic"]
    assert params == dataclasses.asdict(topic_process())
