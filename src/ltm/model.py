"""The decoder p(x|z) of a Latent Thought Model, and the autoregressive baseline.

One LLaMA-style decoder serves both families. Each layer runs
  1. causal sliding-window self-attention with RoPE (bidirectional with causal=False, see below),
  2. cross-attention from the tokens to that layer's own latent vectors z_l,
  3. a SwiGLU MLP,
each as a pre-norm (RMSNorm) residual branch; no biases; the token embedding is tied to the output head.
With n_latents == 0 the cross-attention modules do not exist: that is the autoregressive baseline.
An LTM called with z=None skips cross-attention and computes exactly what the baseline computes.
With causal=False (the masked-diffusion denoiser, ltm.diffusion) every query sees every key within a
symmetric window, |i - j| < window; window >= seq_len is full bidirectional attention. Such a model has
no left-to-right key/value cache.

Attention masks and RoPE angles are derived from explicit token positions, so a key/value cache for
generation only has to supply the cached keys and their positions: `Decoder.forward_cached` runs only
the new tokens through the layers (see ltm.kvcache).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltm.errors import LtmError
from ltm.fused_loss import head_nll
from ltm.kvcache import KVCache


@dataclass
class ModelConfig:
    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    n_latents: int = 0  # N_z, latent vectors over all layers; 0 = autoregressive baseline
    window: int = 256  # sliding-window size of the self-attention (keys per query, itself included)
    rope_theta: float = 1e4
    norm_eps: float = 1e-5
    init_std: float = 0.02
    mlp_multiple: int = 32  # SwiGLU hidden size is rounded up to a multiple of this
    causal: bool = True  # False: bidirectional self-attention within |i - j| < window (diffusion denoiser)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "window", "mlp_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LtmError(f"model.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_latents, int) or isinstance(self.n_latents, bool) or self.n_latents < 0:
            raise LtmError(f"model.n_latents must be a non-negative integer, got {self.n_latents!r}")
        if self.d_model % self.n_heads:
            raise LtmError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise LtmError(f"model.d_model / model.n_heads must be even for RoPE, got {self.head_dim}")
        if self.n_latents % self.n_layers:
            raise LtmError(f"model.n_latents ({self.n_latents}) must be divisible by model.n_layers ({self.n_layers})")
        if self.n_latents > self.seq_len:
            raise LtmError(f"model.n_latents ({self.n_latents}) must not exceed model.seq_len ({self.seq_len})")
        if not isinstance(self.causal, bool):
            raise LtmError(f"model.causal must be true or false, got {self.causal!r}")
        for name in ("rope_theta", "norm_eps", "init_std"):
            if not getattr(self, name) > 0:
                raise LtmError(f"model.{name} must be positive, got {getattr(self, name)!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        """LLaMA rule: 2/3 of 4d, rounded up to a multiple (1376 for d=512)."""
        hidden = int(2 * 4 * self.d_model / 3)
        return self.mlp_multiple * math.ceil(hidden / self.mlp_multiple)

    @property
    def latents_per_layer(self) -> int:
        return self.n_latents // self.n_layers

    @property
    def latent_stride(self) -> int:
        """RoPE position step between the latent keys of one layer: seq_len // N_z."""
        return self.seq_len // self.n_latents if self.n_latents else 0


