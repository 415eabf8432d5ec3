"""Scaling stage: every run's evaluation -> one table of records -> fitted laws (or refusals)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ltm import lineage
from ltm.errors import LtmError
from ltm.families import family
from ltm.grid import all_runs
from ltm.io import read_json, write_text
from ltm.scaling import format_summary, run_scaling, write_outputs
from ltm.scaling.api import write_csv
from ltm.stage_run import begin

# metrics.json key of each loss kind, and the field holding nats per token
KIND_SOURCE = {"nll_exact": ("exact", "nll"), "iwae": ("iwae", "nelbo"), "elbo_fresh": ("fresh_elbo", "nelbo"),
               "paper_protocol": ("paper", "nelbo"), "diffusion_nelbo": ("diffusion_bound", "nelbo")}
CURVE_COLUMN = {"iwae": "iwae_nelbo", "elbo_fresh": "fresh_elbo_nelbo", "paper_protocol": "paper_nelbo"}
RECORD_COLUMNS = ("run", "family", "loss_kind", "loss", "params", "tokens", "flops", "T", "n_latents", "T_eval")


def read_curve(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def collect_records(params: dict, eval_dir: Path) -> list[dict]:
    """One record per (run, loss kind) on the fit split, plus loss-vs-T_eval rows for LTM runs."""
    fit, records = params["fit"], []
    for run in all_runs(params):
        path = eval_dir / run / "metrics.json"
        if not path.is_file():
            raise LtmError(f"no evaluation for run {run} at {path}; run `ltm evaluate --run {run}` first")
        lineage.check_file(path)
        m = read_json(path)
        split = m["splits"].get(fit["split"])
        if split is None:
            raise LtmError(f"{path} has no split {fit['split']!r} (fit.split)")
        base = {"run": run, "family": m["family"], "params": m["params"], "tokens": m["tokens"],
                "flops": m["train_flops"], "T": m["inner_steps"]}
        if m["n_latents"]:
            base["n_latents"] = m["n_latents"]
        for kind in fit["loss_kinds"]:
            key, field = KIND_SOURCE[kind]
            if key not in split:
                continue  # e.g. no IWAE for the AR baseline, no exact NLL for an LTM
            records.append({**base, "loss_kind": kind, "loss": split[key][field]})
            if family(m["family"]).has_latents and kind in CURVE_COLUMN:
                lineage.check_file(eval_dir / run / "t_curve.tsv")
                for row in read_curve(eval_dir / run / "t_curve.tsv"):
                    t = int(row["T_eval"])
                    if t >= 1 and t != m["inner_steps"]:  # T_eval = T is the headline record above
                        records.append({**base, "loss_kind": kind, "loss": float(row[CURVE_COLUMN[kind]]),
                                        "T_eval": t})
    return records


def scaling(params_path: str, eval_dir: str, out: str) -> dict:
    stage = begin("scaling", params_path, out=out)
    params = stage.params
    records = collect_records(params, Path(eval_dir))
    cfg = {k: v for k, v in params["fit"].items() if k not in ("loss_kinds", "split")}
    # the fit groups on worker processes, one per thread runtime.threads allows (all cores when 0)
    result = run_scaling(records, cfg, processes=stage.threads or os.cpu_count() or 1)
    out_dir = Path(out)
    write_outputs(result, out_dir)
    write_csv(out_dir / "records.csv", RECORD_COLUMNS, records)
    write_text(out_dir / "summary.txt", format_summary(result) + "\n")
    stage.record(out_dir / "fit.json", {"eval": eval_dir}, record=out_dir / "lineage.json",
                 files=[out_dir / name for name in ("fit.json", "residuals.csv", "records.csv", "summary.txt")])
    return result
