"""The cluster path, run on a real one-node SLURM cluster (workflow/slurm/local_cluster.py, started once here):
the sweep through `snakemake --profile workflow/profiles/slurm` gives the local run's results, a cancelled
training job is retried and resumes to the same weights, a failed job leaves the previous outputs, and DDP
jobs of 2 ranks (workflow/slurm/ddp.sbatch, both layouts) match one process. What ran where is read from the
controller's own job records (`scontrol show job`), not from Snakemake's log. Skips without root or SLURM.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from test_pipeline import BIN, edit_params, project_copy
from test_train import final_weights

_spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "workflow/slurm/local_cluster.py")
local_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_cluster)

WHY_NOT = local_cluster.missing()
pytestmark = [pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""), pytest.mark.slow]

LTM, AR = "ltm-tiny-D1024-T1-Z4", "ar-tiny-D30720"  # the grid: one LTM point, one AR point long enough to cancel
SWEEP = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 4}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}},
         "sweep": {"ltm": {"models": ["ltm-tiny"], "tokens": [1024], "inner_steps": [1], "n_latents": [4]},
                   "ar": {"models": ["ar-tiny"], "tokens": [512 * 60]},
                   "diffusion": {"models": ["mdlm-tiny"], "tokens": []}},
         "train": {"eval_every": 3, "save_every": 3},
         "data": {"corpus": {"source": "files", "paths": ["inputs/*.txt"]}}, "eval": {"splits": ["val"]}}
TARGETS = [f"results/eval/{run}/metrics.json" for run in (LTM, AR)]
SLURM_PROFILE = ["--profile", "workflow/profiles/slurm", "--workflow-profile", "workflow/slurm/local-profile"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = local_cluster.Cluster(tmp_path_factory.mktemp("slurm"), cpus=2)
    c.start()
    yield c
    c.stop()


def cluster_env(c) -> dict:
    env = {**os.environ, **c.env()}
    env["PATH"] = os.pathsep.join([str(c.root / "bin"), BIN, os.environ.get("PATH", "")])
    return env


def run(c, ws: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ws, env=cluster_env(c), capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _records(text: str) -> list[dict]:
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines() if line.strip()]


def jobs(c, ws: Path, rule: str | None = None, run_name: str | None = None) -> list[dict]:
    """The controller's records of the jobs that ran in `ws` (MinJobAge keeps them an hour), oldest first;
    with `rule` and `run_name`, those the executor plugin submitted for that job (its sbatch --comment)."""
    found = [r for r in _records(run(c, ROOT, "scontrol", "show", "job", "-o").stdout) if r.get("WorkDir") == str(ws)]
    if rule:
        found = [r for r in found if r.get("Comment") == f"rule_{rule}_wildcards_{run_name}"]
    return sorted(found, key=lambda r: int(r["JobId"]))


def wait_for(c, jobid: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (record,) = _records(run(c, ROOT, "scontrol", "show", "job", "-o", jobid).stdout)
        if record["JobState"] not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return record
        time.sleep(0.5)
    raise AssertionError(f"job {jobid} still running after {timeout} s")


def workspace_files(ws: Path) -> None:
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps in warm sun".split()
    for i in range(40):
        (ws / "inputs" / f"doc{i:02d}.txt").write_text(" ".join(words[(i + j) % len(words)] for j in range(400))
                                                      + f" document {i}.\n")


@pytest.fixture(scope="module")
def sweeps(cluster, tmp_path_factory):
    """One workspace with its data built, copied; the copies run the sweep side by side, locally and through
    the SLURM profile, where the AR point's training job is cancelled once it has saved a checkpoint."""
    base = tmp_path_factory.mktemp("sweeps")
    local = project_copy(base / "local", SWEEP)
    workspace_files(local)
    shutil.rmtree(local / ".dvc")  # no dvc.lock bookkeeping after each run: DVC is not under test here
    run(cluster, local, "snakemake", "--cores", "2", "data/shards")
    slurm = base / "slurm"
    shutil.copytree(local, slurm, symlinks=True)

    logs = {name: open(base / f"{name}.log", "w") for name in ("local", "slurm")}
    procs = {name: subprocess.Popen(["snakemake", *args], cwd=ws, env=cluster_env(cluster), stdout=logs[name],
                                    stderr=subprocess.STDOUT)
             for name, ws, args in [("local", local, ["--cores", "2", *TARGETS, "runs/ltm-tiny/model"]),
                                    ("slurm", slurm, [*SLURM_PROFILE, *TARGETS])]}
    cancelled, deadline = None, time.monotonic() + 300
    while cancelled is None and procs["slurm"].poll() is None and time.monotonic() < deadline:
        if list((slurm / f"runs/{AR}/checkpoints").rglob("step-*.pt")):  # saved whole (renamed into place)
            running = [r["JobId"] for r in jobs(cluster, slurm, "train", AR) if r["JobState"] == "RUNNING"]
            if running:
                run(cluster, slurm, "scancel", running[0])
                cancelled = running[0]
        time.sleep(0.1)
    for name, proc in procs.items():
        code = proc.wait(timeout=600)
        logs[name].close()
        assert code == 0, f"{name} sweep failed:\n" + (base / f"{name}.log").read_text()[-4000:]
    return local, slurm, cancelled


