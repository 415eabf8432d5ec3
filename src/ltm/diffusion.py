"""Masked (absorbing-state) diffusion language model: the MDLM baseline (Sahoo et al. 2024).

The denoiser is the LTM decoder with bidirectional self-attention (causal=False), no latents, and one
extra input token [MASK] with id = tokenizer vocab size (the embedding has vocab + 1 rows). Its output
never predicts [MASK]: that logit is -inf.

Forward process: each token is independently replaced by [MASK] with probability 1 - alpha_t,
    loglinear (MDLM's default): 1 - alpha_t = (1 - eps) t
    cosine:                     1 - alpha_t = (1 - eps) (1 - cos(pi t / 2))
so alpha_0 = 1 (clean) and alpha_1 = eps (all but a fraction eps masked).

SUBS parameterisation: unmasked positions carry their token over (zero loss, copied when sampling),
so the continuous-time NELBO is a weighted cross-entropy on the masked positions,
    NELBO(x) = int_0^1 w(t) E_{z_t} [ sum_{l masked} -log p(x_l | z_t) ] dt,   w = -alpha'_t / (1 - alpha_t)
(w = 1/t for loglinear, whatever eps). No time conditioning: MDLM found it unnecessary, and without it
the denoiser depends on z_t alone, which is what makes the schedule-free bound below valid.

Substituting the masked fraction u = 1 - alpha_t and integrating u out given the number k of masked
tokens (int_0^1 u^(k-1) (1-u)^(S-k) du = 1 / (k C(S, k))) gives the same NELBO with alpha_0 = 1,
alpha_1 = 0 exactly, for every schedule:
    NELBO(x) = sum_{k=1}^{S} E_{k random positions masked} [ (1/k) sum_{l masked} -log p(x_l | z) ].
`nelbo_bound` estimates this ("count" form, bounded weights S/k, stratified over k); MDLM's own
estimator (t ~ U[t_min, 1], weight w(t), eps > 0) is available as method="time" and is what the
training loss uses; it leaves out the masked fractions below mask_rate(t_min) and above 1 - eps.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ltm.config import FromParams
from ltm.errors import LtmError
from ltm.generate import next_token
from ltm.model import Decoder, ModelConfig, token_nll


@dataclass(frozen=True)
class DiffusionConfig(FromParams):
    """The `diffusion:` params section (validated there)."""
    schedule: str  # loglinear | cosine
    eps: float  # alpha_1 = eps (MDLM's LogLinearNoise eps)
    t_min: float  # training times t ~ U[t_min, 1] keep the weight w(t) <= ~1/t_min (MDLM's sampling_eps)

    def _shape(self, t: Tensor) -> Tensor:
        """m(t) in [0, 1], m(0) = 0, m(1) = 1; the masked fraction is (1 - eps) m(t)."""
        if self.schedule == "loglinear":
            return t
        return 2 * torch.sin(math.pi * t / 4) ** 2  # 1 - cos(pi t / 2), without cancellation near 0

    def mask_rate(self, t: Tensor) -> Tensor:
        """1 - alpha_t: the probability that a token is [MASK] at time t."""
        return (1 - self.eps) * self._shape(t)

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - self.mask_rate(t)

    def weight(self, t: Tensor) -> Tensor:
        """w(t) = -alpha'_t / (1 - alpha_t) = m'(t) / m(t); eps cancels."""
        if self.schedule == "loglinear":
            return 1 / t
        return (math.pi / 2) / torch.tan(math.pi * t / 4)  # (pi/2) sin(pi t/2) / (1 - cos(pi t/2))


def denoiser_config(vocab_size: int, seq_len: int, **preset) -> ModelConfig:
    """The denoiser's ModelConfig from a tokenizer vocab size and a preset (d_model, n_layers, n_heads,
    optional window, ...): vocab + 1 embedding rows, bidirectional, no latents; the window defaults to
    seq_len, i.e. full attention as in MDLM."""
    preset = dict(preset)
    if preset.pop("n_latents", 0):
        raise LtmError("a diffusion model takes no latents (n_latents must be 0)")
    if preset.pop("causal", False):
        raise LtmError("a diffusion denoiser is bidirectional (causal must be false)")
    preset.setdefault("window", seq_len)
    return ModelConfig(vocab_size=vocab_size + 1, seq_len=seq_len, n_latents=0, causal=False, **preset)


class MaskedDiffusionLM(nn.Module):
    """x_t (B, S) ids in [0, vocab], vocab = [MASK] -> logits (B, S, vocab + 1) with the [MASK] logit -inf."""

    def __init__(self, cfg: ModelConfig, diffusion: DiffusionConfig) -> None:
        super().__init__()
        if cfg.causal or cfg.n_latents:
            raise LtmError("the diffusion denoiser needs causal=False and n_latents=0 (see denoiser_config)")
        self.cfg, self.diffusion = cfg, diffusion
        self.vocab_size = cfg.vocab_size - 1
        self.mask_id = self.vocab_size
        self.decoder = Decoder(cfg)
        self.register_buffer("is_mask_column", torch.arange(cfg.vocab_size) == self.mask_id, persistent=False)

    @classmethod
    def build(cls, vocab_size: int, seq_len: int, diffusion: DiffusionConfig, **preset) -> "MaskedDiffusionLM":
        return cls(denoiser_config(vocab_size, seq_len, **preset), diffusion)

    def forward(self, xt: Tensor) -> Tensor:
        return self.decoder(xt).masked_fill(self.is_mask_column, -math.inf)


def unwrap(model: nn.Module) -> MaskedDiffusionLM:
    """The MaskedDiffusionLM inside a DDP / compiled wrapper (for its attributes; calls go to the wrapper)."""
    while not isinstance(model, MaskedDiffusionLM):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise LtmError(f"expected a MaskedDiffusionLM, got {type(model).__name__}")
        model = inner
    return model


def masked_nll(model: nn.Module, x: Tensor, masked: Tensor) -> Tensor:
    """sum over masked positions of -log p(x_l | x with those positions masked), per sequence (B,).

    SUBS: unmasked positions are carried over, so they cost nothing and are not scored.
    """
    xt = x.masked_fill(masked, unwrap(model).mask_id)
    return token_nll(model(xt), x.masked_fill(~masked, -1))


def stratified_uniform(n: int, generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    """n draws, one uniform in each of [i/n, (i+1)/n): low-discrepancy, each marginally U[0, 1)."""
    return (torch.arange(n, device=device) + torch.rand(n, generator=generator, device=device)) / n


def _time_terms(model: nn.Module, x: Tensor, t: Tensor,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """w(t) * masked NLL per sequence at times t (B,), with the masked NLL and the mask itself."""
    diff = unwrap(model).diffusion
    masked = torch.rand(x.shape, generator=generator, device=x.device) < diff.mask_rate(t)[:, None]
    nll = masked_nll(model, x, masked)
    # t = 0 masks nothing; a zero weight there keeps inf * 0 out of the loss and its gradient
    w = torch.where(t > 0, diff.weight(t.clamp_min(1e-30)), torch.zeros_like(t))
    return w * nll, nll, masked


def diffusion_loss(model: nn.Module, x: Tensor, generator: torch.Generator | None = None,
                   t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The slow-step loss: the NELBO estimate per token, one stratified t per sequence, mean over B * S.

    t (B,) given: the integrand w(t) * masked NLL at those times instead (no time sampling). stats
    (detached): nelbo_per_seq (B,) in nats, masked_frac, masked_nll (mean -log p of a masked token).
    """
    diff = unwrap(model).diffusion
    scale = 1.0
    if t is None:
        # t = t_min + (1 - t_min) U: the factor (1 - t_min) makes this the integral over [t_min, 1]
        t = diff.t_min + (1 - diff.t_min) * stratified_uniform(x.shape[0], generator, x.device)
        scale = 1 - diff.t_min
    per_seq, nll, masked = _time_terms(model, x, t, generator)
    per_seq = scale * per_seq
    stats = {"nelbo_per_seq": per_seq.detach(), "masked_frac": masked.float().mean(),
             "masked_nll": nll.detach().sum() / masked.sum().clamp_min(1)}
    return per_seq.sum() / x.numel(), stats


