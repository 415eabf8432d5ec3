"""The demo stage: tiny LTM and AR on the synthetic corpus, scored next to its exact entropy."""
import json

import pytest

from conftest import write_params
from ltm.errors import LtmError
from ltm.report_latents import demo_section
from ltm.stages.demo import demo

pytestmark = pytest.mark.usefixtures("one_thread")

DEMO = {"data": {"corpus": {"synthetic": {"documents": 300, "words": 64, "words_per_doc": 30}}},
        "demo": {"models": ["ltm-tiny", "ar-tiny"], "tokens": 512 * 8, "window": 4, "t_eval": [3, 8]}}


def test_demo_scores_both_families_against_the_truth(tmp_path, monkeypatch):
    params = str(write_params(tmp_path, DEMO))
    monkeypatch.chdir(tmp_path)
    m = demo(params, "results/demo")
    assert json.loads((tmp_path / "results/demo/metrics.json").read_text()) == json.loads(json.dumps(m))
    assert (tmp_path / "results/demo/lineage.json").is_file()
    assert not (tmp_path / "data").exists()  # its data and models stay inside the stage
    truth = m["ground_truth"]
    assert m["runs"]["ltm-tiny"]["window"] == m["runs"]["ar-tiny"]["window"] == 4
    assert sorted(m["runs"]["ltm-tiny"]["by_T_eval"]) == ["3", "8"]
    floor = truth["bpb"] - 3 * truth["bpb_stderr"]
    for run in m["runs"].values():
        for rec in run["by_T_eval"].values():
            assert rec["ground_truth"]["bpb"] == truth["bpb"]
            bpb = rec["exact"]["bpb"] if run["family"] == "ar" else rec["iwae"]["bpb"]
            assert bpb > floor
    text = demo_section(m)
    assert f"{truth['bpb']:.4g}" in text and "ltm-tiny" in text and "AR baseline's exact NLL" in text


def test_demo_refuses_an_unknown_or_diffusion_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LtmError, match="unknown model preset"):
        demo(str(write_params(tmp_path, {"demo": {"models": ["nope"]}})), "out")
    with pytest.raises(LtmError, match="diffusion"):
        demo(str(write_params(tmp_path, {"demo": {"models": ["mdlm-tiny"]}})), "out")
    assert not (tmp_path / "out").exists()
