"""Text generation from an LTM or the autoregressive baseline, and scores for generated text.

- `sample` decodes from a prompt with z held fixed (z=None: the AR baseline, or an LTM without latents),
  greedy or by temperature / top-k / top-p sampling, with or without the key/value cache.
- Unconditional LTM generation draws z from the prior N(0, I), scaled by a temperature (`prior_z`).
- Conditional LTM generation fits q(z|prompt) on the prompt's tokens only, then decodes with that z fixed
  (`fit_prompt_z`, `conditional_sample`).

Generation stops at the model's context: prompt plus new tokens never exceed seq_len (see ltm.kvcache),
so fewer than max_new_tokens may come back; a prompt longer than seq_len is an error.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ltm.config import FromParams
from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig
from ltm.model import Decoder, token_nll, upcast
from ltm.posterior import Posterior, eval_mode, fit_posterior


@dataclass(frozen=True)
class Sampling:
    """How a family draws tokens: the sampling keys of params `generation:`, or `ltm generate`'s flags."""
    temperature: float
    top_p: float | None
    top_k: int | None
    greedy: bool
    z_temperature: float  # LTM unconditional: z ~ N(0, t^2 I)
    diffusion_steps: int  # the diffusion sampler's steps


@dataclass(frozen=True)
class GenerationConfig(FromParams):
    """The `generation:` params section (validated there): what the generation stage draws and scores."""
    judge: str  # the named AR run whose exact likelihood scores every sample
    samples: int
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float | None
    z_temperature: float
    diffusion_steps: int
    seed: int

    def sampling(self) -> Sampling:
        """The stage samples (never greedy, no top-k); the rest comes from params."""
        return Sampling(temperature=self.temperature, top_p=self.top_p, top_k=None, greedy=False,
                        z_temperature=self.z_temperature, diffusion_steps=self.diffusion_steps)


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set logits outside the top-k and outside the nucleus (top-p) to -inf; logits (B, vocab).

    The nucleus is the smallest set of most probable tokens whose probability reaches top_p; the most
    probable token is always kept.
    """
    logits = upcast(logits)
    if top_k is not None:
        if not isinstance(top_k, int) or top_k < 1:
            raise LtmError(f"top_k must be a positive integer, got {top_k!r}")
        if top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise LtmError(f"top_p must be in (0, 1], got {top_p!r}")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already reaches p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def next_token(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of logits (B, vocab); temperature 0 means greedy."""
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    if not temperature > 0:
        raise LtmError(f"temperature must be >= 0, got {temperature!r}")
    probs = filter_logits(upcast(logits) / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_prompt(model: Decoder, prompt_ids: Tensor) -> None:
    seq_len = model.cfg.seq_len
    if prompt_ids.dtype != torch.long or prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise LtmError(f"prompt_ids must be a (batch, tokens >= 1) long tensor, got "
                       f"{tuple(prompt_ids.shape)} {prompt_ids.dtype}")
    if prompt_ids.shape[1] > seq_len:
        raise LtmError(f"prompt of {prompt_ids.shape[1]} tokens is longer than the context (seq_len {seq_len})")


@torch.no_grad()
def sample(model: Decoder, prompt_ids: Tensor | None, max_new_tokens: int, z: Tensor | None = None, *,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           greedy: bool = False, generator: torch.Generator | None = None, use_cache: bool = True,
           eos_id: int | None = None, bos_id: int | None = None) -> Tensor:
    """Decode up to max_new_tokens after prompt_ids (B, P); returns (B, P + new) ids, prompt included.

    prompt_ids=None starts every sequence from bos_id alone (batch = z's batch, or 1). z (B, N_z, d) is
    held fixed for all steps. Once a row emits eos_id it is padded with eos_id, and decoding ends early
    when every row has. use_cache=False recomputes the whole prefix at every step (the reference path).
    """
    if prompt_ids is None:
        if bos_id is None:
            raise LtmError("sampling without a prompt needs bos_id to start from")
        batch = z.shape[0] if z is not None else 1
        prompt_ids = torch.full((batch, 1), bos_id, dtype=torch.long, device=model.embed.weight.device)
    check_prompt(model, prompt_ids)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise LtmError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    n_new = min(max_new_tokens, model.cfg.seq_len - prompt_ids.shape[1])
    pick = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, generator=generator)
    batch = prompt_ids.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=prompt_ids.device)
    ids = prompt_ids
    with eval_mode(model):
        if use_cache and n_new:
            cache = model.new_cache(batch, z)
            logits = model.forward_cached(prompt_ids, cache)[:, -1]
        for step in range(n_new):
            if not use_cache:
                logits = model(ids, z)[:, -1]
            token = next_token(logits, **pick)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done = done | (token == eos_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            if step == n_new - 1 or bool(done.all()):
                break
            if use_cache:
                logits = model.forward_cached(token[:, None], cache)[:, -1]
    return ids


def prior_z(model: Decoder, batch: int, temperature: float = 1.0,
            generator: torch.Generator | None = None) -> Tensor:
    """z ~ N(0, temperature^2 I), shape (batch, N_z, d): the latents of unconditional generation."""
    cfg = model.cfg
    if not cfg.n_latents:
        raise LtmError("prior_z needs a model with latents (n_latents > 0)")
    if not temperature >= 0:
        raise LtmError(f"z temperature must be >= 0, got {temperature!r}")
    weight = model.embed.weight
    dtype = torch.promote_types(weight.dtype, torch.float32)
    z = torch.randn(batch, cfg.n_latents, cfg.d_model, generator=generator, device=weight.device, dtype=dtype)
    return temperature * z


def fit_prompt_z(model: Decoder, prompt_ids: Tensor, posterior_cfg: PosteriorConfig | None = None, *,
                 generator: torch.Generator | None = None) -> Posterior:
    """q(z | prompt): the posterior fitted on the prompt's own next-token targets, nothing after it.

    Every row gets its own initial noise and eps from `generator`, so repeating one prompt over the
    batch gives independent z draws.
    """
    check_prompt(model, prompt_ids)
    ignore_last = torch.full_like(prompt_ids[:, :1], -1)  # the token after the prompt is unknown
    targets = torch.cat([prompt_ids[:, 1:], ignore_last], dim=1)
    return fit_posterior(model, prompt_ids, targets, posterior_cfg, generator=generator, score=False)


def conditional_sample(model: Decoder, prompt_ids: Tensor, max_new_tokens: int,
                       posterior_cfg: PosteriorConfig | None = None, *,
                       fit_generator: torch.Generator | None = None, **sample_kwargs) -> tuple[Tensor, Tensor]:
    """Fit z on the prompt, then decode with it fixed; returns (ids, z). The AR baseline decodes with z=None."""
    z = fit_prompt_z(model, prompt_ids, posterior_cfg, generator=fit_generator).z if model.cfg.n_latents else None
    return sample(model, prompt_ids, max_new_tokens, z, **sample_kwargs), z


def scored_mask(ids: Tensor, prompt_len: int, eos_id: int | None) -> Tensor:
    """True for generated tokens up to and including each row's first EOS."""
    pos = torch.arange(ids.shape[1], device=ids.device)
    keep = (pos >= prompt_len).expand_as(ids)
    if eos_id is not None:
        eos = (ids == eos_id) & keep
        keep = keep & ((eos.long().cumsum(dim=1) - eos.long()) == 0)
    return keep


@torch.no_grad()
def generation_perplexity(judge_model: Decoder, ids: Tensor, *, prompt_len: int = 0, eos_id: int | None = None,
                          batch_size: int = 16) -> float:
    """Token-weighted perplexity of the generated tokens under an autoregressive judge model.

    The judge conditions on everything before each token (the prompt included) but only tokens at
    positions >= prompt_len (and up to each row's first EOS) are scored; position 0 never is.
    """
    if judge_model.cfg.n_latents:
        raise LtmError("generation perplexity needs an autoregressive judge (n_latents = 0)")
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise LtmError(f"ids must be (batch, tokens >= 2), got {tuple(ids.shape)}")
    if ids.shape[1] > judge_model.cfg.seq_len + 1:
        raise LtmError(f"sequences of {ids.shape[1]} tokens are longer than the judge's context "
                       f"(seq_len {judge_model.cfg.seq_len})")
    targets = ids[:, 1:].masked_fill(~scored_mask(ids, prompt_len, eos_id)[:, 1:], -1)
    total_nll, total_tokens = 0.0, int((targets >= 0).sum())
    if not total_tokens:
        raise LtmError("no generated tokens to score")
    with eval_mode(judge_model):
        for start in range(0, ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            total_nll += float(token_nll(judge_model(ids[rows, :-1]), targets[rows]).sum())
    return math.exp(total_nll / total_tokens)


def unigram_entropy(ids: Tensor, *, prompt_len: int = 0, eos_id: int | None = None) -> float:
    """Entropy (nats) of each sequence's own token frequencies, averaged over sequences.

    Low values flag degenerate, repetitive samples. Only generated tokens count (as in scored_mask).
    """
    keep = scored_mask(ids, prompt_len, eos_id)
    entropies = []
    for row, mask in zip(ids, keep):
        tokens = row[mask]
        if tokens.numel():
            p = torch.unique(tokens, return_counts=True)[1].double() / tokens.numel()
            entropies.append(float(-(p * p.log()).sum()))
    if not entropies:
        raise LtmError("no generated tokens to measure")
    return sum(entropies) / len(entropies)


def mauve_score(texts: list[str], reference_texts: list[str]) -> dict:
    """MAUVE of generated against human texts if the optional `mauve` package imports; else a note."""
    try:
        import mauve
    except ImportError:
        return {"mauve": None, "mauve_note": "mauve not installed (pip install mauve-text); skipped"}
    out = mauve.compute_mauve(p_text=reference_texts, q_text=texts)
    return {"mauve": float(out.mauve), "mauve_note": None}


def generation_metrics(ids: Tensor, *, judge_model: Decoder | None = None, prompt_len: int = 0,
                       eos_id: int | None = None, texts: list[str] | None = None,
                       reference_texts: list[str] | None = None) -> dict:
    """The evaluation stage's scores of one batch of generations, as a JSON-ready dict."""
    out: dict = {"unigram_entropy": unigram_entropy(ids, prompt_len=prompt_len, eos_id=eos_id)}
    if judge_model is not None:
        out["gen_ppl"] = generation_perplexity(judge_model, ids, prompt_len=prompt_len, eos_id=eos_id)
    if texts is not None and reference_texts is not None:
        out.update(mauve_score(texts, reference_texts))
    else:
        out.update({"mauve": None, "mauve_note": "no reference texts given; skipped"})
    return out
