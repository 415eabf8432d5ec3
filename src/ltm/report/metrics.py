"""The headline numbers of a pipeline run: reports/metrics.json, what `dvc metrics show` and `dvc exp show`
list. A few numbers a person compares between experiments, nothing descriptive (the per-run records
under runs/ and results/ hold the protocols, hashes and every estimator).

Per named run (params `runs:`), for every evaluated split: `<split>_bpb`, the tightest honest number in
bits per byte (exact NLL for AR, the IWAE bound at the run's T_eval for an LTM, the NELBO bound for
diffusion; never the paper protocol), and for an LTM `<split>_info_nats`, the information its latents
carry (nats/token vs shuffled posteriors). `train_loss` is the trainer's last training loss. The demo
adds the synthetic corpus's exact entropy and the LTM's best paired gap to AR.
"""
from __future__ import annotations

from typing import Any

from ltm.report.figures import other_bounds
from ltm.report.inputs import Inputs, RunArtifacts

DIGITS = 4  # enough to see a change between experiments, short enough for a table column


def tightest(rec: dict[str, Any] | None) -> str | None:
    """The estimator block of an eval record to headline: exact, else IWAE, else the fresh ELBO, else
    another bound (diffusion); never the paper protocol."""
    if not rec:
        return None
    for key in ("exact", "iwae", "fresh_elbo"):
        if key in rec:
            return key
    return next(iter(other_bounds(rec)), None)


def _round(x: Any) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def run_numbers(run: RunArtifacts) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for split, rec in (run.eval.get("splits") or {}).items():
        key = tightest(rec)
        out[f"{split}_bpb"] = _round(rec[key].get("bpb")) if key else None
        usage = rec.get("latent_usage")
        if usage:
            out[f"{split}_info_nats"] = _round(usage["information_vs_shuffled"]["nats_per_token"])
    out["train_loss"] = _round(run.train.get("train_loss"))
    return out


def demo_numbers(demo: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"truth_bpb": _round(demo["ground_truth"]["bpb"])}
    gaps = []
    for name, run in demo["runs"].items():
        best = min(run["by_T_eval"].values(), key=lambda r: r[tightest(r)]["bpb"])
        out[f"{name}_bpb"] = _round(best[tightest(best)]["bpb"])
        gaps += [g["nats_per_token"] for g in (best.get("gap_to_ar") or {}).values()]
    if gaps:
        out["ltm_minus_ar_nats"] = _round(min(gaps))
    return out


def headline(inp: Inputs) -> dict[str, dict[str, float | None]]:
    """{named run: numbers, "demo": numbers}, in the order of params `runs:`."""
    named = list(inp.params.get("runs") or {})
    by_name = {r.name: r for r in inp.runs}
    out = {name: run_numbers(by_name[name]) for name in named if name in by_name}
    if inp.demo:
        out["demo"] = demo_numbers(inp.demo)
    return out