def rope_angles(head_dim: int, positions: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of the RoPE angles, shape (len(positions), head_dim // 2), float32."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = torch.outer(positions.to(torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def upcast(x: Tensor) -> Tensor:
    """At least float32: bf16/fp16 lose too much in norms, rotations and log-softmax."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate consecutive pairs (x[2i], x[2i+1]) of x (B, H, S, head_dim) by the angles of rope = (cos, sin).

    Real arithmetic rather than view_as_complex: complex tensors are poorly supported by torch.compile.
    """
    cos, sin = rope
    x1, x2 = upcast(x).unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


def window_mask(q_pos: Tensor, k_pos: Tensor, window: int, causal: bool = True) -> Tensor:
    """True where query i may attend key j: at most window-1 positions back, and never ahead if causal."""
    back = q_pos[:, None] - k_pos[None, :]
    return (back >= 0) & (back < window) if causal else back.abs() < window


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = upcast(x)
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def project(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Queries and keys (rotated) and values, each (B, H, S, head_dim)."""
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        return apply_rope(q, rope), apply_rope(k, rope), v

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None) -> Tensor:
        """mask (S_q, S_k) bool, True = may attend; None = plain causal (every key if not causal)."""
        q, k, v = self.project(x, rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and self.causal)
        return self.out(y.transpose(1, 2).flatten(2))

    def forward_cached(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None,
                       cache: KVCache, layer: int) -> Tensor:
        """New tokens only; mask (S_new, S_visible) or None = every visible cached key allowed."""
        q, k, v = self.project(x, rope)
        k, v = cache.extend(layer, k, v)
        # never is_causal here: with fewer queries than keys it would align the mask to the wrong corner
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))


class CrossAttention(nn.Module):
    """Tokens attend to one layer's latent vectors; keys and values come straight from z_l (no norm)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def latent_kv(self, z: Tensor, rope_z: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Rotated keys and values of z_l, each (B, H, latents_per_layer, head_dim); fixed during decoding."""
        k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2) for t in self.kv(z).chunk(2, dim=-1))
        return apply_rope(k, rope_z), v

    def attend(self, x: Tensor, rope: tuple[Tensor, Tensor], k: Tensor, v: Tensor) -> Tensor:
        q = apply_rope(self.q(x).unflatten(-1, (self.n_heads, -1)).transpose(1, 2), rope)
        y = F.scaled_dot_product_attention(q, k, v)  # every token sees every latent
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor, z: Tensor, rope: tuple[Tensor, Tensor], rope_z: tuple[Tensor, Tensor]) -> Tensor:
        return self.attend(x, rope, *self.latent_kv(z, rope_z))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = SelfAttention(cfg)
        if cfg.n_latents:
            self.cross_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.cross = CrossAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None,
                z: Tensor | None = None, rope_z: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask)
        if z is not None:
            x = x + self.cross(self.cross_norm(x), z, rope, rope_z)
        return x + self.mlp(self.mlp_norm(x))

    def forward_cached(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None,
                       cache: KVCache, layer: int) -> Tensor:
        x = x + self.attn.forward_cached(self.attn_norm(x), rope, mask, cache, layer)
        cross_kv = cache.cross_kv(layer)
        if cross_kv is not None:
            x = x + self.cross.attend(self.cross_norm(x), rope, *cross_kv)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    """p(x|z): logits for every position; z is (B, n_latents, d_model), layer l reads rows [l*k, (l+1)*k)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input/output embedding
        self.fused_loss = False  # runtime.fused_loss: the fast loop's output layer and loss in one pass

        cos, sin = rope_angles(cfg.head_dim, torch.arange(cfg.seq_len), cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # latent j of every layer sits at position j * (seq_len // N_z), as in the public code
        z_pos = torch.arange(cfg.latents_per_layer) * cfg.latent_stride
        cos_z, sin_z = rope_angles(cfg.head_dim, z_pos, cfg.rope_theta)
        self.register_buffer("rope_cos_z", cos_z, persistent=False)
        self.register_buffer("rope_sin_z", sin_z, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, std^2) for every matrix; residual output projections get std / sqrt(2 * n_layers).

        Residual outputs are the attention, cross-attention and MLP-down projections, as the paper says.
        (The public code scales the MLP up projection instead of down, a llama2.c naming carry-over.)
        """
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        for block in self.blocks:
            outs = [block.attn.out, block.mlp.down] + ([block.cross.out] if self.cfg.n_latents else [])
            for proj in outs:
                nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * self.cfg.n_layers))

    def forward(self, idx: Tensor, z: Tensor | None = None, features: bool = False) -> Tensor:
        """idx (B, S) token ids -> logits (B, S, vocab). z=None switches cross-attention off. features:
        the normed hidden states (B, S, d) the output layer would read instead."""
        cfg = self.cfg
        if idx.dtype != torch.long or idx.dim() != 2 or not 1 <= idx.shape[1] <= cfg.seq_len:
            raise LtmError(f"idx must be a (batch, seq <= {cfg.seq_len}) long tensor, got "
                           f"{tuple(idx.shape)} {idx.dtype}")
        B, S = idx.shape
        latents = self.split_latents(z, B)
        pos = torch.arange(S, device=idx.device)
        # a window covering the whole sequence is plain causal (or full) attention: no explicit mask
        mask = window_mask(pos, pos, cfg.window, cfg.causal) if cfg.window < S else None
        rope = (self.rope_cos[:S], self.rope_sin[:S])
        rope_z = (self.rope_cos_z, self.rope_sin_z)
        x = self.embed(idx)
        for block, z_l in zip(self.blocks, latents):
            x = block(x, rope, mask, z_l, rope_z)
        return self.norm(x) if features else self.head(self.norm(x))

    def split_latents(self, z: Tensor | None, batch: int) -> list[Tensor | None]:
        """Check z against the model and cut it into one (B, latents_per_layer, d) block per layer."""
        cfg = self.cfg
        if z is None:
            return [None] * cfg.n_layers
        if not cfg.n_latents:
            raise LtmError("this model has no latents (n_latents = 0) but z was given")
        if tuple(z.shape) != (batch, cfg.n_latents, cfg.d_model):
            raise LtmError(f"z must have shape {(batch, cfg.n_latents, cfg.d_model)}, got {tuple(z.shape)}")
        return list(z.unflatten(1, (cfg.n_layers, cfg.latents_per_layer)).unbind(1))

    def new_cache(self, batch: int, z: Tensor | None = None) -> KVCache:
        """An empty cache for decoding `batch` sequences; the latents' keys and values are computed here, once."""
        if not self.cfg.causal:
            raise LtmError("a bidirectional (causal=False) model has no key/value cache")
        rope_z = (self.rope_cos_z, self.rope_sin_z)
        cross = [None if z_l is None else block.cross.latent_kv(z_l, rope_z)
                 for block, z_l in zip(self.blocks, self.split_latents(z, batch))]
        return KVCache(batch, self.cfg.seq_len, self.cfg.window, cross)

    def forward_cached(self, idx: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, S_new, vocab) for idx (B, S_new) placed at positions cache.length onwards.

        Only the new tokens run through the layers; their self-attention keys/values are appended to the
        cache. Agrees with forward() on the whole sequence up to floating-point summation order.
        """
        if idx.dtype != torch.long or idx.dim() != 2 or idx.shape[0] != cache.batch or idx.shape[1] < 1:
            raise LtmError(f"idx must be a ({cache.batch}, new tokens) long tensor, got "
                           f"{tuple(idx.shape)} {idx.dtype}")
        q_pos, k_pos = cache.positions(idx.shape[1], idx.device)
        # a single new token may see every visible key, so the mask is only needed for a multi-token prefill
        mask = window_mask(q_pos, k_pos, self.cfg.window) if len(q_pos) > 1 else None
        rope = (self.rope_cos[q_pos], self.rope_sin[q_pos])
        x = self.embed(idx)
        for layer, block in enumerate(self.blocks):
            x = block.forward_cached(x, rope, mask, cache, layer)
        cache.advance(idx.shape[1])
        return self.head(self.norm(x))

    def nll(self, idx: Tensor, targets: Tensor, z: Tensor | None = None) -> Tensor:
        """Token negative log-likelihood summed per sequence, shape (B,); targets of -1 are ignored.
        With `fused_loss` set and the output layer frozen (the fast loop), the output layer and loss run
        fused (ltm.fused_loss): equal to float32 rounding, not bitwise."""
        if self.fused_loss and not self.head.weight.requires_grad and torch.is_grad_enabled():
            h = self(idx, z, features=True)
            return head_nll(h.flatten(0, 1), self.head.weight, targets.flatten()).view(targets.shape).sum(dim=1)
        return token_nll(self(idx, z), targets)


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Sum over positions of -log p(target), per sequence (B,), in >= float32; -1 marks ignored targets."""
    nll = F.cross_entropy(upcast(logits.flatten(0, 1)), targets.flatten(), ignore_index=-1, reduction="none")
    return nll.view(targets.shape).sum(dim=1)


def count_parameters(cfg: ModelConfig) -> int:
    """Every parameter, the tied embedding counted once (the public code's sum over parameters()).

    Built on the meta device, so no memory is used. LTM-S/M/L (d 512, 8 heads, 3/6/12 layers, vocab
    50258, N_z 24) give 38.37M / 51.01M / 76.28M; 25.73M of each is the tied embedding.
    """
    with torch.device("meta"):
        model = Decoder(cfg)
    return sum(p.numel() for p in model.parameters())
