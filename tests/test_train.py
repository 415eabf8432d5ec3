"""The slow loop: learning, exact resume after SIGKILL, SIGTERM, hash refusal, non-finite guard."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ltm.config import load_params
from ltm.errors import LtmError
from ltm.runs import resolve_run
from ltm.runtime import Runtime
from ltm.stages.train import train
from ltm.trainer import Trainer

from conftest import write_params


def workspace(tiny_data: Path, tmp_path: Path, overrides: dict | None = None) -> Path:
    """A fresh folder that shares the session's data and has its own params and runs/."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").symlink_to(tiny_data / "data")
    write_params(tmp_path, overrides)
    return tmp_path


def run_cli(ws: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ltm.cli", *args], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def in_dir(ws: Path, fn, *args, **kwargs):
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        return fn(*args, **kwargs)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("run", ["ar-tiny", "ltm-tiny"])
def test_tiny_models_learn(tiny_data, tmp_path, run):
    ws = workspace(tiny_data, tmp_path)
    metrics = in_dir(ws, train, "params.yaml", run, "data/shards", f"runs/{run}")
    rows = [line.split("\t") for line in (ws / f"runs/{run}/train_log.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    val = [float(r[header.index("val_loss")]) for r in rows if r[header.index("val_loss")]]
    assert val[0] - val[-1] > 0.5, val  # clearly lower than at step 0 (log 512 = 6.24 nats at start)
    assert metrics["val_loss"] == pytest.approx(val[-1], rel=1e-5)
    assert metrics["steps"] == 20 and metrics["tokens"] == 20 * 512
    assert metrics["val_loss_kind"] == ("nelbo_optim_noise" if run == "ltm-tiny" else "nll_exact")
    assert (ws / f"runs/{run}/model/model.pt").is_file()
    state = torch.load(ws / f"runs/{run}/model/model.pt", weights_only=True)
    assert any("cross" in k for k in state) == (run == "ltm-tiny")
    # compute accounting: (T + 1)(6P + 6LdS), and the measured count within a factor of the formula
    T = 3 if run == "ltm-tiny" else 0
    P, L, d, S = metrics["params"], 2, 32, 32
    assert metrics["flops_per_token_formula"] == (T + 1) * (6 * P + 6 * L * d * S)
    assert 0.5 < metrics["flops_per_token_measured"] / metrics["flops_per_token_formula"] < 1.5
    if run == "ltm-tiny":
        assert metrics["inner_steps"] == 3 and metrics["n_latents"] == 4
        assert all(float(r[header.index("nelbo_last")]) < float(r[header.index("nelbo_first")])
                   for r in rows[1:])  # the fast loop improves the NELBO at every logged step


def test_micro_batch_is_a_hardware_knob(tiny_data, tmp_path):
    """Gradient accumulation over micro-batches gives the same run as one big batch."""
    short = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 4}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}}}
    whole = workspace(tiny_data, tmp_path / "whole", short)
    micro = workspace(tiny_data, tmp_path / "micro", {**short, "runtime": {"micro_batch": 4}})
    m1 = in_dir(whole, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    m2 = in_dir(micro, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    assert m1["run_hash"] == m2["run_hash"]
    a, b = final_weights(whole, "ltm-tiny"), final_weights(micro, "ltm-tiny")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
    assert m1["val_loss"] == pytest.approx(m2["val_loss"], rel=1e-4)


def test_bf16_autocast_on_cpu_is_a_recorded_knob_that_changes_numbers_slightly(tiny_data, tmp_path):
    from ltm.device import autocast_dtype
    from ltm.runtime import Runtime

    try:
        autocast_dtype(Runtime("cpu", 0, 0, False, "bf16", False), torch.device("cpu"))
    except LtmError as exc:
        pytest.skip(str(exc))
    short = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 4}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}}}
    fp32 = workspace(tiny_data, tmp_path / "fp32", short)
    bf16 = workspace(tiny_data, tmp_path / "bf16", {**short, "runtime": {"precision": "bf16"}})
    m1 = in_dir(fp32, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    m2 = in_dir(bf16, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    assert (m1["autocast"], m2["autocast"]) == (None, "bfloat16")
    assert m1["run_hash"] == m2["run_hash"]  # a hardware setting, recorded in the metrics instead
    a, b = final_weights(fp32, "ltm-tiny"), final_weights(bf16, "ltm-tiny")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert m2["val_loss"] == pytest.approx(m1["val_loss"], rel=2e-2)


def test_the_fused_fast_loop_loss_is_a_recorded_knob_equal_to_float32_rounding(tiny_data, tmp_path):
    """runtime.fused_loss: the fast loop's output layer and loss in one pass; the trained weights follow
    the plain run's closely (the fit's gradients differ by rounding), and the run hash is the same."""
    short = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 4}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}}}
    plain = workspace(tiny_data, tmp_path / "plain", short)
    fused = workspace(tiny_data, tmp_path / "fused", {**short, "runtime": {"fused_loss": True}})
    m1 = in_dir(plain, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    m2 = in_dir(fused, train, "params.yaml", "ltm-tiny", "data/shards", "runs/ltm-tiny")
    assert (m1["fused_loss"], m2["fused_loss"]) == (False, True)
    assert m1["run_hash"] == m2["run_hash"]
    a, b = final_weights(plain, "ltm-tiny"), final_weights(fused, "ltm-tiny")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)
    assert m2["val_loss"] == pytest.approx(m1["val_loss"], rel=1e-3)


def final_weights(ws: Path, run: str) -> dict:
    return torch.load(ws / f"runs/{run}/model/model.pt", weights_only=True)


