"""Demo stage: the paper's mechanism where the answer is known.

Builds the synthetic corpus of `data.corpus.synthetic` (documents generated from a per-document
topic, exact log p recorded), its tokenizer and shards inside the stage's own folder, trains the
`demo.models` presets there with an attention window of `demo.window` tokens (shorter than a
document, so only a latent can carry the topic) on `demo.tokens` tokens each, and scores the val split
at every T_eval of `demo.t_eval`. Output: results/demo/metrics.json (bounds, latent usage and the
ground truth per run and T_eval) with its lineage. Intermediate data and models stay in a temp folder.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from ltm.config import FromParams
from ltm.data.corpus import build_corpus
from ltm.data.loader import TokenShards
from ltm.data.shards import build_shards
from ltm.data.tokenizer import build_tokenizer
from ltm.errors import LtmError
from ltm.eval_bytes import load_token_byte_lengths
from ltm.evaluate import EvalConfig, evaluate_split
from ltm.families import family
from ltm.io import write_json
from ltm.latent_usage import paired_gap
from ltm.runs import resolve_run
from ltm.runtime import Runtime
from ltm.stage_run import begin
from ltm.trainer import Trainer


@dataclass(frozen=True)
class DemoConfig(FromParams):
    """The `demo:` params section (validated there); the optional keys override the presets and params."""
    models: tuple[str, ...]  # presets trained on the synthetic corpus
    tokens: int  # training tokens per model
    window: int  # attention window: shorter than a document, so only a latent can carry its topic
    t_eval: tuple[int, ...]  # T_eval values the LTM runs are scored at
    n_latents: int | None = None  # absent: each LTM preset's own N_z
    batch_tokens: int | None = None  # absent: train.batch_tokens
    posterior: dict = field(default_factory=dict)  # fast-loop keys that replace posterior:'s


def demo_params(params: dict, cfg: DemoConfig) -> dict:
    """params with the synthetic source, the demo's window and one run per demo model."""
    p = copy.deepcopy(params)
    corpus = params["data"]["corpus"]  # only what the synthetic source reads (see stage_params)
    p["data"]["corpus"] = {"source": "synthetic", "synthetic": corpus["synthetic"],
                           "val_fraction": corpus["val_fraction"], "seed": corpus["seed"]}
    p["runs"] = {}
    for name in cfg.models:
        if name not in p["models"]:
            raise LtmError(f"demo.models: unknown model preset {name!r}")
        fam = family(p["models"][name]["family"])
        if not fam.left_to_right:
            raise LtmError(f"demo.models: {name} is a {fam.name} model; the demo compares LTM and AR")
        p["models"][name]["window"] = cfg.window
        if cfg.n_latents and fam.has_latents:
            p["models"][name]["n_latents"] = cfg.n_latents
        p["runs"][name] = {"model": name, "tokens": cfg.tokens}
    if cfg.batch_tokens:
        p["train"]["batch_tokens"] = cfg.batch_tokens
    p["posterior"].update(cfg.posterior)
    p["sweep"] = {}
    return p


def build_data(params: dict, work: Path) -> dict:
    """corpus, tokenizer and shards of `params` under `work`; returns the corpus manifest."""
    data = params["data"]
    corpus = build_corpus(data["corpus"], work / "corpus")
    build_tokenizer(data["tokenizer"], work / "corpus", work / "tokenizer")
    build_shards(data["shards"], work / "corpus", work / "tokenizer", work / "shards")
    return corpus


def train_and_score(params: dict, runtime: Runtime, name: str, work: Path, t_evals: list[int]) -> dict:
    spec = resolve_run(params, name)
    shards = work / "shards"
    trainer = Trainer(spec, shards, work / "runs" / name, runtime, resume="never")
    try:
        metrics = trainer.fit()
        model = trainer.model.eval()
        ecfg = replace(EvalConfig.from_params(params["eval"]), splits=("val",))
        token_bytes = load_token_byte_lengths(work / "tokenizer")
        records = {}
        latents = spec.posterior is not None
        for t in (t_evals if latents else [0]):
            point = replace(ecfg, t_eval=t if latents else None)
            records[str(t)] = evaluate_split(model, TokenShards(shards, "val"), point, post_cfg=spec.posterior,
                                             token_bytes=token_bytes, per_sequence=True,
                                             desc=f"demo: score {name} at T_eval={t}")
    finally:
        trainer.close()
    return {"family": spec.family, "params": metrics["params"], "tokens": metrics["tokens"],
            "inner_steps": spec.inner_steps, "window": spec.model["window"], "n_latents": spec.model["n_latents"],
            "by_T_eval": records}


def attach_gaps(runs: dict) -> None:
    """Each LTM record gets its IWAE bound minus every AR run's exact NLL on the same rows (paired,
    with a standard error over rows); the per-row lists are dropped afterwards."""
    ar = {name: next(iter(run["by_T_eval"].values()))["per_sequence"]
          for name, run in runs.items() if family(run["family"]).exact_likelihood}
    for run in runs.values():
        for rec in run["by_T_eval"].values():
            if family(run["family"]).has_latents:
                rec["gap_to_ar"] = {name: paired_gap(rec["per_sequence"], rows) for name, rows in ar.items()}
            rec.pop("per_sequence", None)


def demo(params_path: str, out: str) -> dict:
    stage = begin("demo", params_path, out=out)
    params = stage.params
    cfg = DemoConfig.from_params(params["demo"])
    p = demo_params(params, cfg)
    with tempfile.TemporaryDirectory(prefix="ltm-demo-") as tmp:
        work = Path(tmp)
        corpus = build_data(p, work)
        runs = {name: train_and_score(p, stage.runtime, name, work, list(cfg.t_eval))
                for name in p["runs"]}
    attach_gaps(runs)
    metrics = {"corpus": corpus["source"], "ground_truth": corpus["ground_truth"]["splits"]["val"],
               "window": cfg.window, "posterior": p["posterior"],
               "batch_tokens": p["train"]["batch_tokens"], "runs": runs}
    out_dir = Path(out)
    write_json(out_dir / "metrics.json", metrics)
    stage.record(out_dir / "metrics.json", {}, record=out_dir / "lineage.json")
    return metrics