def random_subset(batch: int, seq: int, k: Tensor, generator: torch.Generator | None,
                  device: torch.device | str) -> Tensor:
    """(B, S) bool: k[b] positions of row b chosen uniformly at random."""
    rank = torch.rand(batch, seq, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    return rank < k[:, None]


@torch.no_grad()
def nelbo_bound(model: nn.Module, x: Tensor, n_samples: int, generator: torch.Generator | None = None, *,
                method: str = "count") -> Tensor:
    """Per-sequence NELBO in nats (B,), float64, averaged over n_samples Monte-Carlo draws (one forward each).

    "count" (default): the exact continuous-time NELBO (alpha_0 = 1, alpha_1 = 0, any schedule) via the
    number of masked tokens k, stratified over k across the n_samples draws of each sequence; a valid upper
    bound on -log p(x) of the continuous-time reverse process. "time": MDLM's estimator with the model's
    schedule, t stratified over [t_min, 1]; slightly optimistic (truncated at both ends).
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise LtmError(f"n_samples must be a positive integer, got {n_samples!r}")
    if method not in ("count", "time"):
        raise LtmError(f"method must be 'count' or 'time', got {method!r}")
    diff = unwrap(model).diffusion
    B, S = x.shape
    total = torch.zeros(B, dtype=torch.float64, device=x.device)
    for j in range(n_samples):
        v = (j + torch.rand(B, generator=generator, device=x.device)) / n_samples  # stratum j of U[0, 1)
        if method == "count":
            k = (v * S).long().clamp_max(S - 1) + 1  # uniform on {1..S} over the strata
            est = S / k * masked_nll(model, x, random_subset(B, S, k, generator, x.device))
        else:
            est = (1 - diff.t_min) * _time_terms(model, x, diff.t_min + (1 - diff.t_min) * v, generator)[0]
        total += est.double()
    return total / n_samples


def summarise_bound(total_nats: float, total_tokens: int) -> dict[str, float]:
    """Token-weighted summary of summed per-sequence bounds: nats/token, bits/token and the PPL bound."""
    if total_tokens < 1:
        raise LtmError("no tokens to summarise")
    per_token = total_nats / total_tokens
    return {"nats_per_token": per_token, "bits_per_token": per_token / math.log(2), "ppl_bound": math.exp(per_token)}


@torch.no_grad()
def infill(model: nn.Module, xt: Tensor, steps: int, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Replace every [MASK] in xt (B, S) by ancestral sampling of the reverse process over `steps` steps.

    Times 1 = t_0 > t_1 > ... > t_steps = 0, uniform. At each step a masked position is revealed with
    probability (alpha_s - alpha_t) / (1 - alpha_t), its token drawn from the denoiser; revealed and given
    tokens never change (carry-over). The last step reveals everything left. A step that reveals nothing
    needs no forward pass: without time conditioning the denoiser's output depends on x_t alone.
    """
    if not isinstance(steps, int) or steps < 1:
        raise LtmError(f"steps must be a positive integer, got {steps!r}")
    core = unwrap(model)
    diff = core.diffusion
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    x = xt.clone()
    for i in range(steps):
        masked = x == core.mask_id
        if not masked.any():
            break
        a_t, a_s = diff.alpha(times[i]).item(), diff.alpha(times[i + 1]).item()
        p_reveal = 1.0 if i == steps - 1 else (a_s - a_t) / (1 - a_t)
        reveal = masked & (torch.rand(x.shape, generator=generator, device=x.device) < p_reveal)
        if not reveal.any():
            continue
        x[reveal] = next_token(model(x)[reveal], temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=generator)
    return x


@torch.no_grad()
def sample(model: nn.Module, batch: int, steps: int, *, prompt: Tensor | None = None,
           length: int | None = None, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """(batch, length) token ids, no [MASK]: unconditional, or continuing a fixed prompt (P,) or (batch, P).

    length defaults to the model's seq_len; a prompt occupies the first P positions and is kept as given.
    """
    core = unwrap(model)
    length = core.cfg.seq_len if length is None else length
    if not 1 <= length <= core.cfg.seq_len:
        raise LtmError(f"length must be in [1, {core.cfg.seq_len}], got {length}")
    device = core.is_mask_column.device
    x = torch.full((batch, length), core.mask_id, dtype=torch.long, device=device)
    if prompt is not None:
        prompt = prompt.to(device).long().expand(batch, -1) if prompt.dim() == 1 else prompt.to(device).long()
        if prompt.shape[0] != batch or prompt.shape[1] > length:
            raise LtmError(f"prompt must be (P,) or ({batch}, P) with P <= {length}, got {tuple(prompt.shape)}")
        if ((prompt < 0) | (prompt >= core.vocab_size)).any():
            raise LtmError(f"prompt ids must be in [0, {core.vocab_size})")
        x[:, :prompt.shape[1]] = prompt
    return infill(model, x, steps, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)


def diffusion_train_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """6P + 12 L d S: as ltm.flops for the AR baseline, but the attention matrix is the full S x S, not the
    causal half (= flops.train_flops_per_token(P, L, d, 2 S)); one forward + backward per token."""
    return 6 * n_params + 12 * n_layers * d_model * seq_len


def diffusion_eval_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int,
                                   n_samples: int = 1) -> float:
    """nelbo_bound with n_samples draws: n_samples full-attention forward passes, (2P + 4 L d S) each;
    sampling with `steps` steps costs at most steps forward passes per sequence (fewer with reuse)."""
    return n_samples * (2 * n_params + 4 * n_layers * d_model * seq_len)
