"""The evaluate stage: metrics for every split with their protocol, and bad checkpoints refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ltm.errors import LtmError
from ltm.stages.evaluate import evaluate
from ltm.stages.train import train

from conftest import flip_a_digit
from test_train import in_dir, workspace


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    ws = workspace(tiny_data, tmp_path_factory.mktemp("eval"))
    for run in ("ltm-tiny", "ar-tiny"):
        in_dir(ws, train, "params.yaml", run, "data/shards", f"runs/{run}")
    return ws


def run_eval(ws: Path, run: str, model: str | None = None, out: str | None = None) -> dict:
    return in_dir(ws, evaluate, "params.yaml", run, model or f"runs/{run}/model", "data/shards",
                  "data/tokenizer", out or f"results/eval/{run}")


def test_ltm_metrics_carry_bounds_and_protocol(trained):
    m = run_eval(trained, "ltm-tiny")
    assert set(m["splits"]) == {"val", "heldout-lee"}
    for rec in m["splits"].values():
        p = rec["protocol"]
        assert p["T_eval"] == 3 and p["K"] == 4 and p["tokens"] == 32 * 32
        # IWAE (K samples) is never looser than the fresh-noise ELBO on the same draws, in expectation;
        # here both are computed from the same K draws, where it holds exactly by Jensen
        assert rec["iwae"]["nelbo"] <= rec["fresh_elbo"]["nelbo"] + 1e-9
        assert rec["fresh_elbo"]["nelbo"] == pytest.approx(rec["fresh_elbo"]["nll"] + rec["fresh_elbo"]["kl"])
        assert "not a bound" in rec["paper"]["note"]
    curve = (trained / "results/eval/ltm-tiny/t_curve.tsv").read_text().splitlines()
    assert curve[0].split("\t")[0] == "T_eval" and [r.split("\t")[0] for r in curve[1:]] == ["0", "1", "3"]
    # more inference steps give a lower bound on this fixed batch with the same seeds (the points share
    # the initialisation and noise); not a theorem (AdamW is no descent method) but what T_eval is for
    header = curve[0].split("\t")
    iwae = [float(r.split("\t")[header.index("iwae_nelbo")]) for r in curve[1:]]
    assert [float(r.split("\t")[header.index("bound")]) for r in curve[1:]] == iwae  # what `dvc plots` shows
    assert all(b < a for a, b in zip(iwae, iwae[1:])), iwae
    # same checkpoint + params -> identical numbers
    assert run_eval(trained, "ltm-tiny", out="results/eval/ltm-tiny-again") == m


def test_ar_metrics_are_exact_nll(trained):
    m = run_eval(trained, "ar-tiny")
    rec = m["splits"]["val"]
    assert rec["protocol"]["T_eval"] == 0 and rec["protocol"]["K"] is None
    assert rec["exact"]["ppl"] == pytest.approx(2.718281828 ** rec["exact"]["nll"])
    record = json.loads((trained / "results/eval/ar-tiny/lineage.json").read_text())
    assert set(record["inputs"]) == {"model", "shards", "tokenizer"}


def test_truncated_checkpoint_is_refused_and_old_metrics_survive(trained, tmp_path):
    import shutil

    bad = trained / "runs/bad/model"
    shutil.copytree(trained / "runs/ar-tiny/model", bad)
    data = (bad / "model.pt").read_bytes()
    (bad / "model.pt").write_bytes(data[: len(data) // 2])
    out = trained / "runs/bad/eval"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"old": 1}')
    with pytest.raises(LtmError, match="altered or truncated"):
        run_eval(trained, "ar-tiny", model="runs/bad/model", out="runs/bad/eval")
    assert json.loads((out / "metrics.json").read_text()) == {"old": 1}


def test_one_flipped_byte_in_the_weights_is_refused(trained):
    import shutil

    bad = trained / "runs/flipped/model"
    shutil.copytree(trained / "runs/ltm-tiny/model", bad)
    data = bytearray((bad / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a tensor: torch would load it and score different numbers
    (bad / "model.pt").write_bytes(bytes(data))
    with pytest.raises(LtmError, match="does not match the sha256 in its config.json"):
        run_eval(trained, "ltm-tiny", model="runs/flipped/model", out="runs/flipped/eval")
    assert not (trained / "runs/flipped/eval").exists()


def test_checkpoint_of_another_vocabulary_is_refused(trained):
    import shutil

    other = trained / "runs/other/model"
    shutil.copytree(trained / "runs/ar-tiny/model", other, dirs_exist_ok=True)
    (other / "lineage.json").unlink()  # a hand-made config: no record to check it against
    config = json.loads((other / "config.json").read_text())
    config["model"]["vocab_size"] += 7
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(LtmError, match="model.pt does not match its config.json"):
        run_eval(trained, "ar-tiny", model="runs/other/model", out="runs/other/eval")


def test_every_artifact_read_downstream_is_checked_against_its_lineage_record(trained, capsys, monkeypatch):
    import shutil

    from ltm.cli import main
    from ltm.report import read_json_file
    from ltm.stages.scaling import collect_records

    ws = trained / "verify"
    for run in ("ltm-tiny", "ar-tiny"):
        shutil.copytree(trained / f"runs/{run}", ws / f"runs/{run}", ignore=shutil.ignore_patterns(".ltm-lock"))
    model = ws / "runs/ar-tiny/model"
    flip_a_digit(model / "config.json")
    with pytest.raises(LtmError, match=r"config.json was changed after stage train wrote it .*rerun that stage"):
        run_eval(trained, "ar-tiny", model=str(model), out=str(ws / "eval-bad"))
    assert not (ws / "eval-bad").exists()

    run_eval(trained, "ltm-tiny", out=str(ws / "results/eval/ltm-tiny"))
    params = json.loads(json.dumps(__import__("yaml").safe_load((trained / "params.yaml").read_text())))
    params["runs"] = {"ltm-tiny": params["runs"]["ltm-tiny"]}
    params["sweep"] = {}
    assert collect_records(params, ws / "results/eval")  # untouched: accepted
    for name in ("metrics.json", "t_curve.tsv"):
        target = ws / "results/eval/ltm-tiny" / name
        good = target.read_bytes()
        flip_a_digit(target)
        with pytest.raises(LtmError, match=f"{name} was changed after stage evaluate wrote it"):
            collect_records(params, ws / "results/eval")
        monkeypatch.chdir(ws)
        assert main(["lineage", f"results/eval/ltm-tiny/{name}"]) == 0
        assert f"!! output results/eval/ltm-tiny/{name} changed since its stage wrote it" in capsys.readouterr().out
        target.write_bytes(good)

    train_metrics = ws / "runs/ltm-tiny/metrics.json"
    read_json_file(train_metrics, "training metrics")
    flip_a_digit(train_metrics)
    with pytest.raises(LtmError, match="metrics.json was changed after stage train wrote it"):
        read_json_file(train_metrics, "training metrics")


def test_missing_or_empty_eval_split_is_one_line_error(trained):
    import yaml

    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["eval"]["splits"] = ["nope"]
    (trained / "bad.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "ltm.cli", "evaluate", "--params", "bad.yaml", "--run", "ar-tiny"],
                         cwd=trained, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("ltm: error:") and run.stderr.count("\n") == 1 and "nope" in run.stderr


def test_diffusion_baseline_trains_and_is_scored_by_its_bound(trained):
    metrics = in_dir(trained, train, "params.yaml", "mdlm-tiny", "data/shards", "runs/mdlm-tiny")
    assert metrics["val_loss_kind"] == "nelbo_diffusion_bound"
    log = (trained / "runs/mdlm-tiny/train_log.tsv").read_text().splitlines()
    header = log[0].split("\t")
    val = [float(r.split("\t")[header.index("val_loss")]) for r in log[1:] if r.split("\t")[header.index("val_loss")]]
    assert val[0] - val[-1] > 0.5, val  # the bound decreases with training on the builtin corpus
    m = run_eval(trained, "mdlm-tiny")
    rec = m["splits"]["val"]
    assert rec["family"] == "diffusion" and rec["protocol"]["diffusion_samples"] == 8
    assert rec["diffusion_bound"]["ppl"] == pytest.approx(2.718281828 ** rec["diffusion_bound"]["nelbo"])
    assert "exact" not in rec and "iwae" not in rec  # a bound of its own kind, never mixed


@pytest.mark.parametrize("run", ["ltm-tiny", "ar-tiny", "mdlm-tiny"])
def test_generate_cli_for_every_family(trained, run):
    if not (trained / f"runs/{run}/model").exists():
        in_dir(trained, train, "params.yaml", run, "data/shards", f"runs/{run}")
    for extra in ([], ["--prompt", "The river"]):
        out = subprocess.run([sys.executable, "-m", "ltm.cli", "generate", "--run", run, "--n", "2", "--max-new", "6",
                              "--diffusion-steps", "4", "--out", "gen.json", *extra], cwd=trained,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        record = json.loads((trained / "gen.json").read_text())
        assert record["family"] == ("diffusion" if run == "mdlm-tiny" else run.split("-")[0])
        assert len(record["samples"]) == 2 and all(isinstance(t, str) for t in record["samples"])
        if extra and run == "ltm-tiny":
            assert record["z"] == "fitted on the prompt"


def test_fewshot_stage_records_protocol_and_is_deterministic(trained):
    import shutil

    from ltm.stages.fewshot import fewshot

    # the tiny test context (32 tokens) cannot hold a prompt: the same weights with a longer context can
    long = trained / "runs/ltm-long/model"
    shutil.copytree(trained / "runs/ltm-tiny/model", long, dirs_exist_ok=True)
    (long / "lineage.json").unlink()  # an edited config is no longer what train wrote
    config = json.loads((long / "config.json").read_text())
    config["model"]["seq_len"] = 256
    (long / "config.json").write_text(json.dumps(config))
    a = in_dir(trained, fewshot, "params.yaml", "ltm-tiny", "runs/ltm-long/model", "data/tokenizer", "results/fs/a")
    b = in_dir(trained, fewshot, "params.yaml", "ltm-tiny", "runs/ltm-long/model", "data/tokenizer", "results/fs/b")
    assert a == b
    assert set(a["by_k"]) == {"0", "1"} and a["protocol"]["n"] == 5 and a["protocol"]["T"] == 3
    for r in a["by_k"].values():
        assert 0 <= r["solved"] <= r["problems"] == 20 and r["pass_at_n"] == r["solved"] / 20
    samples = json.loads((trained / "results/fs/a/samples.json").read_text())
    short = in_dir(trained, fewshot, "params.yaml", "ltm-tiny", "runs/ltm-tiny/model", "data/tokenizer", "results/fs/c")
    assert all("no room in the context" in r["skipped"] for r in short["by_k"].values())
    assert all(len(rec["completions"]) == 5 for recs in samples.values() for rec in recs)


@pytest.mark.parametrize("run", ["ltm-tiny", "mdlm-tiny"])
def test_generation_stage_scores_samples_with_the_ar_judge(trained, run):
    from ltm.stages.generation import generation

    if not (trained / f"runs/{run}/model").exists():
        in_dir(trained, train, "params.yaml", run, "data/shards", f"runs/{run}")
    m = in_dir(trained, generation, "params.yaml", run, f"runs/{run}/model", "runs/ar-tiny/model", "data/shards",
               "data/tokenizer", f"results/generation/{run}")
    assert m["judge"] == "ar-tiny" and set(m["modes"]) == {"unconditional", "conditional"}
    for mode in m["modes"].values():
        assert mode["gen_ppl"] > 1 and mode["unigram_entropy"] > 0
    samples = json.loads((trained / f"results/generation/{run}/samples.json").read_text())
    assert len(samples["conditional"]) == 4
    with pytest.raises(LtmError, match="judge must be an AR run"):
        in_dir(trained, generation, "params.yaml", run, f"runs/{run}/model", f"runs/{run}/model", "data/shards",
               "data/tokenizer", "results/generation/bad")
