"""End to end with Snakemake: a build from text files, no-op and partial reruns, failed jobs restored, and
each orchestrator seeing the other's work. Apart from tests/test_pipeline.py so that the two long
end-to-end builds run on different test workers."""
from __future__ import annotations

import json
import os
import subprocess

from test_pipeline import BIN, FAST_RUNS, edit_params, project_copy, sh


def test_snakemake_from_text_files_then_noop_then_partial(tmp_path):
    ws = project_copy(tmp_path, {**FAST_RUNS, "data": {"corpus": {"source": "files", "paths": ["inputs/*.txt"]}},
                                 "eval": {"splits": ["val"]}})  # no held-out domain without the builtin corpus
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps in warm sun".split()
    for i in range(40):
        text = " ".join(words[(i + j) % len(words)] for j in range(400))
        (ws / "inputs" / f"doc{i:02d}.txt").write_text(text + f" document {i}.\n")
    sh(ws, "snakemake", "--cores", "2")
    manifest = json.loads((ws / "data/corpus/manifest.json").read_text())
    assert sum(s["documents"] for s in manifest["splits"].values()) == 40
    assert (ws / "runs/ltm-tiny/model/model.pt").is_file()
    assert "Nothing to be done" in sh(ws, "snakemake", "--cores", "2", "-n")

    edit_params(ws, "data.tokenizer", "vocab_size", 400)
    plan = sh(ws, "snakemake", "--cores", "2", "-n")
    assert "rule tokenizer:" in plan and "rule shards:" in plan and "rule train:" in plan
    assert "rule corpus:" not in plan
    assert "rule evaluate:" in plan  # downstream of the tokenizer through the models

    # a failed job's outputs, deleted by Snakemake, come back as the previous result, still out of date
    eval_dir = ws / "results/eval/ltm-tiny"
    kept = {p.name: p.read_bytes() for p in eval_dir.iterdir() if p.is_file()}
    edit_params(ws, "data.tokenizer", "vocab_size", 512)  # as built: only the eval change below is pending
    edit_params(ws, "eval", "splits", ["nope"])  # valid to the schema, refused by the stage
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    failed = subprocess.run(["snakemake", "--cores", "1", "results/eval/ltm-tiny/metrics.json"], cwd=ws, env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "nope" in failed.stdout + failed.stderr
    assert "ltm: restored the previous results/eval/ltm-tiny/metrics.json" in failed.stdout + failed.stderr
    assert {p.name: p.read_bytes() for p in eval_dir.iterdir() if p.is_file() and p.name in kept} == kept
    plan = sh(ws, "snakemake", "--cores", "1", "-n", "results/eval/ltm-tiny/metrics.json")
    assert "rule evaluate:" in plan  # the restored result is the old one: Snakemake still remakes it
    # by hand, after a kill: `ltm restore`
    (eval_dir / "metrics.json").unlink()
    out = sh(ws, "ltm", "restore", "results/eval/ltm-tiny/metrics.json")
    assert "restored the previous results/eval/ltm-tiny/metrics.json" in out
    assert (eval_dir / "metrics.json").read_bytes() == kept["metrics.json"]


def test_each_orchestrator_sees_the_others_work_and_params_changes(tmp_path):
    """A tree DVC built: Snakemake has nothing to do, yet a params change reruns the job that reads it
    (its params stamp, ltm.sync); what Snakemake then makes, DVC records as current."""
    ws = project_copy(tmp_path, FAST_RUNS)
    sh(ws, "dvc", "repro", "shards")
    assert "Nothing to be done" in sh(ws, "snakemake", "-n", "--cores", "1", "data/shards")
    edit_params(ws, "data.shards", "rows_per_shard", 1000)
    planned = sh(ws, "snakemake", "-n", "--cores", "1", "data/shards")
    assert "rule shards:" in planned and "rule corpus:" not in planned and "rule tokenizer:" not in planned
    assert "shards" in json.loads(sh(ws, "dvc", "status", "--json"))
    sh(ws, "snakemake", "--cores", "1", "data/shards")
    status = json.loads(sh(ws, "dvc", "status", "--json"))
    assert not {"corpus", "tokenizer", "shards"} & set(status), status
    assert "Nothing to be done" in sh(ws, "snakemake", "-n", "--cores", "1", "data/shards")
    assert "Running stage" not in sh(ws, "dvc", "repro", "shards")
