"""Zero-shot sets: detokenisers undo each corpus's own tokenisation; the registry matches the schema."""
from __future__ import annotations

import importlib.util

import pytest
import yaml

from ltm.data import zeroshot
from ltm.errors import LtmError

from conftest import ROOT


def test_wikitext_detokenizer():
    raw = "The team won 3 @,@ 000 @-@ point games in 1 @.@ 5 hours . = = History = = It 's ( rarely ) seen ."
    assert zeroshot.wikitext_detokenize(raw) == \
        "The team won 3,000-point games in 1.5 hours. == History == It's (rarely) seen."


def test_ptb_detokenizer():
    raw = "the company 's shares rose N % \\/ year and it does n't plan cuts ."
    assert zeroshot.ptb_detokenize(raw) == "the company's shares rose N% / year and it doesn't plan cuts."


def test_lm1b_and_lambada_detokenizers():
    assert zeroshot.lm1b_detokenize('He said " yes " , and they left .') == 'He said "yes", and they left.'
    assert zeroshot.lambada_detokenize("  “Go,” she said. ") == '"Go," she said.'


def test_registry_matches_the_params_schema():
    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    allowed = schema["properties"]["data"]["properties"]["corpus"]["properties"]["zeroshot"]["items"]["enum"]
    assert sorted(allowed) == sorted(zeroshot.SETS)


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_without_datasets_a_clear_error():
    with pytest.raises(LtmError, match="pip install 'ltm\\[hf\\]'"):
        next(zeroshot.zeroshot_documents("wikitext2"))
    with pytest.raises(LtmError, match="unknown zero-shot set"):
        next(zeroshot.zeroshot_documents("nope"))
