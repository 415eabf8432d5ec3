"""The masked-diffusion baseline (MDLM-style): a bidirectional denoiser scored by its NELBO bound."""
from __future__ import annotations

import torch

from ltm import diffusion as mdlm
from ltm.errors import LtmError
from ltm.eval_diffusion import evaluate_diffusion_split
from ltm.families.base import flat_curve
from ltm.generate import Sampling
from ltm.model import ModelConfig
from ltm.seeds import derive_seed


def model_config(vocab_size: int, seq_len: int, preset: dict) -> ModelConfig:
    return mdlm.denoiser_config(vocab_size, seq_len, **preset)


def build(model_cfg: ModelConfig, process: mdlm.DiffusionConfig) -> mdlm.MaskedDiffusionLM:
    return mdlm.MaskedDiffusionLM(model_cfg, process)


def train_loss(trainer, net, x, y, step, first_row):
    # masks and times seeded by (step, rows): reproducible on resume
    gen = torch.Generator(trainer.device).manual_seed(derive_seed(trainer.spec.seed, 1 + step, first_row))
    return mdlm.diffusion_loss(net, x, gen)[0], None


def val_loss(trainer, x, y, global_batch):
    """The NELBO bound with a few stratified draws, fixed seeds."""
    gen = torch.Generator(trainer.device).manual_seed(derive_seed(trainer.spec.seed, 0, global_batch))
    with torch.no_grad(), trainer.autocast():
        return mdlm.nelbo_bound(trainer.model, x, trainer.spec.train.val_diffusion_samples, gen).sum()


def train_flops(shape, spec) -> tuple[float, float]:
    formula = mdlm.diffusion_train_flops_per_token(*shape)  # bidirectional: the full S x S attention
    return formula, formula


def flops_model(model):
    return model.decoder


def score_split(model, shards, ecfg, post_cfg, *, token_bytes, rows_per_pass=None, desc=None, cache=None) -> dict:
    return evaluate_diffusion_split(model, shards, ecfg, ecfg.diffusion_samples, token_bytes)


def t_curve(model, shards, ecfg, post_cfg, splits, **_) -> list[dict]:
    return flat_curve(ecfg, splits, "diffusion_bound", "diffusion_nelbo", "nelbo")


def sample(model, prompts, max_new, post_cfg, how: Sampling, generator, eos_id):
    length = min(model.cfg.seq_len, prompts.shape[1] + max_new)
    if prompts.shape[1] >= length:
        raise LtmError(f"the prompt ({prompts.shape[1]} tokens) leaves no room in the context ({model.cfg.seq_len})")
    ids = mdlm.sample(model, len(prompts), how.diffusion_steps, prompt=prompts, length=length,
                      temperature=how.temperature, top_k=how.top_k, top_p=how.top_p, generator=generator)
    return ids, {"sampler": "ancestral", "steps": how.diffusion_steps}


def summary(run: str, split: str, rec: dict) -> str:
    d = rec["diffusion_bound"]
    return (f"{run} {split} ({rec['protocol']['diffusion_samples']} draws): diffusion NELBO ppl <= {d['ppl']:.2f}, "
            f"{d['bpb']:.3f} bits/byte")