def test_sweep_through_the_slurm_profile_matches_the_local_run(cluster, sweeps):
    local, slurm, _ = sweeps
    for run_name in (LTM, AR):
        for rule in ("train", "evaluate"):
            ran = jobs(cluster, slurm, rule, run_name)
            assert ran and ran[-1]["JobState"] == "COMPLETED", (rule, run_name, ran)
            assert all(r["BatchFlag"] == "1" for r in ran)  # batch jobs: submitted with sbatch
            assert ran[-1]["TresPerNode"] == "gres:gpu:1"  # the profile's GPU request reached the scheduler
    for run_name in (LTM, AR):
        for path in (f"runs/{run_name}/metrics.json", f"results/eval/{run_name}/metrics.json"):
            assert json.loads((slurm / path).read_text()) == json.loads((local / path).read_text()), path
        # same machine, same threads: the same bits
        assert (slurm / f"runs/{run_name}/model/model.pt").read_bytes() == \
            (local / f"runs/{run_name}/model/model.pt").read_bytes()


def test_a_cancelled_training_job_is_retried_and_resumes_to_the_same_weights(cluster, sweeps):
    local, slurm, cancelled = sweeps
    assert cancelled, "the training job ended before it could be cancelled"
    train = jobs(cluster, slurm, "train", AR)
    assert [r["JobState"] for r in train] == ["CANCELLED", "COMPLETED"] and train[0]["JobId"] == cancelled
    retried_log = next((slurm / ".snakemake/slurm_logs/rule_train").rglob(f"{train[1]['JobId']}.log"))
    assert "resumed from" in retried_log.read_text()
    assert (slurm / f"runs/{AR}/model/model.pt").read_bytes() == (local / f"runs/{AR}/model/model.pt").read_bytes()


def test_a_failed_job_on_the_cluster_leaves_the_previous_outputs(cluster, sweeps):
    _, slurm, _ = sweeps
    eval_dir = slurm / f"results/eval/{LTM}"
    kept = {p.name: p.read_bytes() for p in eval_dir.iterdir() if p.is_file()}
    edit_params(slurm, "eval", "splits", ["nope"])  # valid to the schema, refused by the stage
    try:
        failed = run(cluster, slurm, "snakemake", *SLURM_PROFILE, "--retries", "0", TARGETS[0], check=False)
    finally:
        edit_params(slurm, "eval", "splits", ["val"])
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert f"ltm: restored the previous results/eval/{LTM}/metrics.json" in out
    assert {p.name: p.read_bytes() for p in eval_dir.iterdir() if p.is_file() and p.name in kept} == kept
    assert jobs(cluster, slurm, "evaluate", LTM)[-1]["JobState"] == "FAILED"  # it ran, on the cluster


# the two layouts of workflow/slurm/ddp.sbatch: srun starts each rank, or torchrun starts a node's ranks
# (one per GPU of the node: the stand-in GPUs, while the ranks themselves run on CPU with gloo)
DDP_LAYOUTS = {"two-tasks": ["--ntasks=2", "--cpus-per-task=1"],
               "torchrun": ["--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=2", "--cpus-per-task=2"]}


@pytest.mark.parametrize("layout", list(DDP_LAYOUTS))
def test_ddp_job_matches_one_process(cluster, sweeps, tmp_path, layout):
    """A DDP job of 2 ranks trains the tiny LTM to the single-process weights up to float summation order,
    as under torchrun alone (tests/test_train.py)."""
    local, _, _ = sweeps
    ws = tmp_path / "ddp"
    ws.mkdir()
    (ws / "data").symlink_to(local / "data")
    shutil.copy(local / "params.yaml", ws / "params.yaml")
    submitted = run(cluster, ws, "sbatch", "--parsable", *DDP_LAYOUTS[layout], "--output=ddp.log",
                    str(ROOT / "workflow/slurm/ddp.sbatch"), "--run", "ltm-tiny").stdout.strip()
    record = wait_for(cluster, submitted.split(";")[0])
    assert record["JobState"] == "COMPLETED", (ws / "ddp.log").read_text()[-3000:]
    assert record["NumTasks"] == ("2" if layout == "two-tasks" else "1")
    assert json.loads((ws / "runs/ltm-tiny/metrics.json").read_text())["world_size"] == 2
    a, b = final_weights(local, "ltm-tiny"), final_weights(ws, "ltm-tiny")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
