"""Per-batch likelihood estimators for LTMs and the autoregressive baseline.

Every function returns per-sequence SUMS over the scored tokens, in nats, float64, shape (B,); the
caller aggregates token-weighted. In negative-log-likelihood terms, for a sequence x and any q:

    -log p(x)  <=  E[IWAE_K]  <=  E[IWAE_1] = -ELBO(q)          (Burda et al.: E[IWAE_K] falls with K)

  paper_protocol  q fitted on x itself by T_eval AdamW steps; NELBO with the SAME noise eps the fit was
                  optimised against. One optimised draw: biased low, NOT a bound (it can undercut -log p(x)).
  fresh_elbo      same q, K fresh draws eps_k: mean_k NLL(z_k) + analytic KL. Unbiased for -ELBO(q).
  iwae            same q and the same K draws: -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x).
                  For K = 1 it is NLL(z_1) + log q(z_1) - log p(z_1): the single-sample ELBO with a
                  sampled KL, equal to fresh_elbo in expectation (not draw by draw).
  ar_nll          exact -log p(x) of a model without latents.

Sharing the K draws between fresh_elbo and iwae costs K decoder passes instead of 2K; both remain
valid estimators. All randomness comes from explicit integer seeds, so reruns give identical numbers.
"""

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig
from ltm.model import Decoder
from ltm.posterior import Posterior, eval_mode, fit_trajectory, kl_to_standard_normal
from ltm.seeds import derive_seed


def scored_tokens(y: Tensor) -> Tensor:
    """Targets that count per sequence (B,), float64; -1 marks an ignored target."""
    return (y >= 0).sum(dim=1).to(torch.float64)


def _check_batch(model: Decoder, x: Tensor, y: Tensor, latents: bool) -> None:
    if x.shape != y.shape or x.dim() != 2:
        raise LtmError(f"x and y must both be (batch, seq), got {tuple(x.shape)} and {tuple(y.shape)}")
    if latents and not model.cfg.n_latents:
        raise LtmError("this estimator needs a model with latents (n_latents > 0); use ar_nll for the baseline")
    if not latents and model.cfg.n_latents:
        raise LtmError("ar_nll is exact only for a model without latents (n_latents = 0)")


@torch.no_grad()
def ar_nll(model: Decoder, x: Tensor, y: Tensor) -> Tensor:
    """Exact per-sequence NLL of the autoregressive baseline (B,), float64."""
    _check_batch(model, x, y, latents=False)
    with eval_mode(model):
        return model.nll(x, y).to(torch.float64)


def fit_for_eval(model: Decoder, x: Tensor, y: Tensor, *, steps: int, seed: int,
                 post_cfg: PosteriorConfig) -> Posterior:
    """q(z|x) after `steps` (= T_eval) AdamW steps, initialisation and noise drawn from `seed`."""
    return fit_stops_for_eval(model, x, y, stops=(steps,), seed=seed, post_cfg=post_cfg)[0]


def fit_stops_for_eval(model: Decoder, x: Tensor, y: Tensor, *, stops: tuple[int, ...], seed: int,
                       post_cfg: PosteriorConfig) -> list[Posterior]:
    """q(z|x) after each number of steps in `stops` (one fit of stops[-1] steps, ltm.posterior.fit_trajectory).

    The rest of the fast-loop settings (learning rates, betas, init) come from post_cfg, normally the
    training ones. Decoder gradients are never accumulated here, whatever post_cfg.decoder_grads says:
    they would not change (mu, logvar), only waste work and leave .grad behind.
    """
    _check_batch(model, x, y, latents=True)
    cfg = replace(post_cfg, steps=stops[-1], decoder_grads=False)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return fit_trajectory(model, x, y, cfg, stops, generator=gen, score=True)


@dataclass
class Estimate:
    """Per-sequence sums (B,) in nats, float64. nll/kl are None where the estimator does not split."""
    total: Tensor
    nll: Tensor | None = None
    kl: Tensor | None = None
    nll_var: Tensor | None = None  # per-sequence variance of NLL(z_k) over k (for a standard error)


def paper_protocol(post: Posterior) -> Estimate:
    """The public code's number: NELBO at the fitted q with the noise eps it was optimised against."""
    if post.nll is None or post.kl is None:
        raise LtmError("paper_protocol needs a posterior fitted with score=True")
    nll, kl = post.nll.to(torch.float64), post.kl.to(torch.float64)
    return Estimate(total=nll + kl, nll=nll, kl=kl)


def paper_perplexity(nelbo: Tensor, tokens: Tensor) -> Tensor:
    """Per-sequence exp(NELBO / len); the paper reports the MEAN of these over sequences."""
    return torch.exp(nelbo.to(torch.float64) / tokens.to(torch.float64))


@dataclass
class Samples:
    """K fresh draws from q for a batch: NLL(z_k) and log p(z_k) - log q(z_k|x), each (K, B), float64."""
    nll: Tensor
    log_prior_ratio: Tensor

    @property
    def log_weights(self) -> Tensor:
        """log p(x, z_k) - log q(z_k|x), (K, B)."""
        return -self.nll + self.log_prior_ratio


