"""Do the latents carry information? Diagnostics of a fitted posterior, and the KL floor of the fast loop.

Per batch (after the fast loop has fitted q(z|x)):
  information     NLL with z from another sequence's posterior ("shuffled") or drawn from the prior,
                  minus the NLL at z ~ q(z|x). If the decoder ignores z, both differences are zero
                  up to Monte-Carlo noise. The shuffled difference is the information specific to the
                  sequence (the verdict uses it); the prior one also counts the harm of z values unlike
                  those the decoder was trained on, so it can be large while nothing is encoded.
  KL split        KL(q || N(0, I)) per dimension = 0.5 mu^2 (mean part) + 0.5 (sigma^2 - 1 - log sigma^2)
                  (variance part). A KL that is all variance part is leftover initialisation, not code.
  active units    dimensions whose posterior mean varies across sequences, Cov_x(E_q[z]) > 0.01
                  (Burda et al. 2016).

The KL floor these settings imply before any data is in ltm.fast_loop; `likelihood_free_kl` simulates
the fast loop with the likelihood term removed, the curve a fit of latents that carry nothing would follow.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig, variance_kl
from ltm.model import Decoder
from ltm.posterior import Posterior, eval_mode, kl_to_standard_normal

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016


def likelihood_free_kl(cfg: PosteriorConfig, steps: int, dims: int = 4096, seed: int = 0) -> dict[str, float]:
    """KL per dimension after `steps` AdamW steps on the KL alone (the likelihood gradient set to zero),
    from the fast loop's own initialisation: mean over `dims` simulated dimensions."""
    cfg = replace(cfg, steps=steps)
    gen = torch.Generator().manual_seed(seed)
    mu = (cfg.init_mu_std * torch.randn(dims, generator=gen, dtype=torch.float64)).requires_grad_()
    logvar = (cfg.init_logvar_mean + cfg.init_logvar_std * torch.randn(dims, generator=gen, dtype=torch.float64))
    logvar.requires_grad_()
    opt = torch.optim.AdamW([{"params": [mu], "scale": 1.0}, {"params": [logvar], "scale": cfg.lr_logvar_scale}],
                            lr=cfg.lr_max, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    for k in range(steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr(k) * group["scale"]
        opt.zero_grad()
        kl_to_standard_normal(mu[None], logvar[None]).sum().backward()
        opt.step()
    with torch.no_grad():
        mean_part = float(0.5 * mu.pow(2).mean())
        var_part = float(variance_kl(logvar.numpy()).mean())
    return {"kl_per_dim": mean_part + var_part, "mean_part": mean_part, "variance_part": var_part}


@torch.no_grad()
def alternative_nll(model: Decoder, x: Tensor, y: Tensor, post: Posterior, seed: int) -> dict[str, Tensor]:
    """Per-sequence NLL (B,), float64, with z from the prior and with z from another sequence's posterior
    (the batch rolled by one; None for a batch of one). One draw each, seeded. The partner is the
    neighbouring row, which in a corpus of documents longer than a row may belong to the same
    document: the shuffled estimate is then conservative (it can only understate the information)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    eps = torch.randn((2, *post.mu.shape), generator=gen, device=x.device, dtype=post.mu.dtype)
    out = {}
    with eval_mode(model):
        out["prior"] = model.nll(x, y, eps[0]).to(torch.float64)
        out["shuffled"] = None
        if len(x) > 1:
            mu, logvar = post.mu.roll(1, dims=0), post.logvar.roll(1, dims=0)
            out["shuffled"] = model.nll(x, y, mu + torch.exp(0.5 * logvar) * eps[1]).to(torch.float64)
    return out


def per_token_mean(diff: Tensor, counts: Tensor) -> dict[str, float | None]:
    """Token-weighted mean of per-sequence differences (nats) with its standard error: the sequences
    are the independent units."""
    diff, counts = diff.double(), counts.double()
    total = float(counts.sum())
    se = math.sqrt(len(diff) * float(diff.var())) / total if len(diff) > 1 else None
    return {"nats_per_token": float(diff.sum()) / total, "stderr": se}


def paired_gap(a: dict, b: dict) -> dict[str, float | None]:
    """Bound of model a minus bound of model b on the same rows (evaluate_split's `per_sequence`):
    nats/token with a standard error over the rows, far smaller than either bound's own spread."""
    if a["tokens"] != b["tokens"]:
        raise LtmError("paired comparison of two evaluations that did not score the same rows")
    diff = torch.tensor(a["nats"], dtype=torch.float64) - torch.tensor(b["nats"], dtype=torch.float64)
    return {**per_token_mean(diff, torch.tensor(a["tokens"])), "sequences": len(diff),
            "bounds": f"{a['bound']} - {b['bound']}"}


class UsageTotals:
    """Collects per-sequence diagnostics over the batches of one split."""

    def __init__(self) -> None:
        self.fit: list[Tensor] = []
        self.prior: list[Tensor] = []
        self.shuffled: list[Tensor] = []
        self.shuffled_tokens: list[Tensor] = []  # batches of one have no shuffled partner
        self.tokens: list[Tensor] = []
        self.mu: list[Tensor] = []
        self.mean_part: list[Tensor] = []
        self.var_part: list[Tensor] = []

    def add(self, tokens: Tensor, nll_fit: Tensor, alt: dict[str, Tensor | None], post: Posterior) -> None:
        self.tokens.append(tokens.double().cpu())
        self.fit.append(nll_fit.double().cpu())
        self.prior.append(alt["prior"].cpu())
        if alt["shuffled"] is not None:
            self.shuffled.append((alt["shuffled"] - nll_fit.double()).cpu())
            self.shuffled_tokens.append(tokens.double().cpu())
        mu, logvar = post.mu.double().flatten(1), post.logvar.double().flatten(1)
        self.mu.append(mu.cpu())
        self.mean_part.append((0.5 * mu.pow(2)).sum(1).cpu())
        self.var_part.append((0.5 * (logvar.exp() - 1 - logvar)).sum(1).cpu())

    def summary(self) -> dict:
        tokens = torch.cat(self.tokens)
        N, n = float(tokens.sum()), len(tokens)
        mu = torch.cat(self.mu)
        dims = mu.shape[1]

        prior_gain = per_token_mean(torch.cat(self.prior) - torch.cat(self.fit), tokens)
        shuffled_gain = per_token_mean(torch.cat(self.shuffled), torch.cat(self.shuffled_tokens)) if self.shuffled else None
        mean_part, var_part = float(torch.cat(self.mean_part).sum()), float(torch.cat(self.var_part).sum())
        spread = mu.var(dim=0) if n > 1 else torch.zeros(dims, dtype=torch.float64)
        # Sequence-specific information: against another sequence's posterior, which has the same
        # marginal distribution; prior z can also hurt merely by being out of the decoder's training range.
        test = shuffled_gain or prior_gain
        carries = test["stderr"] is not None and test["nats_per_token"] > 2 * test["stderr"]
        return {
            "nll_fit": float(torch.cat(self.fit).sum()) / N,
            "nll_prior_z": float(torch.cat(self.prior).sum()) / N,
            "information_vs_prior": prior_gain,
            "information_vs_shuffled": shuffled_gain,
            "latents_carry_information": bool(carries),
            "kl_per_token": (mean_part + var_part) / N,
            "kl_per_dim": (mean_part + var_part) / (n * dims),
            "kl_mean_part_per_dim": mean_part / (n * dims),
            "kl_variance_part_per_dim": var_part / (n * dims),
            "latent_dims": dims,
            "active_units": int((spread > ACTIVE_THRESHOLD).sum()),
            "active_threshold": ACTIVE_THRESHOLD,
        }