def test_sigkill_then_resume_is_bitwise_identical(tiny_data, tmp_path):
    run = "ltm-tiny"
    ref = workspace(tiny_data, tmp_path / "ref")
    assert run_cli(ref, "train", "--run", run).wait() == 0

    ws = workspace(tiny_data, tmp_path / "killed")
    proc = run_cli(ws, "train", "--run", run)
    ckpts = ws / "runs" / run / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpts.glob("*/step-00000005.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpts.glob("*/step-*.pt")), "the run never wrote a checkpoint"
    assert not (ws / "runs" / run / "model").exists(), "killed too late to test resume"
    resumed = run_cli(ws, "train", "--run", run)
    out = resumed.communicate()[0]
    assert resumed.returncode == 0, out
    assert "resumed from" in out
    a, b = final_weights(ref, run), final_weights(ws, run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a = (ref / "runs" / run / "train_log.tsv").read_text().splitlines()
    log_b = (ws / "runs" / run / "train_log.tsv").read_text().splitlines()
    drop_rate = lambda lines: [l.rsplit("\t", 1)[0] for l in lines]  # tokens/s differs, nothing else
    assert drop_rate(log_a) == drop_rate(log_b)


def test_sigterm_saves_a_checkpoint_and_exits(tiny_data, tmp_path):
    ws = workspace(tiny_data, tmp_path, {"train": {"save_every": 1000}})
    proc = run_cli(ws, "train", "--run", "ar-tiny")
    time.sleep(0.5)
    deadline = time.time() + 60
    tb = ws / "runs" / "ar-tiny" / "tb"
    while time.time() < deadline and not tb.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate()[0]
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert list((ws / "runs" / "ar-tiny" / "checkpoints").glob("*/step-*.pt"))


def test_refuses_checkpoint_with_other_params(tiny_data, tmp_path):
    ws = workspace(tiny_data, tmp_path / "a")
    in_dir(ws, train, "params.yaml", "ar-tiny", "data/shards", "runs/ar-tiny")
    ckpt = sorted((ws / "runs/ar-tiny/checkpoints").glob("*/step-*.pt"))[-1]
    other = workspace(tiny_data, tmp_path / "b", {"train": {"lr": 1e-3}})
    with pytest.raises(LtmError, match="refusing to resume"):
        in_dir(other, train, "params.yaml", "ar-tiny", "data/shards", "runs/ar-tiny", resume=str(ckpt))
    # auto-resume with other params never picks up the first run's checkpoints
    shutil.copytree(ws / "runs", other / "runs")
    metrics = in_dir(other, train, "params.yaml", "ar-tiny", "data/shards", "runs/ar-tiny")
    assert metrics["steps"] == 20
    assert len(list((other / "runs/ar-tiny/checkpoints").iterdir())) == 2


def test_non_finite_loss_stops_before_the_step(tiny_data, tmp_path):
    ws = workspace(tiny_data, tmp_path)
    params = load_params(ws / "params.yaml")
    trainer = in_dir(ws, Trainer, resolve_run(params, "ltm-tiny"), ws / "data/shards", ws / "runs/x",
                     Runtime.from_params(params["runtime"]))
    with torch.no_grad():
        trainer.model.norm.weight.fill_(float("nan"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(LtmError, match="non-finite loss at step 0"):
        trainer.train_step()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).all() for k in before)
    assert trainer.opt.state == {} or all(not s for s in trainer.opt.state.values())


def test_lineage_walks_from_model_to_corpus(tiny_data, tmp_path):
    ws = workspace(tiny_data, tmp_path)
    in_dir(ws, train, "params.yaml", "ar-tiny", "data/shards", "runs/ar-tiny")
    out = subprocess.run([sys.executable, "-m", "ltm.cli", "lineage", "runs/ar-tiny/model"], cwd=ws,
                         capture_output=True, text=True, check=True).stdout
    stages = [line.split("stage=")[1].split()[0] for line in out.splitlines() if "stage=" in line]
    assert stages == ["train", "shards", "corpus", "tokenizer"]  # corpus is shown once
    record = json.loads((ws / "runs/ar-tiny/model/lineage.json").read_text())
    assert record["params"]["runs.ar-tiny"]["model"] == "ar-tiny"
    assert "changed since" not in out


def test_two_rank_ddp_matches_one_process(tiny_data, tmp_path):
    """torchrun with 2 CPU ranks (gloo) trains the same global batches to the same weights."""
    short = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 4}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}}}
    single = workspace(tiny_data, tmp_path / "single", short)
    assert run_cli(single, "train", "--run", "ltm-tiny").wait() == 0
    ddp = workspace(tiny_data, tmp_path / "ddp", short)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "--", str(Path(sys.executable).parent / "ltm"), "train", "--run", "ltm-tiny"], cwd=ddp, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    a, b = final_weights(single, "ltm-tiny"), final_weights(ddp, "ltm-tiny")
    # posterior noise is seeded per global row and gradients are averaged over ranks, so only the
    # order of floating-point sums differs
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
    log = (ddp / "runs/ltm-tiny/train_log.tsv").read_text().splitlines()
    assert len(log) >= 2  # rank 0 wrote the log


def test_a_fresh_start_begins_a_fresh_tensorboard_history(tiny_data, tmp_path):
    ws = workspace(tiny_data, tmp_path)
    for _ in range(2):  # the second run starts over (resume never): its history must not mix with the first
        in_dir(ws, train, "params.yaml", "ar-tiny", "data/shards", "runs/ar-tiny", resume="never")
    events = list((ws / "runs/ar-tiny/tb").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
