"""dvc.yaml and the Snakemake rules must describe the same pipeline, command for command."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ltm.config import load_params
from ltm.grid import all_runs
from ltm.stage_params import leaf_keys, stage_params

ROOT = Path(__file__).resolve().parents[1]


def canonical(addressing: str, cmd: str) -> str:
    """DVC names matrix stages by their values; both tools agree on `<subcommand>@<run>`."""
    m = re.match(r"ltm (\S+) .*--run (\S+)", cmd)
    return f"{m.group(1)}@{m.group(2)}" if m else addressing


def dvc_stages(root: Path) -> dict[str, dict]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {}
        for stage in repo.index.stages:
            params = sorted(p for d in stage.deps if hasattr(d, "params") for p in d.params)
            deps = sorted({str(d.def_path) for d in stage.deps if not hasattr(d, "params")})
            # checkpoint folders are training state, not products: Snakemake must not declare them
            # or it would delete them before a rerun (every output is persist: true in dvc.yaml)
            products = [o for o in stage.outs if not str(o.def_path).endswith("/checkpoints")]
            stages[canonical(stage.name, stage.cmd)] = {
                "cmd": stage.cmd,
                "inputs": deps,
                "outputs": sorted(str(o.def_path) for o in products),
                "params": params,
            }
        return stages


def snakemake_jobs(root: Path) -> dict[str, dict]:
    """Parse the job list of a forced dry run (rule, wildcards, input, output, shell command)."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--printshellcmds", "--forceall", "--cores", "1"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    jobs = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\S+):$", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (input|output|wildcards): (.*)$", block, re.M))
        cmd = re.search(r"^Shell command: (.*)$", block, re.M)
        wildcards = [w.split("=", 1)[1] for w in fields.get("wildcards", "").split(", ") if w]
        name = m.group(1) + "".join("@" + w for w in wildcards)
        jobs[name] = {
            "cmd": cmd.group(1).strip() if cmd else None,
            # params stamps (ltm.sync) are Snakemake's view of a params change, not pipeline data
            "inputs": sorted(x for x in fields.get("input", "").split(", ") if x and not x.startswith(".snakemake/")),
            "outputs": sorted(x for x in fields.get("output", "").split(", ") if x),
        }
    return jobs


@pytest.fixture(scope="module")
def both():
    return dvc_stages(ROOT), snakemake_jobs(ROOT)


def test_same_stage_names(both):
    dvc, smk = both
    assert sorted(dvc) == sorted(smk)
    params = load_params(ROOT / "params.yaml")
    runs = all_runs(params)
    assert len(runs) > len(params["runs"])  # the sweep points are stages too
    assert {"corpus", "tokenizer", "shards"} | {f"{s}@{r}" for r in runs for s in ("train", "evaluate")} <= set(dvc)


def test_same_commands_inputs_outputs(both):
    dvc, smk = both
    for name, stage in dvc.items():
        job = smk[name]
        assert stage["cmd"] == job["cmd"], name
        # a DVC dependency on a folder stands for the Snakemake inputs inside it
        under = lambda path: next((d for d in stage["inputs"] if path == d or path.startswith(d + "/")), path)
        assert stage["inputs"] == sorted({under(p) for p in job["inputs"]}), name
        assert stage["outputs"] == job["outputs"], name


def test_dvc_declares_exactly_the_leaf_params_each_stage_reads(both):
    dvc, _ = both
    params = load_params(ROOT / "params.yaml")
    for name, stage in dvc.items():
        base, _, run = name.partition("@")
        declared = sorted(leaf_keys(params, stage["params"]))
        assert declared == sorted(leaf_keys(params, stage_params(base, params, run or None))), name
        assert not any(p.startswith("runtime") for p in stage["params"]), name


def test_every_dvc_output_persists_so_a_failed_rerun_keeps_it(both):
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            assert all(o.persist for o in stage.outs), stage.addressing


def test_commands_are_ltm_subcommands(both):
    dvc, _ = both
    for name, stage in dvc.items():
        assert stage["cmd"].startswith(f"ltm {name.split('@')[0]} --params params.yaml"), name


def test_parser_detects_divergence(tmp_path):
    """The comparison is not vacuous: a dvc.yaml edited by hand differs from the rules, and from the table."""
    import shutil

    for item in ["Snakefile", "dvc.yaml", "params.yaml", "workflow", "inputs", "src", ".dvc/config"]:
        src = ROOT / item
        (tmp_path / item).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc_file = tmp_path / "dvc.yaml"
    dvc_file.write_text(dvc_file.read_text().replace("--out data/corpus\n", "--out data/corpus -v\n", 1))
    assert dvc_stages(tmp_path)["corpus"]["cmd"].endswith("-v")
    assert not snakemake_jobs(tmp_path)["corpus"]["cmd"].endswith("-v")
    check = subprocess.run([sys.executable, "-m", "ltm.cli", "pipeline", "--check", "--params", "params.yaml"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 2 and "differs from the pipeline table" in check.stderr


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profiles_dry_run(profile):
    run = subprocess.run([sys.executable, "-m", "snakemake", "--profile", f"workflow/profiles/{profile}", "-n",
                          "--forceall"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "rule train:" in run.stdout and "rule scaling:" in run.stdout


def test_every_dvc_plot_declares_its_axes():
    """Without `y:` dvc plots takes the last column (tokens/s, the biased paper number): always name it."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    plots = [(name, out) for name, st in stages.items() for entry in (st.get("do", st).get("plots") or [])
             for out in entry.items()]
    assert plots
    for name, (path, spec) in plots:
        assert spec.get("x") and spec.get("y"), (name, path)
        column = {"train_log.tsv": "loss", "t_curve.tsv": "bound"}[Path(path).name]
        assert spec["y"] == column, (name, path)


def test_several_targets_on_a_fresh_tree_build_one_dag(tmp_path):
    """Params stamps are written before the DAG: none can be missing from Snakemake's file inventory."""
    from test_pipeline import FAST_RUNS, project_copy

    ws = project_copy(tmp_path, FAST_RUNS)
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "runs/ar-tiny/metrics.json",
                          "runs/ltm-tiny/metrics.json"], cwd=ws, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "MissingInputException" not in run.stdout + run.stderr
    assert re.search(r"^train\s+2$", run.stdout, re.M), run.stdout[-2000:]
