"""`ltm generate`: sample text from a trained run (LTM, AR or diffusion), optionally after a prompt."""
from __future__ import annotations

from pathlib import Path

import torch

from ltm import diffusion as mdlm
from ltm import generate as gen
from ltm.config import load_params
from ltm.data.tokenizer import decode_text, load_tokenizer
from ltm.errors import LtmError
from ltm.io import write_json
from ltm.model_files import load_model
from ltm.posterior import PosteriorConfig
from ltm.runtime import configure_threads, resolve_device


def generate(params_path: str, run: str, model_dir: str, tokenizer_dir: str, *, prompt: str | None, n: int,
             max_new: int, temperature: float, top_k: int | None, top_p: float | None, greedy: bool,
             z_temperature: float, diffusion_steps: int | None, seed: int, out: str | None) -> list[str]:
    params = load_params(params_path)
    diffusion_steps = diffusion_steps or params["generation"]["diffusion_steps"]
    configure_threads(params["runtime"])
    device = resolve_device(params["runtime"])
    model, config = load_model(Path(model_dir), device)
    tok, manifest = load_tokenizer(Path(tokenizer_dir))
    bos, eos = manifest["bos_id"], manifest["eos_id"]
    g = torch.Generator(device).manual_seed(seed)
    ids = [bos] + (tok.encode(prompt).ids if prompt else [])
    prompt_ids = torch.tensor([ids] * n, device=device)
    family = config["family"]
    if family == "diffusion":
        length = min(model.cfg.seq_len, len(ids) + max_new)
        if len(ids) >= length:
            raise LtmError(f"the prompt ({len(ids)} tokens) leaves no room in the context ({model.cfg.seq_len})")
        out_ids = mdlm.sample(model, n, diffusion_steps, prompt=prompt_ids, length=length, temperature=temperature,
                              top_k=top_k, top_p=top_p, generator=g)
        how = {"sampler": "ancestral", "steps": diffusion_steps}
    elif family == "ltm" and not prompt:  # unconditional: z from the prior, scaled
        z = gen.prior_z(model, n, z_temperature, generator=g)
        out_ids = gen.sample(model, prompt_ids, max_new, z, temperature=temperature, top_k=top_k, top_p=top_p,
                             greedy=greedy, generator=g, eos_id=eos)
        how = {"z": "prior", "z_temperature": z_temperature}
    elif family == "ltm":  # conditional: z fitted on the prompt, then fixed
        post = dict(config["posterior"], betas=tuple(config["posterior"]["betas"]), decoder_grads=False)
        out_ids, _ = gen.conditional_sample(model, prompt_ids, max_new, PosteriorConfig(**post), fit_generator=g,
                                            temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                            generator=g, eos_id=eos)
        how = {"z": "fitted on the prompt", "T": post["steps"]}
    else:
        out_ids = gen.sample(model, prompt_ids, max_new, None, temperature=temperature, top_k=top_k, top_p=top_p,
                             greedy=greedy, generator=g, eos_id=eos)
        how = {}
    texts = [decode_text(tok, [t for t in row.tolist()[len(ids):] if t not in (bos, eos)]) for row in out_ids]
    if out:
        write_json(out, {"run": run, "family": family, "prompt": prompt, "seed": seed, "temperature": temperature,
                         "top_k": top_k, "top_p": top_p, "greedy": greedy, **how,
                         "unigram_entropy": gen.unigram_entropy(out_ids, prompt_len=len(ids), eos_id=eos),
                         "samples": texts})
    return texts