@torch.no_grad()
def draw_samples(model: Decoder, x: Tensor, y: Tensor, post: Posterior, *, samples: int, seed: int,
                 rows_per_pass: int | None = None) -> Samples:
    """Score K = `samples` fresh draws z_k = mu + sigma * eps_k, eps_k independent of the fit's noise.

    All K noise tensors are drawn at once from `seed`, so the numbers do not depend on rows_per_pass,
    which only sets how many (sample, sequence) rows go through the decoder together (memory vs speed;
    default: one sample of the batch per pass).
    """
    _check_batch(model, x, y, latents=True)
    if not isinstance(samples, int) or samples < 1:
        raise LtmError(f"the number of samples K must be a positive integer, got {samples!r}")
    B = x.shape[0]
    gen = torch.Generator(device=x.device).manual_seed(seed)
    eps = torch.randn((samples, *post.mu.shape), generator=gen, device=x.device, dtype=post.mu.dtype)
    z = post.mu + torch.exp(0.5 * post.logvar) * eps  # the exact z the decoder sees
    # density ratio evaluated at that z in float64: the log 2*pi terms cancel
    zd, mu, logvar = z.double(), post.mu.double(), post.logvar.double()
    log_q = -0.5 * ((zd - mu).pow(2) * torch.exp(-logvar) + logvar)
    ratio = (-0.5 * zd.pow(2) - log_q).flatten(2).sum(dim=2)
    per_pass = max(1, (rows_per_pass or B) // B)
    nll = []
    with eval_mode(model):
        for start in range(0, samples, per_pass):
            chunk = z[start:start + per_pass]
            c = len(chunk)
            nll.append(model.nll(x.repeat(c, 1), y.repeat(c, 1), chunk.flatten(0, 1)).view(c, B))
    return Samples(nll=torch.cat(nll).to(torch.float64), log_prior_ratio=ratio)


def fresh_elbo(post: Posterior, draws: Samples) -> Estimate:
    """-ELBO(q) estimated with fresh noise: mean_k NLL(z_k) + KL(q || N(0, I)) in closed form."""
    nll = draws.nll.mean(dim=0)
    kl = kl_to_standard_normal(post.mu.double(), post.logvar.double())
    var = draws.nll.var(dim=0) if len(draws.nll) > 1 else None
    return Estimate(total=nll + kl, nll=nll, kl=kl, nll_var=var)


def iwae(draws: Samples) -> Estimate:
    """Importance-weighted bound with q as proposal: -(logsumexp_k log w_k - log K)."""
    K = draws.nll.shape[0]
    return Estimate(total=-(torch.logsumexp(draws.log_weights, dim=0) - math.log(K)))


@dataclass
class BatchScores:
    tokens: Tensor  # (B,) scored targets
    paper: Estimate
    fresh: Estimate
    iwae: Estimate
    posterior: Posterior


def score_batch(model: Decoder, x: Tensor, y: Tensor, *, steps: int, samples: int, seed: int,
                post_cfg: PosteriorConfig, rows_per_pass: int | None = None) -> BatchScores:
    """Fit q once (T_eval = steps) and compute all three LTM estimators from it.

    Two independent streams come from `seed`: one for the fit's initialisation and noise, one for the K
    fresh draws. The same seed at different T_eval starts from the same point: curves over T are paired.
    """
    return score_stops(model, x, y, stops=(steps,), samples=samples, seed=seed, post_cfg=post_cfg,
                       rows_per_pass=rows_per_pass)[steps]


def score_stops(model: Decoder, x: Tensor, y: Tensor, *, stops: tuple[int, ...], samples: int, seed: int,
                post_cfg: PosteriorConfig, rows_per_pass: int | None = None) -> dict[int, BatchScores]:
    """score_batch at every T_eval in `stops` from ONE fit of stops[-1] steps, valid (and bitwise the same
    as separate fits) when post_cfg's lr schedule does not depend on the number of steps."""
    posts = fit_stops_for_eval(model, x, y, stops=stops, seed=derive_seed(seed, 0), post_cfg=post_cfg)
    out = {}
    for t, post in zip(stops, posts):
        draws = draw_samples(model, x, y, post, samples=samples, seed=derive_seed(seed, 1),
                             rows_per_pass=rows_per_pass)
        out[t] = BatchScores(tokens=scored_tokens(y), paper=paper_protocol(post), fresh=fresh_elbo(post, draws),
                             iwae=iwae(draws), posterior=post)
    return out


def bits_per_byte(total_nats: float, n_bytes: float) -> float:
    """Total nats over the scored text / (ln 2 * its UTF-8 bytes)."""
    if not n_bytes > 0:
        raise LtmError(f"bits per byte needs a positive byte count, got {n_bytes}")
    return total_nats / (math.log(2) * n_bytes)
