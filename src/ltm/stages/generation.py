"""Generation stage: unconditional and prompt-conditional samples of a run, scored by an AR judge.

Prompts are the first `prompt_tokens` tokens of val rows; their true continuations are the references
(for MAUVE, when installed). The judge is an AR baseline trained by the pipeline (`generation.judge`);
its perplexity of the generated tokens and their unigram entropy are reported per mode.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ltm import generate as gen
from ltm.data.loader import TokenShards
from ltm.data.tokenizer import decode_text, load_tokenizer
from ltm.device import resolve_device
from ltm.errors import LtmError
from ltm.families import family
from ltm.io import write_json
from ltm.model_files import fast_loop, load_model
from ltm.stage_run import begin


def generation(params_path: str, run: str, model_dir: str, judge_dir: str, shards_dir: str, tokenizer_dir: str,
               out: str) -> dict:
    stage = begin("generation", params_path, out=out)
    cfg = gen.GenerationConfig.from_params(stage.params["generation"])
    device = resolve_device(stage.runtime)
    model, config = load_model(Path(model_dir), device)
    judge, jconfig = load_model(Path(judge_dir), device)
    if not family(jconfig["family"]).exact_likelihood:
        raise LtmError(f"the generation judge must be an AR run (exact likelihood), {judge_dir} is {jconfig['family']}")
    if jconfig.get("tokenizer_sha256") != config.get("tokenizer_sha256"):
        raise LtmError("the judge and the scored run use different tokenizers")
    tok, manifest = load_tokenizer(Path(tokenizer_dir))
    bos, eos = manifest["bos_id"], manifest["eos_id"]
    P, new = cfg.prompt_tokens, cfg.max_new_tokens
    if P + new > min(model.cfg.seq_len, judge.cfg.seq_len):
        raise LtmError(f"prompt_tokens + max_new_tokens ({P + new}) exceed the context ({model.cfg.seq_len})")
    rows = torch.from_numpy(TokenShards(Path(shards_dir), "val").gather(range(cfg.samples)).astype("int64"))
    if len(rows) < cfg.samples:
        raise LtmError(f"the val split has {len(rows)} rows, generation.samples asks for {cfg.samples}")
    prompts, references = rows[:, :P].to(device), rows[:, P:P + new]
    modes = {"unconditional": torch.full((cfg.samples, 1), bos, device=device), "conditional": prompts}
    metrics = {"run": run, "family": config["family"], "judge": jconfig["run"],
               "protocol": dict(sorted(asdict(cfg).items())), "modes": {}}
    samples, impl, post_cfg, how = {}, family(config["family"]).impl, fast_loop(config), cfg.sampling()
    for mode, start in modes.items():
        g = torch.Generator(device).manual_seed(cfg.seed)
        ids, _ = impl.sample(model, start, new, post_cfg, how, g, eos)
        texts = [decode_text(tok, r[start.shape[1]:].tolist()) for r in ids]
        refs = [decode_text(tok, r.tolist()) for r in references] if mode == "conditional" else None
        metrics["modes"][mode] = gen.generation_metrics(ids, judge_model=judge, prompt_len=start.shape[1],
                                                        eos_id=eos, texts=texts, reference_texts=refs)
        samples[mode] = texts
    out_dir = Path(out)
    write_json(out_dir / "samples.json", samples)
    write_json(out_dir / "metrics.json", metrics)
    stage.record(out_dir / "metrics.json", {"model": model_dir, "judge": judge_dir, "shards": shards_dir,
                                            "tokenizer": tokenizer_dir}, record=out_dir / "lineage.json")
    return metrics
