"""The fast inner loop: per-sequence variational posterior q(z|x) = N(mu, diag exp(logvar)).

For a batch of sequences, T AdamW steps on (mu, logvar) minimise the summed negative ELBO
    sum over tokens of -log p(x|z) + KL(q || N(0, I)),   z = mu + exp(logvar / 2) * eps,
with one noise draw eps kept for all steps (Algorithm 1 of the paper). The same loop serves training
(before the slow decoder step) and evaluation (scoring a sequence).

By default the decoder parameters are frozen during the loop and gradients are taken w.r.t. (mu, logvar)
only: the weight-gradient matmuls are skipped (about a third of a full backward) and activations kept only
for weight gradients are not saved. decoder_grads=True reproduces the public code instead: there every
inner step calls backward() on the summed NELBO, so each of the T steps adds the gradient of the summed
token NLL at the current z, unscaled, to the decoder's .grad.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig
from ltm.model import Decoder


@dataclass
class Posterior:
    mu: Tensor  # (B, N_z, d), detached
    logvar: Tensor  # (B, N_z, d), detached
    eps: Tensor  # (B, N_z, d), the one noise draw used at every step
    nelbo_trace: Tensor  # (T,) or (T + 1,): batch-summed NELBO before each step, then at the result
    nll: Tensor | None  # (B,) summed token NLL at the result (None unless scored)
    kl: Tensor | None  # (B,) KL(q || N(0, I)) at the result (None unless scored)

    @property
    def z(self) -> Tensor:
        return self.mu + torch.exp(0.5 * self.logvar) * self.eps

    @property
    def nelbo(self) -> Tensor:
        """Per-sequence NELBO (B,) at the result, with the optimisation noise eps."""
        if self.nll is None or self.kl is None:
            raise LtmError("this posterior was fitted with score=False: it has no final NELBO")
        return self.nll + self.kl


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over all latent dims, per sequence (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


def nelbo_terms(model: Decoder, x: Tensor, y: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence (NLL, KL) at z = mu + sigma * eps."""
    z = mu + torch.exp(0.5 * logvar) * eps
    return model.nll(x, y, z), kl_to_standard_normal(mu, logvar)


def latent_grads(model: Decoder, x: Tensor, y: Tensor, mu: Tensor, logvar: Tensor,
                 eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Batch-summed NELBO and its gradients w.r.t. mu and logvar; no decoder weight gradient is formed."""
    nll, kl = nelbo_terms(model, x, y, mu, logvar, eps)
    loss = (nll + kl).sum()
    grad_mu, grad_logvar = torch.autograd.grad(loss, [mu, logvar])
    return loss.detach(), grad_mu, grad_logvar


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn requires_grad off for every parameter, restoring each flag afterwards."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    try:
        module.eval()
        yield
    finally:
        module.train(was_training)


def fit_posterior(model: Decoder, x: Tensor, y: Tensor, cfg: PosteriorConfig, *,
                  generator: torch.Generator | None = None, noise: Tensor | None = None,
                  score: bool = True) -> Posterior:
    """Fit q(z|x) for a batch by cfg.steps AdamW steps; see fit_trajectory (this is its last stop)."""
    return fit_trajectory(model, x, y, cfg, (cfg.steps,), generator=generator, noise=noise, score=score)[0]


def fit_trajectory(model: Decoder, x: Tensor, y: Tensor, cfg: PosteriorConfig, stops: tuple[int, ...], *,
                   generator: torch.Generator | None = None, noise: Tensor | None = None,
                   score: bool = True) -> list[Posterior]:
    """Fit q(z|x) for a batch: x, y (B, S) input and target ids (targets of -1 are ignored), and return
    the posterior after each number of steps in `stops` (increasing, the last one cfg.steps). One fit
    serves every stop: a stop at t equals a fit of t steps when cfg's lr schedule does not depend on
    cfg.steps (schedule_steps set), and is then bitwise the same.

    Works in float32 and inside a caller's torch.autocast (mu, logvar and the KL stay in float32) or
    torch.no_grad (the loop turns gradients back on), not inside torch.inference_mode. generator (on x's
    device) makes the initialisation and noise reproducible; alternatively `noise` (3, B, N_z, d) gives
    the standard-normal draws for mu0, logvar0 and eps directly (e.g. one seed per sequence, so results
    do not depend on how sequences are grouped into batches). score=False skips the final forward pass
    that measures the per-sequence NLL and KL of the result.
    """
    mcfg = model.cfg
    if not mcfg.n_latents:
        raise LtmError("fit_posterior needs a model with latents (n_latents > 0)")
    if x.shape != y.shape or x.dim() != 2:
        raise LtmError(f"x and y must both be (batch, seq), got {tuple(x.shape)} and {tuple(y.shape)}")
    shape = (x.shape[0], mcfg.n_latents, mcfg.d_model)
    dtype = torch.promote_types(model.embed.weight.dtype, torch.float32)  # latents never below float32
    if noise is None:
        noise = torch.randn((3, *shape), generator=generator, device=x.device, dtype=dtype)
    elif tuple(noise.shape) != (3, *shape):
        raise LtmError(f"noise must have shape {(3, *shape)}, got {tuple(noise.shape)}")
    noise_mu, noise_logvar, eps = noise.to(device=x.device, dtype=dtype).unbind(0)
    mu = (cfg.init_mu_std * noise_mu).requires_grad_()
    logvar = (cfg.init_logvar_mean + cfg.init_logvar_std * noise_logvar).requires_grad_()
    opt = torch.optim.AdamW([{"params": [mu], "scale": 1.0}, {"params": [logvar], "scale": cfg.lr_logvar_scale}],
                            lr=cfg.lr_max, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    stops = tuple(stops)
    if not stops or list(stops) != sorted(set(stops)) or stops[0] < 0 or stops[-1] != cfg.steps:
        raise LtmError(f"stops must increase from >= 0 to the fit's {cfg.steps} steps, got {stops}")
    trace: list[Tensor] = []
    out: list[Posterior] = []

    def stop(last: bool) -> None:  # the posterior as it is now (copied unless last: the steps update it in place)
        nll = kl = None
        done = list(trace)
        if score:
            with torch.no_grad():
                nll, kl = nelbo_terms(model, x, y, mu, logvar, eps)
            done.append((nll + kl).sum())
        nelbo_trace = torch.stack(done) if done else torch.zeros(0, device=x.device)
        keep = (lambda t: t.detach()) if last else (lambda t: t.detach().clone())
        out.append(Posterior(keep(mu), keep(logvar), eps, nelbo_trace, nll, kl))

    with eval_mode(model), torch.enable_grad():
        done = 0
        for target in stops:
            # frozen from one stop to the next, and each stop scored outside, with the caller's requires_grad
            # flags, as a fit of that many steps is: CPU kernels for weights that need no gradient round differently
            with nullcontext() if cfg.decoder_grads else frozen(model):
                for step in range(done, target):
                    for group in opt.param_groups:
                        group["lr"] = cfg.lr(step) * group["scale"]
                    if cfg.decoder_grads:
                        nll, kl = nelbo_terms(model, x, y, mu, logvar, eps)
                        loss = (nll + kl).sum()
                        mu.grad = logvar.grad = None
                        loss.backward()
                    else:
                        loss, mu.grad, logvar.grad = latent_grads(model, x, y, mu, logvar, eps)
                    opt.step()
                    trace.append(loss.detach())
            done = target
            stop(last=target == stops[-1])
    return out
