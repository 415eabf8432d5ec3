"""The fast loop's settings (PosteriorConfig: its lr cosine) and what they imply before any data, the KL
floor. No torch here: the report computes the floor of the paper's settings without loading a model.

The KL floor: the fast loop starts at log sigma^2 ~ init_logvar_mean (-5 in the paper) and AdamW moves
a parameter by at most lr_t * c_t per step (lr_t times lr_logvar_scale for log sigma^2), where
c_t = max |m_hat_t| / sqrt(v_hat_t) over all gradient histories (Cauchy-Schwarz; c_1 = 1, c_t
slightly above 1 for betas 0.9/0.999), plus decoupled weight
decay, which pulls log sigma^2 towards 0. So after T steps log sigma^2 <= u_T with
    u_0 = init, u_{t+1} = u_t (1 - lr_t wd) + lr_t c_t,
and every dimension keeps a variance-part KL of at least f(min(u_T, 0)), f(v) = 0.5 (e^v - 1 - v),
whatever the decoder does. `kl_floor_per_dim` computes it (averaged over the init's spread by
Gauss-Hermite quadrature).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ltm.config import typed


@dataclass(frozen=True)
class PosteriorConfig:
    """The fast loop's settings: the `posterior:` params section (validated there), with `steps` the
    number of AdamW steps of this fit: posterior.inner_steps at training, eval.t_eval at evaluation."""
    steps: int
    lr_max: float
    lr_min: float
    betas: tuple[float, float]
    weight_decay: float
    adam_eps: float
    init_mu_std: float
    init_logvar_mean: float
    init_logvar_std: float
    decoder_grads: bool  # public-code quirk: inner backward() also accumulates decoder gradients
    lr_logvar_scale: float  # log sigma^2 steps at this multiple of the fast lr (paper: 1, one lr)
    schedule_steps: int | None = None  # steps the lr cosine spans; None = steps (evaluation may differ)

    @classmethod
    def from_params(cls, section: dict) -> "PosteriorConfig":
        return typed(cls, section, steps="inner_steps")

    def lr(self, step: int) -> float:
        """Cosine from lr_max at step 0 towards lr_min over `schedule_steps` (default T; step T would
        reach lr_min); past the end of its span the cosine stays at lr_min."""
        span = self.schedule_steps or self.steps
        coeff = 0.5 * (1.0 + math.cos(math.pi * min(step, span) / span))
        return self.lr_min + coeff * (self.lr_max - self.lr_min)


def adam_step_bound(t: int, betas: tuple[float, float]) -> float:
    """max over gradient histories of |m_hat_t| / sqrt(v_hat_t) at AdamW step t >= 1 (eps ignored)."""
    b1, b2 = betas
    ages = np.arange(t)  # t - i for i = t .. 1
    weights = (b1 ** (2 * ages) / b2 ** ages).sum()
    c1, c2 = (1 - b1) / (1 - b1 ** t), (1 - b2 ** t) / (1 - b2)
    return float(math.sqrt(c1 * c1 * c2 * weights))


def logvar_ceiling(cfg: PosteriorConfig, steps: int, start: float) -> float:
    """The largest log sigma^2 that `steps` AdamW steps can reach from `start` (see the module doc)."""
    u = start
    for k in range(steps):
        lr = cfg.lr(k) * cfg.lr_logvar_scale
        u = u * (1 - lr * cfg.weight_decay) + lr * adam_step_bound(k + 1, cfg.betas)
    return u


def variance_kl(logvar: np.ndarray | float) -> np.ndarray | float:
    return 0.5 * (np.exp(logvar) - 1.0 - logvar)


def kl_floor_per_dim(cfg: PosteriorConfig, steps: int | None = None, nodes: int = 40) -> float:
    """Smallest expected KL per latent dimension after `steps` (default cfg.steps) inner steps.

    The ceiling is affine in the starting point, so its expectation over the init's N(mean, std^2)
    spread is taken exactly enough by Gauss-Hermite quadrature."""
    cfg = cfg if steps is None else replace(cfg, steps=steps)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    starts = cfg.init_logvar_mean + cfg.init_logvar_std * x
    ceilings = np.array([logvar_ceiling(cfg, cfg.steps, float(s)) for s in starts])
    return float((w * variance_kl(np.minimum(ceilings, 0.0))).sum() / w.sum())


def floor_note(cfg: PosteriorConfig, steps: int, dims_per_token: float) -> dict[str, float]:
    """The KL floor of these fast-loop settings at `steps`, per dimension and per token."""
    per_dim = kl_floor_per_dim(cfg, steps)
    return {"kl_floor_per_dim": per_dim, "kl_floor_per_token": per_dim * dims_per_token,
            "ppl_floor": math.exp(per_dim * dims_per_token)}
