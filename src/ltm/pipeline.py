"""The pipeline, described once: every stage's command, inputs, outputs, the params it reads and the code
it runs.

    STAGES                      the table (one `Stage` per stage; per-run stages are templates in {run})
    stage_params(name, params)  dotted params sections that decide a stage's result
    code_files(stage)           the source files it runs: its stage module's import closure inside `ltm`
    dvc_yaml(params)            dvc.yaml, generated (`ltm pipeline --write`; a test checks the committed file)

The Snakemake rules (workflow/rules/*.smk) read their commands, inputs, outputs and params from the same
table, so the orchestrators cannot drift; both declare each stage's code files as dependencies, so editing
a library module reruns exactly the stages whose code imports it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from ltm.families import FAMILIES, Family
from ltm.grid import all_runs, run_entry, sweep_points
from ltm.stage_params import declared_params, stage_params

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_PREFIX = "src/ltm"  # where the package sits in the project, for orchestrator dependencies


@dataclass(frozen=True)
class Out:
    path: str                   # may contain {run}
    folder: bool = False
    kind: str = "out"           # out | metrics | plot
    x: str | None = None        # plot axes
    y: str | None = None


@dataclass(frozen=True)
class Gather:
    """A folder DVC depends on as a whole, standing for these files of each run to Snakemake."""
    folder: str
    files: tuple[str, ...]      # templates in {run}
    over: str | None = "all"    # all | named | None (the files as they are)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str                 # ltm.stages.X: the code it runs is this module's import closure
    command: str                # format fields: {run}, {judge}
    inputs: tuple = ()          # paths (templates in {run}, {judge}) or Gather
    outputs: tuple = ()
    each: str | None = None     # None: once | named: each run of `runs:` | all: named runs and sweep points
    note: str = ""


def _run_outputs(folder: str, *names: str) -> tuple[Out, ...]:
    return tuple(Out(f"{folder}/{n}") for n in names)


STAGES: tuple[Stage, ...] = (
    Stage("corpus", "ltm.stages.corpus", "ltm corpus --params params.yaml --out data/corpus",
          ("inputs",), (Out("data/corpus", folder=True),)),
    Stage("tokenizer", "ltm.stages.tokenizer",
          "ltm tokenizer --params params.yaml --corpus data/corpus --out data/tokenizer",
          ("data/corpus",), (Out("data/tokenizer", folder=True),)),
    Stage("shards", "ltm.stages.shards",
          "ltm shards --params params.yaml --corpus data/corpus --tokenizer data/tokenizer --out data/shards",
          ("data/corpus", "data/tokenizer"), (Out("data/shards", folder=True),)),
    Stage("train", "ltm.stages.train",
          "ltm train --params params.yaml --run {run} --shards data/shards --out runs/{run}",
          ("data/shards",),
          (Out("runs/{run}/model", folder=True), *_run_outputs("runs/{run}", "lineage.json", "metrics.json"),
           Out("runs/{run}/train_log.tsv", kind="plot", x="step", y="loss")),
          each="all", note="checkpoints are the trainer's resumable state, not an output"),
    Stage("evaluate", "ltm.stages.evaluate",
          "ltm evaluate --params params.yaml --run {run} --model runs/{run}/model --shards data/shards "
          "--tokenizer data/tokenizer --out results/eval/{run}",
          ("runs/{run}/model", "data/shards", "data/tokenizer"),
          (*_run_outputs("results/eval/{run}", "lineage.json", "metrics.json"),
           Out("results/eval/{run}/t_curve.tsv", kind="plot", x="T_eval", y="bound")),
          each="all"),
    Stage("generation", "ltm.stages.generation",
          "ltm generation --params params.yaml --run {run} --model runs/{run}/model --judge runs/{judge}/model "
          "--shards data/shards --tokenizer data/tokenizer --out results/generation/{run}",
          ("runs/{run}/model", "runs/{judge}/model", "data/shards", "data/tokenizer"),
          _run_outputs("results/generation/{run}", "lineage.json", "metrics.json", "samples.json"),
          each="named"),
    Stage("fewshot", "ltm.stages.fewshot",
          "ltm fewshot --params params.yaml --run {run} --model runs/{run}/model --tokenizer data/tokenizer "
          "--out results/fewshot/{run}",
          ("runs/{run}/model", "data/tokenizer"),
          _run_outputs("results/fewshot/{run}", "lineage.json", "metrics.json", "samples.json"),
          each="named"),
    Stage("scaling", "ltm.stages.scaling", "ltm scaling --params params.yaml --eval results/eval --out results/scaling",
          (Gather("results/eval", ("results/eval/{run}/metrics.json", "results/eval/{run}/t_curve.tsv")),),
          _run_outputs("results/scaling", "fit.json", "lineage.json", "records.csv", "residuals.csv", "summary.txt")),
    Stage("demo", "ltm.stages.demo", "ltm demo --params params.yaml --out results/demo", (),
          _run_outputs("results/demo", "lineage.json", "metrics.json"),
          note="the synthetic corpus is built inside the stage: it depends on no data stage"),
    Stage("report", "ltm.stages.report",
          "ltm report --params params.yaml --runs runs --eval results/eval --scaling results/scaling --out reports",
          (Gather("runs", ("runs/{run}/metrics.json", "runs/{run}/train_log.tsv")),
           Gather("results/eval", ("results/eval/{run}/metrics.json",)),
           Gather("results/fewshot", ("results/fewshot/{run}/metrics.json",), over="named"),
           Gather("results/generation", ("results/generation/{run}/metrics.json",), over="named"),
           Gather("results/scaling", ("results/scaling/fit.json",), over=None),
           "results/demo/metrics.json"),
          (Out("reports/report.md"), Out("reports/figures", folder=True), Out("reports/inputs.json"),
           Out("reports/lineage.json"), Out("reports/metrics.json", kind="metrics")),
          note="the headline numbers of the named runs and the demo: what dvc metrics and dvc exp show list"),
)
BY_NAME = {s.name: s for s in STAGES}


# ---------------------------------------------------------------- code each stage runs
def _module_file(name: str) -> Path | None:
    """The source file of a package module (a package's __init__.py), or None outside the package."""
    parts = name.split(".")
    if parts[0] != "ltm":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    return next((f for f in (base / "__init__.py", base.with_suffix(".py")) if f.is_file()), None)


def _imports(path: Path, module: str) -> set[str]:
    """Modules of the package that `path` imports anywhere (function-level imports included)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x` is in `package`, each further dot one level up
                base = ".".join(filter(None, (package.rsplit(".", node.level - 1)[0], base)))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from ltm import lineage` is a module
    return {m for m in found if m == "ltm" or m.startswith("ltm.")}


def code_closure(module: str) -> list[str]:
    """Every package module `module` runs: its imports, theirs, and the packages around them."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += sorted(_imports(_module_file(name), name))
    return sorted(seen)


def code_files(stage: Stage | str) -> list[str]:
    """The stage's source files as project paths (src/ltm/...), sorted."""
    return list(_code_files(stage if isinstance(stage, str) else stage.name))


@cache  # one scan per process: Snakemake asks again for every job of the stage
def _code_files(name: str) -> tuple[str, ...]:
    files = {_module_file(m).relative_to(PACKAGE_DIR).as_posix() for m in code_closure(BY_NAME[name].module)}
    return tuple(sorted(f"{SRC_PREFIX}/{f}" for f in files))


# ---------------------------------------------------------------- dvc.yaml
HEADER = """\
# GENERATED from ltm/pipeline.py by `ltm pipeline --write` (tests/test_pipeline_table.py checks it): edit the
# table there, not this file. Same stages and command lines as workflow/rules/*.smk. Params are declared by
# leaf key (run, model and sweep entries whole); each stage also depends on the source files it runs.
# Every output is persist: the ltm commands replace their outputs atomically, so a failed rerun keeps the
# previous artifact in place instead of DVC deleting it first. Every output is cached, so `dvc exp` (also
# --temp and --queue) and `dvc plots diff` find each experiment's results.
"""


def _sweep_matrix(fam: Family) -> tuple[dict, str]:
    """A family's sweep grid as a DVC matrix: its axes and the run-name template in ${item.*}."""
    if fam.has_latents:
        return ({"model": "models", "tokens": "tokens", "T": "inner_steps", "nz": "n_latents"},
                "${item.model}-D${item.tokens}-T${item.T}-Z${item.nz}")
    return {"model": "models", "tokens": "tokens"}, "${item.model}-D${item.tokens}"


def _dvc_outs(stage: Stage, run: str) -> dict:
    body: dict = {}
    for o in stage.outputs:
        spec = {"x": o.x, "y": o.y, "persist": True} if o.kind == "plot" else {"persist": True}
        key = {"out": "outs", "metrics": "metrics", "plot": "plots"}[o.kind]
        body.setdefault(key, []).append({o.path.format(run=run): spec})
    return body


def _stage_body(stage: Stage, params: dict, run: str, model: str, sample: str | None) -> dict:
    """The dvc.yaml body of `stage` for the run `sample` (None: a stage that runs once), its command written
    for `run` (a name or a DVC template), and the run's own params sections with DVC's template variables
    (runs.${key}, models.${item.model})."""
    judge = "${generation.judge}"
    deps = [i.folder if isinstance(i, Gather) else i.format(run=run, judge=judge) for i in stage.inputs]
    swap = {f"runs.{sample}": "runs.${key}", f"models.{model}": "models.${item.model}"}
    declared = declared_params(params, stage_params(stage.name, params, sample))
    body = {"cmd": stage.command.format(run=run, judge=judge), "deps": deps + code_files(stage),
            "params": [swap.get(s, s) for s in declared]}
    return {**body, **_dvc_outs(stage, run)}


def _uniform(stage: Stage, bodies: list[dict]) -> dict:
    """One template body for every run it stands for (asserted: a template must not hide a difference)."""
    if any(b != bodies[0] for b in bodies[1:]):
        raise ValueError(f"stage {stage.name}: runs of one template declare different params")
    return bodies[0]


def dvc_yaml(params: dict) -> str:
    """The text of dvc.yaml for these params (their key structure; values come from params.yaml at run time)."""
    stages: dict = {}
    named = list(params["runs"])
    points = sweep_points(params)
    for stage in STAGES:
        if stage.each is None:
            stages[stage.name] = _stage_body(stage, params, "", "", None)
            continue
        if named:
            bodies = [_stage_body(stage, params, "${key}", run_entry(params, r)["model"], r) for r in named]
            stages[stage.name] = {"foreach": "${runs}", "do": _uniform(stage, bodies)}
        if stage.each != "all":
            continue
        for fam in FAMILIES.values():
            axes, name = _sweep_matrix(fam)
            mine = [p for p, e in points.items() if params["models"][e["model"]]["family"] == fam.name]
            if mine:
                body = _uniform(stage, [_stage_body(stage, params, name, points[p]["model"], p) for p in mine])
                matrix = {axis: f"${{sweep.{fam.name}.{key}}}" for axis, key in axes.items()}
                stages[f"sweep-{stage.name}-{fam.name}"] = {"matrix": matrix, **body}
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=200)


# ---------------------------------------------------------------- Snakemake
def _runs(over: str | None, params: dict) -> list[str | None]:
    """The runs a per-run template stands for: named (params `runs:`), all (and the sweep), or none."""
    if over is None:
        return [None]
    return list(params["runs"]) if over == "named" else list(all_runs(params))


def snakemake_inputs(stage: Stage, run: str | None, params: dict) -> dict[str, list[str]]:
    """A rule's inputs for one job: the files it reads (a folder DVC depends on as a whole stands for the
    per-run files inside it) and its code."""
    judge = params["generation"]["judge"]
    data = []
    for i in stage.inputs:
        data += ([f.format(run=r) for r in _runs(i.over, params) for f in i.files] if isinstance(i, Gather)
                 else [i.format(run=run, judge=judge)])
    return {"data": data, "code": code_files(stage)}


def jobs(params: dict) -> list[tuple[Stage, str | None]]:
    """Every (stage, run) job of the pipeline; run is None for a stage that runs once."""
    return [(s, r) for s in STAGES for r in _runs(s.each, params)]


def targets(params: dict) -> list[str]:
    """Every output of every stage for every run it has: what `snakemake` with no target builds."""
    return [o.path.format(run=r) for s, r in jobs(params) for o in s.outputs]
