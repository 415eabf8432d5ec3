"""Few-shot stage: k-shot arithmetic word problems (or GSM8K), pass@n, for one trained run."""
from __future__ import annotations

from pathlib import Path

from ltm.data.tokenizer import load_tokenizer
from ltm.device import resolve_device
from ltm.errors import LtmError
from ltm.families import family
from ltm.fewshot import FewshotConfig, load_gsm8k, make_problems, pass_at_n
from ltm.io import write_json
from ltm.model_files import fast_loop, load_model
from ltm.stage_run import begin


def fewshot(params_path: str, run: str, model_dir: str, tokenizer_dir: str, out: str) -> dict:
    stage = begin("fewshot", params_path, out=out)
    cfg = FewshotConfig.from_params(stage.params["fewshot"])
    model, config = load_model(Path(model_dir), resolve_device(stage.runtime))
    tok, manifest = load_tokenizer(Path(tokenizer_dir))
    protocol = {"source": cfg.source, "problems": cfg.problems, "pool": cfg.pool, "n": cfg.n, "seed": cfg.seed,
                "max_new_tokens": cfg.max_new_tokens, "format": "Question: q Answer: a",
                "correct_if": "the expected answer is the first number of any of the n completions"}
    metrics: dict = {"run": run, "family": config["family"], "protocol": protocol, "by_k": {}}
    samples = {}
    if not family(config["family"]).left_to_right:
        metrics["note"] = "not run: the few-shot protocol decodes left to right (LTM, AR)"
    else:
        if cfg.source == "gsm8k":
            problems, pool = load_gsm8k("test", cfg.problems), load_gsm8k("train", cfg.pool)
        else:  # demonstrations come from a disjoint seeded pool; the generator also never repeats a question
            problems, pool = make_problems(cfg.problems, cfg.seed), make_problems(cfg.pool, cfg.seed + 1)
        post = fast_loop(config)
        if post is not None:
            protocol["T"] = post.steps
            protocol["decoding"] = "greedy, one posterior fit per try (n independent z)"
        else:
            protocol["decoding"] = f"temperature {cfg.temperature} sampling, n samples"
        for k in cfg.k:
            try:
                result = pass_at_n(model, tok, problems, k, cfg.n, post, pool=pool, bos_id=manifest["bos_id"],
                                   eos_id=manifest["eos_id"], max_new_tokens=cfg.max_new_tokens,
                                   temperature=cfg.temperature, seed=cfg.seed)
            except LtmError as exc:
                if "no room in the context" not in str(exc):
                    raise
                # a small context cannot hold k demonstrations: say so instead of failing the pipeline
                metrics["by_k"][str(k)] = {"skipped": str(exc)}
                continue
            metrics["by_k"][str(k)] = {"k": k, "n": cfg.n, "source": cfg.source,
                                       "pass_at_n": result["pass_at_n"], "solved": result["solved"],
                                       "problems": result["problems"]}
            samples[str(k)] = result["records"]
    out_dir = Path(out)
    write_json(out_dir / "samples.json", samples)
    write_json(out_dir / "metrics.json", metrics)
    stage.record(out_dir / "metrics.json", {"model": model_dir, "tokenizer": tokenizer_dir}, record=out_dir / "lineage.json")
    return metrics
