"""Evaluate stage against training stage, per run, from the last pipeline run in a workspace.

    python bench/bench_stages.py [--workspace .]

Reads the start and end times each stage wrote beside its outputs (`runs/NAME/model/lineage.run.json`,
`results/eval/NAME/lineage.run.json`), so it measures what `make reproduce` really spent, with whatever
else the machine was doing at the time (the same load for both stages of a run only if nothing else ran).
Also the evaluation's cost per scored token: every split's scored tokens plus, for a model with latents,
the T_eval curve's (points x rows x block length, from the workspace's params.yaml `eval:`).
Beside the wall-clock ratio, the same ratio in FLOPs, which no load moves: the evaluation's `eval_cost`
(what the stage computed, T_eval curve included) over the run's training FLOPs (the paper's formula, the
same conventions).
Target (issue: evaluation proportional to what it reports): evaluate <= 0.3x the training stage.
Without a finished pipeline run in the workspace it says so and exits 0.
"""

import argparse
import datetime as dt
import json
from pathlib import Path

import yaml

TARGET = 0.3


def seconds(run_file: Path) -> float | None:
    if not run_file.is_file():
        return None
    rec = json.loads(run_file.read_text())
    return (dt.datetime.fromisoformat(rec["finished"]) - dt.datetime.fromisoformat(rec["started"])).total_seconds()


def scored_tokens(eval_dir: Path, ecfg: dict | None) -> int:
    """Tokens scored for the record: each split's, plus each T_eval curve point's (a flat curve costs nothing)."""
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    splits = list(metrics["splits"].values())
    total = sum(split["protocol"]["tokens"] for split in splits)
    if metrics["n_latents"] and ecfg is not None:
        rows = ecfg["t_curve_max_rows"] or ecfg["max_rows"]
        total += len(ecfg["t_curve"]) * rows * splits[0]["protocol"]["block_length"]
    return total


def flops_ratio(eval_dir: Path) -> float | None:
    """The evaluation's FLOPs over the training's (None for metrics written before `eval_cost` existed)."""
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    cost = metrics.get("eval_cost")
    return cost["flops"] / metrics["train_flops"] if cost and metrics.get("train_flops") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("."))
    args = parser.parse_args()
    ws = args.workspace
    ecfg = yaml.safe_load((ws / "params.yaml").read_text())["eval"] if (ws / "params.yaml").is_file() else None
    rows = []
    for eval_dir in sorted((ws / "results" / "eval").glob("*/")):
        train_s = seconds(ws / "runs" / eval_dir.name / "model" / "lineage.run.json")
        eval_s = seconds(eval_dir / "lineage.run.json")
        if train_s and eval_s is not None and (eval_dir / "metrics.json").is_file():
            rows.append((eval_dir.name, train_s, eval_s, scored_tokens(eval_dir, ecfg), flops_ratio(eval_dir)))
    if not rows:
        print(f"no finished pipeline run under {ws.resolve()} (make reproduce writes one): nothing to compare")
        return
    print(f"workspace {ws.resolve()}; wall-clock seconds of each stage as the pipeline ran it")
    print(f"{'run':<26}{'train s':>9}{'eval s':>9}{'eval/train':>12}{'FLOPs e/t':>11}{'scored tok':>12}"
          f"{'ms/1k tok':>11}  target")
    for name, train_s, eval_s, tokens, fl in rows:
        ok = "met" if eval_s / train_s <= TARGET else "NOT met"
        print(f"{name:<26}{train_s:>9.0f}{eval_s:>9.0f}{eval_s / train_s:>12.2f}{'—' if fl is None else f'{fl:.2f}':>11}"
              f"{tokens:>12d}{1e6 * eval_s / max(tokens, 1):>11.1f}  <= {TARGET} {ok}")
    train_total, eval_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all runs':<26}{train_total:>9.0f}{eval_total:>9.0f}{eval_total / train_total:>12.2f}")


if __name__ == "__main__":
    main()
