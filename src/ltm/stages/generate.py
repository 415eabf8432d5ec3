"""`ltm generate`: sample text from a trained run (LTM, AR or diffusion), optionally after a prompt."""
from __future__ import annotations

from pathlib import Path

import torch

from ltm import generate as gen
from ltm.data.tokenizer import decode_text, load_tokenizer
from ltm.device import resolve_device
from ltm.families import family
from ltm.io import write_json
from ltm.model_files import fast_loop, load_model
from ltm.stage_run import begin


def generate(params_path: str, run: str, model_dir: str, tokenizer_dir: str, *, prompt: str | None, n: int,
             max_new: int, temperature: float, top_k: int | None, top_p: float | None, greedy: bool,
             z_temperature: float, diffusion_steps: int | None, seed: int, out: str | None) -> list[str]:
    stage = begin("generate", params_path)  # not a pipeline stage: it writes no lineage record
    diffusion_steps = diffusion_steps or stage.params["generation"]["diffusion_steps"]
    device = resolve_device(stage.runtime)
    model, config = load_model(Path(model_dir), device)
    tok, manifest = load_tokenizer(Path(tokenizer_dir))
    bos, eos = manifest["bos_id"], manifest["eos_id"]
    g = torch.Generator(device).manual_seed(seed)
    ids = [bos] + (tok.encode(prompt).ids if prompt else [])
    prompt_ids = torch.tensor([ids] * n, device=device)
    sampling = gen.Sampling(temperature=temperature, top_p=top_p, top_k=top_k, greedy=greedy,
                            z_temperature=z_temperature, diffusion_steps=diffusion_steps)
    out_ids, how = family(config["family"]).impl.sample(model, prompt_ids, max_new, fast_loop(config), sampling, g, eos)
    texts = [decode_text(tok, [t for t in row.tolist()[len(ids):] if t not in (bos, eos)]) for row in out_ids]
    if out:
        write_json(out, {"run": run, "family": config["family"], "prompt": prompt, "seed": seed, "temperature": temperature,
                         "top_k": top_k, "top_p": top_p, "greedy": greedy, **how,
                         "unigram_entropy": gen.unigram_entropy(out_ids, prompt_len=len(ids), eos_id=eos),
                         "samples": texts})
    return texts
