"""End to end with DVC: `dvc repro` builds the pipeline, a rerun is a no-op, a changed param reruns only
the stages that read it, a failed rerun keeps the previous result. The Snakemake counterpart is in
tests/test_pipeline_snakemake.py; the helpers here serve both and the fault-injection tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT, write_params

BIN = str(Path(sys.executable).parent)
FAST_RUNS = {"runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 3},
                      "ar-tiny": {"model": "ar-tiny", "tokens": 512 * 3}},
             "sweep": {"ltm": {"models": ["ltm-tiny"], "tokens": [1024], "inner_steps": [1], "n_latents": [4]},
                       "ar": {"models": ["ar-tiny"], "tokens": [1024]},
                       "diffusion": {"models": ["mdlm-tiny"], "tokens": [1024]}},
             "train": {"eval_every": 3, "save_every": 3},
             "fit": {"n_bootstrap": 10, "n_starts": 4}}


def sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def project_copy(dest: Path, overrides: dict) -> Path:
    """The tracked project files in a fresh git repository, with tiny params."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        # src/ too: every stage depends on the source files it runs (ltm.pipeline.code_files)
        if (ROOT / rel).is_file() and not rel.startswith(("tests/", "bench/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    write_params(dest, overrides)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "add", "-A")
    sh(dest, "git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qm", "init")
    return dest


def edit_params(ws: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    node = params
    for part in section.split("."):
        node = node[part]
    node[key] = value
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def finished(ws: Path, artifact: str) -> str:
    return json.loads((ws / artifact / "lineage.run.json").read_text())["finished"]


def test_dvc_repro_builtin_then_noop_then_partial(tmp_path):
    ws = project_copy(tmp_path, FAST_RUNS)
    sh(ws, "dvc", "repro")
    for out in ["data/shards/manifest.json", "runs/ltm-tiny/model/model.pt", "runs/ar-tiny/metrics.json",
                "runs/ltm-tiny-D1024-T1-Z4/model/model.pt", "results/eval/ar-tiny-D1024/metrics.json",
                "results/scaling/fit.json"]:
        assert (ws / out).is_file(), out
    report = (ws / "reports/report.md").read_text()
    assert "### Generation" in report and "| ltm-tiny | LTM | conditional | ar-tiny |" in report
    assert (ws / "results/fewshot/ltm-tiny/metrics.json").is_file()
    records = (ws / "results/scaling/records.csv").read_text()
    assert "ltm-tiny-D1024-T1-Z4" in records and "nll_exact" in records and "iwae" in records
    assert "up to date" in sh(ws, "dvc", "status")
    (ws / "data/shards/.snakemake_timestamp").touch()  # what a Snakemake run of the stage leaves
    assert "up to date" in sh(ws, "dvc", "status")
    out = sh(ws, "dvc", "repro")
    assert "Running stage" not in out

    # a changed param makes stale exactly the stages that read it (a shards key: the shards and the demo,
    # which builds its own shards with the same data.shards) ...
    rows = yaml.safe_load((ws / "params.yaml").read_text())["data"]["shards"]["rows_per_shard"]
    edit_params(ws, "data.shards", "rows_per_shard", rows // 2)
    status = json.loads(sh(ws, "dvc", "status", "--json"))
    assert set(status) == {"shards", "demo"}
    edit_params(ws, "data.shards", "rows_per_shard", rows)
    assert "up to date" in sh(ws, "dvc", "status")
    # ... and a rerun runs those and what reads their outputs, nothing upstream (a generation key here: a
    # shards change reruns every training stage, which tests/test_faults.py already does stage by stage)
    before = {a: finished(ws, a) for a in ["data/shards", "runs/ltm-tiny", "results/eval/ltm-tiny"]}
    edit_params(ws, "generation", "top_p", 0.9)
    stale = set(json.loads(sh(ws, "dvc", "status", "--json")))
    assert stale and all(name.startswith("generation@") for name in stale), stale
    out = sh(ws, "dvc", "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == stale | {"report"}, ran
    assert all(finished(ws, a) == t for a, t in before.items())
    assert sh(ws, "dvc", "metrics", "show").count("tiny") >= 2

    # a failed rerun keeps the previous result: every DVC output is persist
    kept = {f: (ws / f).read_bytes() for f in ["results/eval/ltm-tiny/metrics.json", "runs/ltm-tiny/model/model.pt"]}
    edit_params(ws, "eval", "samples", 0)
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    failed = subprocess.run(["dvc", "repro", "-s", "evaluate@ltm-tiny"], cwd=ws, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "eval.samples" in failed.stdout + failed.stderr
    assert all((ws / f).read_bytes() == data for f, data in kept.items())
    edit_params(ws, "eval", "samples", 4)

    # one more sweep point reruns only that point and the fit
    edit_params(ws, "sweep.ar", "tokens", [1024, 1536])
    status = json.loads(sh(ws, "dvc", "status", "--json"))
    # the report lists every grid point, so it declares the grid; nothing else is stale
    assert set(status) == {"sweep-train-ar@ar-tiny-1536", "sweep-evaluate-ar@ar-tiny-1536", "report"}, status
    out = sh(ws, "dvc", "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"sweep-train-ar@ar-tiny-1536", "sweep-evaluate-ar@ar-tiny-1536", "scaling", "report"}, ran
