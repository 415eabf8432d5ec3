"""Compute accounting per token (docs/scaling.md §2), including the LTM inner loop.

F is the forward cost per token. AR training costs 3F (forward + activation grads + weight grads).
An LTM inner step backpropagates through the whole decoder to the latents: 2F if the weight-gradient
matmuls are skipped (k = 2, this pipeline's default), 3F if they run (k = 3, the LTM paper's count).
Training total: C_tok = 3F + T·k·F. Evaluation: F for AR, F + 2F·T_eval for LTM (posterior inference
is paid at test time too).
"""
from __future__ import annotations

from ltm.errors import LtmError


def _positive(**kw: float) -> None:
    for k, v in kw.items():
        if not v > 0:
            raise LtmError(f"compute accounting: {k} must be > 0, got {v!r}")


def kaplan_forward_flops(n_params_nonemb: float, n_layer: int, n_ctx: int, d_attn: int) -> float:
    """Kaplan et al. 2020: C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn per token."""
    return 2.0 * n_params_nonemb + 2.0 * n_layer * n_ctx * d_attn


def forward_flops_per_token(
    n_params_nonemb: float,
    n_layer: int,
    n_ctx: int,
    d_model: int,
    vocab: int = 0,
    latents_per_layer: int = 0,
    attn_span: int | None = None,
    latent_kv_proj: bool = True,
) -> float:
    """Forward FLOPs per token of a decoder, optionally cross-attending to latents.

    2N (matmuls) + 2·n_layer·span·d (causal attention, Kaplan) + 2·d·V (output head; Porian: it must be
    counted) + per layer 4·m·d for cross-attention to its m latents, plus the latents' K/V projections
    (4·m·d² per layer per sequence) spread over the n_ctx tokens. `attn_span` caps the attended context
    (sliding window). For the LTM of Kong et al. 2025, m = N_z / n_layer.
    """
    _positive(n_params_nonemb=n_params_nonemb, n_layer=n_layer, n_ctx=n_ctx, d_model=d_model)
    span = n_ctx if attn_span is None else min(n_ctx, attn_span)
    f = kaplan_forward_flops(n_params_nonemb, n_layer, span, d_model) + 2.0 * d_model * vocab
    if latents_per_layer:
        f += 4.0 * n_layer * latents_per_layer * d_model
        if latent_kv_proj:
            f += 4.0 * n_layer * latents_per_layer * d_model**2 / n_ctx
    return f


def deepseek_m(n_layer: int, d_model: int, seq_len: int) -> float:
    """DeepSeek LLM 2024: non-embedding training FLOPs per token, M = 72·n_layer·d² + 12·n_layer·d·l_seq."""
    _positive(n_layer=n_layer, d_model=d_model, seq_len=seq_len)
    return 72.0 * n_layer * d_model**2 + 12.0 * n_layer * d_model * seq_len


def train_flops_per_token(forward: float, T: int = 0, k: int = 2) -> float:
    """C_tok = 3F + T·k·F: one outer forward+backward plus T inner steps of k·F each (T = 0: AR)."""
    _positive(forward=forward)
    if k not in (2, 3):
        raise LtmError(f"compute accounting: inner-step cost factor k must be 2 or 3, got {k!r}")
    if T < 0:
        raise LtmError(f"compute accounting: T must be >= 0, got {T!r}")
    return 3.0 * forward + T * k * forward


def eval_flops_per_token(forward: float, T_eval: int = 0) -> float:
    """C_eval per token: F + T_eval·2F (inference steps need grads w.r.t. the latents only)."""
    _positive(forward=forward)
    if T_eval < 0:
        raise LtmError(f"compute accounting: T_eval must be >= 0, got {T_eval!r}")
    return forward + 2.0 * T_eval * forward


def paper_train_flops_per_token(n_params: float, n_layer: int, d_model: int, seq_len: int, T: int) -> float:
    """The LTM paper's count, (T + 1)·(6P + 6·L·d·seq_len), P = all parameters: each inner step is
    counted as a full forward+backward. Kept so results compare with the paper's table."""
    _positive(n_params=n_params, n_layer=n_layer, d_model=d_model, seq_len=seq_len)
    return (T + 1) * (6.0 * n_params + 6.0 * n_layer * d_model * seq_len)


def train_flops(flops_per_token: float, tokens: float) -> float:
    """C_train = C_tok · D."""
    _positive(flops_per_token=flops_per_token, tokens=tokens)
    return flops_per_token * tokens


def total_flops(c_train: float, eval_flops_per_token: float, serve_tokens: float) -> float:
    """C_total = C_train + C_eval_per_token · D_serve (Sardana & Frankle's inference-aware view)."""
    if serve_tokens < 0:
        raise LtmError(f"compute accounting: serve_tokens must be >= 0, got {serve_tokens!r}")
    return c_train + eval_flops_per_token * serve_tokens
