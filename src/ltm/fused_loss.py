"""The fast loop's output layer and cross-entropy in one pass, for gradients w.r.t. the hidden states only.

In the inner loop the decoder is frozen, so of the output layer's backward only dL/dh = (softmax - onehot) W
is needed, and it does not depend on the upstream gradient except by a per-token factor. The forward
therefore forms it directly, chunk by chunk of tokens: logits, log-sum-exp, the NLL and (p - onehot) W, never
keeping the (tokens, vocab) log-softmax for autograd and skipping its separate backward passes and the
zero-filled gradient tensor. Behind runtime.fused_loss (off by default): the numbers agree with the plain
path to float32 rounding, not bit for bit (bench/bench_inner_loop.py measures both).
"""
from __future__ import annotations

import torch
from torch import Tensor

CHUNK_TOKENS = 1024  # rows of logits formed at once: (CHUNK_TOKENS, vocab) floats stay in cache-sized pieces


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
        acc = torch.promote_types(h.dtype, torch.float32)  # log-softmax never below float32
        nll = torch.zeros(h.shape[0], dtype=acc, device=h.device)
        grad_h = torch.empty_like(h)
        w = weight.to(h.dtype)
        for start in range(0, h.shape[0], CHUNK_TOKENS):
            rows = slice(start, start + CHUNK_TOKENS)
            t = targets[rows]
            keep = (t >= 0)[:, None]
            t = t.clamp(min=0)[:, None]
            e = (h[rows] @ w.t()).to(acc)  # logits, then exp(logits - max) in place
            m = e.amax(dim=1, keepdim=True)
            picked = e.gather(1, t)
            total = e.sub_(m).exp_().sum(dim=1, keepdim=True)
            nll[rows] = torch.where(keep, total.log() + m - picked, 0.0)[:, 0]
            # (softmax - onehot) W = (e W) / sum(e) - W[target]: no pass to normalise or to subtract the onehot
            g = (e.to(h.dtype) @ w).to(acc) / total - w[t[:, 0]].to(acc)
            grad_h[rows] = (g * keep).to(h.dtype)
        ctx.save_for_backward(grad_h)
        return nll

    @staticmethod
    def backward(ctx, grad_nll: Tensor):
        (grad_h,) = ctx.saved_tensors
        return grad_h * grad_nll[:, None].to(grad_h.dtype), None, None


def head_nll(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """Per-token NLL (N,), at least float32, of logits h @ weight.T at `targets` (-1 ignored: 0). Differentiable in h
    only: `weight` must not need a gradient (the frozen decoder of the fast loop)."""
    if weight.requires_grad:
        raise ValueError("head_nll forms no weight gradient; use the plain cross-entropy when the head trains")
    return _HeadCrossEntropy.apply(h, weight, targets)
