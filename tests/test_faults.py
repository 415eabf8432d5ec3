"""Fault injection under DVC: every stage killed mid-run never loses its previous artifact.

Each stage (corpus, tokenizer, shards, train, evaluate, scaling, generation, few-shot, demo, report) is made stale by a params
change and rerun with `dvc repro -s STAGE`, killed with SIGKILL either at its k-th rename (between the
steps of its output replacement: a `sitecustomize` put on PYTHONPATH counts os.rename/os.replace calls
inside the `ltm` process only) or after a seeded random delay. After every kill the output is complete:
either the previous artifact, byte-identical, or the new one whole; a folder caught between its two
renames is findable as `.NAME.old` and put back by the next start. A plain rerun then completes and
DVC sees nothing stale. A SIGTERM to `dvc repro` reaches the training stage, which saves and exits.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_pipeline import BIN, edit_params, project_copy, sh

KILL_AT_RENAME = '''
import os, signal, sys
_at = int(os.environ.get("LTM_TEST_KILL_AT_RENAME", "0"))

def _counting(orig):
    count = [0]
    def wrapped(*args, **kwargs):
        if os.path.basename(sys.argv[0] if sys.argv else "") == "ltm":
            count[0] += 1
            if count[0] == _at:
                os.kill(os.getpid(), signal.SIGKILL)
        return orig(*args, **kwargs)
    return wrapped

if _at:
    os.rename, os.replace = _counting(os.rename), _counting(os.replace)
'''
FAST = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 6}, "ar-tiny": {"model": "ar-tiny", "tokens": 512}},
        "sweep": {"ltm": {"models": ["ltm-tiny"], "tokens": [], "inner_steps": [1], "n_latents": [4]},
                  "ar": {"models": ["ar-tiny"], "tokens": []}, "diffusion": {"models": ["mdlm-tiny"], "tokens": []}},
        "train": {"eval_every": 3, "save_every": 3}, "fit": {"n_starts": 4, "n_bootstrap": 10},
        "data": {"corpus": {"source": "files", "paths": ["inputs/*.txt"]}}, "eval": {"splits": ["val"]}}
# stage -> (its outputs, a params edit that makes it stale, and its inverse)
STAGES = {
    "corpus": (["data/corpus"], ("data.corpus", "val_fraction", 0.06), 0.05),
    "tokenizer": (["data/tokenizer"], ("data.tokenizer", "min_frequency", 3), 2),
    "shards": (["data/shards"], ("data.shards", "rows_per_shard", 1024), 2048),
    "train@ltm-tiny": (["runs/ltm-tiny/model", "runs/ltm-tiny/metrics.json"], ("train", "seed", 7), 1337),
    "evaluate@ltm-tiny": (["results/eval/ltm-tiny/metrics.json"], ("eval", "seed", 3), 0),
    "scaling": (["results/scaling/fit.json", "results/scaling/residuals.csv"], ("fit", "n_starts", 5), 4),
    "generation@ltm-tiny": (["results/generation/ltm-tiny/metrics.json", "results/generation/ltm-tiny/samples.json"],
                            ("generation", "seed", 1), 0),
    "fewshot@ltm-tiny": (["results/fewshot/ltm-tiny/metrics.json", "results/fewshot/ltm-tiny/samples.json"],
                         ("fewshot", "seed", 1), 0),
    "demo": (["results/demo/metrics.json"], ("demo", "tokens", 512 * 5), 512 * 4),
    "report": (["reports"], ("eval", "t_curve_max_rows", 8), 16),  # what the report prints: stale, not rerun above
}
LONG = {"train@ltm-tiny", "evaluate@ltm-tiny", "demo"}  # also killed at a seeded moment of their run


def snapshot(ws: Path, outputs: list[str]) -> dict[str, bytes]:
    files = {}
    for out in outputs:
        path = ws / out
        for f in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            if not f.name.endswith(".run.json"):
                files[str(f.relative_to(ws))] = f.read_bytes()
    return files


def complete(ws: Path, outputs: list[str]) -> bool:
    """Every output is whole: a data folder with its manifest, a model with config and weights that
    match (the sha256 its config records), a metrics file that parses."""
    from ltm.io import sha256_file

    for out in outputs:
        path = ws / out
        if (path / "report.md").is_file():
            if not (path / "report.md").read_text().startswith("#"):
                return False
        elif (path / "manifest.json").is_file():
            json.loads((path / "manifest.json").read_text())
        elif (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
            if sha256_file(path / "model.pt") != config["weights_sha256"]:
                return False
        elif path.suffix == ".json" and path.is_file():
            json.loads(path.read_text())
        elif path.is_file():  # a table: its header and whole lines
            text = path.read_text()
            if not text.endswith("\n") or "," not in text.splitlines()[0]:
                return False
        else:
            return False
    return True


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    ws = project_copy(tmp_path_factory.mktemp("faults"), FAST)
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps in warm sun".split()
    for i in range(40):  # a small local corpus: the data stages take a second, not the builtin's ten
        (ws / "inputs" / f"doc{i:02d}.txt").write_text(" ".join(words[(i + j) % len(words)] for j in range(400))
                                                      + f" document {i}.\n")
    sh(ws, "dvc", "repro")  # the whole (small) pipeline: every stage below has its inputs
    hook = ws.parent / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_AT_RENAME)
    return ws, hook


def env_with(hook: Path | None = None, kill_at: int = 0) -> dict:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    if hook is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(hook), env.get("PYTHONPATH", "")])
        env["LTM_TEST_KILL_AT_RENAME"] = str(kill_at)
    return env


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def kill_after(cmd: list[str], ws: Path, delay: float) -> int:
    """Run cmd; SIGKILL its child (the ltm stage) after `delay` seconds; the return code."""
    proc = subprocess.Popen(cmd, cwd=ws, env=env_with(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + delay
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    for child in descendants(proc.pid):  # the shell DVC starts, and the ltm stage in it
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait(timeout=120)


def check_after_kill(ws: Path, outputs: list[str], before: dict[str, dict[str, bytes]]) -> None:
    """Each output is the previous artifact byte for byte, or a whole new one, or (a folder caught
    between its two renames) missing with the previous copy findable beside it."""
    for out in outputs:
        if (ws / out).exists():
            assert snapshot(ws, [out]) == before[out] or complete(ws, [out]), f"a half artifact at {out}"
        else:
            assert (ws / out).with_name(f".{Path(out).name}.old").is_dir(), f"{out} lost"


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_killed_stage_never_loses_its_previous_artifact(project, stage):
    ws, hook = project
    outputs, (section, key, value), original = STAGES[stage]
    rng = random.Random(stage)  # seeded per stage: a different rename and moment for each
    faults = [("rename", rng.choice([1, 2, 3]))] + ([("time", rng.uniform(0.5, 3.0))] if stage in LONG else [])
    for seed, (kind, at) in enumerate(faults):
        edit_params(ws, section, key, value if seed % 2 == 0 else original)
        before = {out: snapshot(ws, [out]) for out in outputs}
        cmd = ["dvc", "repro", "-s", stage]
        if kind == "rename":
            code = subprocess.run(cmd, cwd=ws, env=env_with(hook, at), capture_output=True).returncode
        else:
            code = kill_after(cmd, ws, at)
        if code == 0:  # it finished before the fault: the new artifact, whole
            assert complete(ws, outputs)
            continue
        check_after_kill(ws, outputs, before)
        sh(ws, "dvc", "repro", "-s", stage)  # a plain rerun completes from whatever the kill left
        assert complete(ws, outputs)
        assert stage not in json.loads(sh(ws, "dvc", "status", "--json", stage).strip() or "{}")
        leftovers = [p for out in outputs for p in (ws / out).parent.glob(".*.tmp")]
        assert not leftovers, leftovers  # a killed run's temp files and folders are cleaned up by the next
    if len(faults) % 2 and stage in {"corpus", "tokenizer", "shards"}:  # what later cases' inputs were built with
        edit_params(ws, section, key, original)
        sh(ws, "dvc", "repro", "-s", stage)


def test_sigterm_to_dvc_reaches_the_training_stage_which_saves_and_exits(project):
    ws, _ = project
    edit_params(ws, "runs", "ltm-tiny", {"model": "ltm-tiny", "tokens": 512 * 400})  # long enough to interrupt
    ckpt = ws / "runs/ltm-tiny/checkpoints"
    proc = subprocess.Popen(["dvc", "repro", "-s", "train@ltm-tiny"], cwd=ws, env=env_with(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage, deadline = [], time.time() + 60
    while not stage and time.time() < deadline:
        time.sleep(0.2)
        stage = [c for c in children(proc.pid) if "train" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
    assert stage, "the training stage did not start"
    before = set(ckpt.rglob("*.pt"))
    while not set(ckpt.rglob("*.pt")) - before and time.time() < deadline:  # training steps are running
        time.sleep(0.1)
    saved = set(ckpt.rglob("*.pt"))
    metrics = (ws / "runs/ltm-tiny/metrics.json").read_bytes()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.time() + 10  # a step and a save; the whole run would take far longer
    while Path(f"/proc/{stage[0]}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{stage[0]}").exists(), "the stage runs on, orphaned"
    assert {p for p in ckpt.rglob("*.pt")} - saved, "no checkpoint saved on the signal"
    assert (ws / "runs/ltm-tiny/metrics.json").read_bytes() == metrics  # stopped, not finished
    edit_params(ws, "runs", "ltm-tiny", FAST["runs"]["ltm-tiny"])
