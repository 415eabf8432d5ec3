"""Evaluate stage: a trained run's final model -> bounds on every eval split and a T_eval curve."""
from __future__ import annotations

from pathlib import Path

from ltm.data.loader import TokenShards
from ltm.device import resolve_device
from ltm.eval_bytes import load_token_byte_lengths
from ltm.evaluate import EvalConfig, ScoreCache
from ltm.families import family
from ltm.io import write_json
from ltm.model_files import check_compatible, fast_loop, load_model
from ltm.stage_run import begin
from ltm.tracking import write_rows_tsv


def evaluate(params_path: str, run: str, model_dir: str, shards_dir: str, tokenizer_dir: str, out: str) -> dict:
    stage = begin("evaluate", params_path, out=out)
    ecfg = EvalConfig.from_params(stage.params["eval"])
    device = resolve_device(stage.runtime)
    model, config = load_model(Path(model_dir), device)
    fam = family(config["family"])
    post_cfg = fast_loop(config)
    token_bytes = load_token_byte_lengths(Path(tokenizer_dir))
    micro = stage.runtime.micro_batch or None

    cache = ScoreCache(ecfg)  # the curve's points that the main scoring already computed
    splits = {}
    for split in ecfg.splits:
        shards = TokenShards(Path(shards_dir), split)
        check_compatible(config, shards)
        splits[split] = fam.impl.score_split(model, shards, ecfg, post_cfg, token_bytes=token_bytes,
                                             rows_per_pass=micro, desc=f"evaluate {run} {split}", cache=cache)
    main_flops = cache.flops
    # without inference steps (AR, diffusion) the curve is flat: the same number at every T_eval
    curve = fam.impl.t_curve(model, TokenShards(Path(shards_dir), "val"), ecfg, post_cfg, splits,
                             token_bytes=token_bytes, rows_per_pass=micro, desc=f"evaluate {run} curve", cache=cache)
    for row in curve:  # one column every family has, for `dvc plots`: the honest headline bound
        row["bound"] = row[fam.curve_column]
    metrics = {"run": run, "family": fam.name, "inner_steps": post_cfg.steps if post_cfg else 0,
               "n_latents": config["model"]["n_latents"], "tokens": config["tokens"],
               "params": config.get("params"), "train_flops": config.get("train_flops"), "splits": splits,
               "eval_cost": eval_cost(fam, ecfg, splits, cache, main_flops)}
    out_dir = Path(out)
    write_json(out_dir / "metrics.json", metrics)
    write_rows_tsv(out_dir / "t_curve.tsv", curve)
    stage.record(out_dir / "metrics.json", {"model": model_dir, "shards": shards_dir, "tokenizer": tokenizer_dir},
                 record=out_dir / "lineage.json", files=[out_dir / "metrics.json", out_dir / "t_curve.tsv"])
    return metrics


def eval_cost(fam, ecfg: EvalConfig, splits: dict, cache: ScoreCache, main_flops: float) -> dict:
    """What the whole stage computed, per token it scored on its splits (the T_eval curve included)."""
    scored = sum(r["protocol"]["tokens"] for r in splits.values())
    if fam.has_latents:
        flops, curve = cache.flops, cache.flops - main_flops
        how = ("one fit through the largest T_eval, scored at each T (lr_schedule continue)"
               if ecfg.lr_schedule == "continue" else "one fit per T_eval (lr_schedule respan: the lr cosine spans T)")
    else:  # no fast loop, so the curve repeats the first split's number
        flops = sum(r["protocol"]["flops_per_token"] * r["protocol"]["tokens"] for r in splits.values())
        curve, how = 0.0, None
    return {"scored_tokens": scored, "flops": flops, "flops_per_scored_token": flops / scored,
            "curve_share": curve / flops, "curve_fits": how, "reused_batch_scores": cache.hits,
            "note": "training-formula conventions (6P + 6LdS per token per inner step, 2P + 2LdS per forward pass)"}
