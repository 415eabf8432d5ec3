"""The Latent Thought Model: a decoder cross-attending to per-sequence latents z ~ q(z|x), fitted by
the fast loop before every use (training step, validation, scoring, prompted generation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltm import flops
from ltm import generate as gen
from ltm.evaluate import evaluate_split, t_eval_curve
from ltm.families.ar import build, flops_model, model_config  # noqa: F401  the same decoder, with latents
from ltm.posterior import fit_posterior, kl_to_standard_normal


def infer_z(trainer, x, y, stream: int, first_row: int):
    """The fast loop on a micro-batch, noise seeded per global row (trainer.row_noise)."""
    noise = trainer.row_noise(stream, first_row, len(x))
    with trainer.autocast():
        return fit_posterior(trainer.model, x, y, trainer.spec.posterior, noise=noise, score=False)


def train_loss(trainer, net, x, y, step, first_row):
    """Dual rate: T fast steps fit q(z|x) with the decoder frozen, then the decoder's loss at the fitted
    z = mu + sigma * eps (detached: the slow step never differentiates through the fast loop)."""
    post = infer_z(trainer, x, y, stream=1 + step, first_row=first_row)
    logits = net(x, post.z.detach())
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), post


def val_loss(trainer, x, y, global_batch):
    """The NELBO after the training T, fixed seeds, with the optimisation noise."""
    post = infer_z(trainer, x, y, stream=0, first_row=global_batch * trainer.micro)
    with torch.no_grad(), trainer.autocast():
        return (trainer.model.nll(x, y, post.z) + kl_to_standard_normal(post.mu, post.logvar)).sum()


def train_flops(shape, spec) -> tuple[float, float]:
    """The paper's (T + 1)(6P + 6LdS), and the latent-only inner loop that really runs."""
    T = spec.posterior.steps
    return (flops.train_flops_per_token(*shape, steps=T),
            flops.train_flops_per_token(*shape, steps=T, latent_only=not spec.posterior.decoder_grads))


def score_split(model, shards, ecfg, post_cfg, *, token_bytes, rows_per_pass=None, desc=None, cache=None) -> dict:
    return evaluate_split(model, shards, ecfg, post_cfg=post_cfg, token_bytes=token_bytes,
                          rows_per_pass=rows_per_pass, desc=desc, cache=cache)


def t_curve(model, shards, ecfg, post_cfg, splits, *, token_bytes, rows_per_pass=None, desc=None,
            cache=None) -> list[dict]:
    return t_eval_curve(model, shards, None, ecfg, post_cfg=post_cfg, token_bytes=token_bytes,
                        rows_per_pass=rows_per_pass, desc=desc, cache=cache)


def sample(model, prompts, max_new, post_cfg, how: gen.Sampling, generator, eos_id):
    """Unconditional (a BOS prompt): z from the tempered prior; prompted: z fitted on the prompt, then fixed."""
    kw = {"temperature": how.temperature, "top_k": how.top_k, "top_p": how.top_p, "greedy": how.greedy,
          "generator": generator, "eos_id": eos_id}
    if prompts.shape[1] == 1:
        z = gen.prior_z(model, len(prompts), how.z_temperature, generator=generator)
        return gen.sample(model, prompts, max_new, z, **kw), {"z": "prior", "z_temperature": how.z_temperature}
    ids, _ = gen.conditional_sample(model, prompts, max_new, post_cfg, fit_generator=generator, **kw)
    return ids, {"z": "fitted on the prompt", "T": post_cfg.steps}


def summary(run: str, split: str, rec: dict) -> str:
    p = rec["protocol"]
    line = (f"{run} {split} (T_eval={p['T_eval']}, K={p['K']}): IWAE ppl <= {rec['iwae']['ppl']:.2f}, "
            f"fresh ELBO ppl <= {rec['fresh_elbo']['ppl']:.2f}, paper protocol {rec['paper']['ppl']:.2f} "
            f"(biased), {rec['iwae']['bpb']:.3f} bits/byte (IWAE)")
    if "latent_usage" in rec:
        u = rec["latent_usage"]
        info = u["information_vs_shuffled"] or u["information_vs_prior"]
        line += (f"\n  latents: {info['nats_per_token']:.4f} ± {info['stderr'] or 0:.4f} nats/token of information "
                 f"({'carried' if u['latents_carry_information'] else 'none measurable'}); KL {u['kl_per_token']:.3f} "
                 f"nats/token, floor {u['kl_floor_per_token']:.3f}; {u['active_units']}/{u['latent_dims']} active units")
    return line
