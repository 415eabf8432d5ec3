"""The runs of a pipeline: the named runs of params `runs:` and every point of the `sweep:` grid, and
the params sections a run's training depends on. Names only (no model code), so the pipeline table,
both orchestrators and every stage can ask which runs exist without importing the trainer."""
from __future__ import annotations

import re
from itertools import product

from ltm.errors import LtmError
from ltm.families import family

# A sweep point is named by its grid values, so the name alone says what it is and adding a point
# never renames (or reruns) another: MODEL-D<tokens> for AR, MODEL-D<tokens>-T<T>-Z<N_z> for LTM.
SWEEP_NAME = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]*?)-D(?P<tokens>[0-9]+)(?:-T(?P<T>[0-9]+)-Z(?P<nz>[0-9]+))?$")


def sweep_points(params: dict) -> dict[str, dict]:
    """Every grid point of params `sweep:` as a run entry, keyed by its name. The `sweep:` keys are family
    names; LTM grids also span inner_steps (T) and n_latents (N_z). Baselines first: the order the
    report's tables list runs in."""
    points = {}
    for name, grid in sorted(params.get("sweep", {}).items(), key=lambda ng: family(ng[0]).has_latents):
        if not family(name).has_latents:
            for model, tokens in product(grid["models"], grid["tokens"]):
                points[f"{model}-D{tokens}"] = {"model": model, "tokens": tokens}
            continue
        for model, tokens, T, nz in product(grid["models"], grid["tokens"], grid["inner_steps"], grid["n_latents"]):
            points[f"{model}-D{tokens}-T{T}-Z{nz}"] = {"model": model, "tokens": tokens, "inner_steps": T,
                                                      "n_latents": nz}
    return points


def all_runs(params: dict) -> dict[str, dict]:
    """The named runs of `runs:` followed by the sweep points."""
    points = sweep_points(params)
    clash = sorted(set(points) & set(params["runs"]))
    if clash:
        raise LtmError(f"run name {clash[0]!r} is both in runs: and a sweep point")
    return {**params["runs"], **points}


def run_entry(params: dict, name: str) -> dict:
    """A `runs:` entry, or the entry a sweep-point name encodes."""
    if name in params["runs"]:
        return params["runs"][name]
    m = SWEEP_NAME.match(name)
    if not m or m["model"] not in params["models"]:
        raise LtmError(f"unknown run {name!r}: not in params runs: ({', '.join(sorted(params['runs']))}) "
                       "and not a sweep-point name MODEL-D<tokens>[-T<T>-Z<N_z>]")
    entry = {"model": m["model"], "tokens": int(m["tokens"])}
    if m["T"] is not None:
        entry.update(inner_steps=int(m["T"]), n_latents=int(m["nz"]))
    return entry


def train_sections(params: dict, name: str) -> list[str]:
    """Dotted params sections a run's training result depends on (its lineage and resume hash)."""
    model = run_entry(params, name)["model"]
    if name in params["runs"]:  # one DVC foreach serves every family: it declares both processes
        return [f"runs.{name}", f"models.{model}", "diffusion", "posterior", "train"]
    # a sweep point's own values are in its name (and so in its command line), not in params
    process = family(params["models"][model]["family"]).process
    return [f"models.{model}", *([process] if process else []), "train"]
