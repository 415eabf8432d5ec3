"""Training and evaluation compute per token, counting the inner loop.

The published accounting (reproduces the paper's numbers exactly) treats every inner step as a full
forward + backward pass:
    train = (T + 1) * (6 P + 6 L d S),   P = all parameters (tied embedding once), S = seq_len,
so LTM-S (P 38.37M, L 3, T 16) = 4.07 GFLOP/token, LTM-M (51.01M, 6, 16) = 5.52 and LTM-L (76.28M, 12,
T 64) = 32.2; N_z does not enter. The autoregressive baseline is T = 0. GPT-2-Large's published 5.32
matches its untied count (774.03M + a separate 50257 x 1280 output head = 838.36M, L 36, d 1280):
5.313, 0.13% low; with the tied 774M it would be 4.93.

With latent_only=True the T inner steps skip the weight-gradient matmuls (a forward and an input
backward, 4P + 6LdS), which is what fit_posterior computes by default.

Forward = 2P + 2LdS, backward w.r.t. inputs = 2P + 4LdS, backward w.r.t. weights = 2P: the 6LdS term
is the causal half of the S x S attention matrix, counted for query-key and attention-value products.

What really runs differs from the formula in three ways, all visible in measure_flops_per_token (which
tests/test_flops.py matches exactly against a hand count): the cross-attention key/value projection
(2d^2 per layer, inside P) runs on the N_z/L latents, not on every token; norm weights cost no matmul;
torch's counter charges attention for the full S x S matrix (with recomputed scores in the backward)
whatever the causal or sliding-window mask. For LTM-S/M/L (T 16/16/64) the counted training step with
full inner backwards is 1.4-2.6% above the formula; the default latent-only loop counts 0.68-0.71 of that.
"""

import copy

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig
from ltm.model import Decoder, ModelConfig, count_parameters
from ltm.posterior import fit_posterior

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets, matched against
# torch.cuda.get_device_name() most specific first: an H100 PCIe is not an SXM part.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("GH200", 989.0), ("H100", 989.0),
    ("H200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU part in FLOP/s (e.g. 'NVIDIA H100 80GB HBM3' is the SXM's 989e12),
    None when the part is not in PEAK_BF16_TFLOPS (MFU is then not reported)."""
    return next((tflops * 1e12 for part, tflops in PEAK_BF16_TFLOPS if part in device_name), None)


def flop_shape(cfg: ModelConfig) -> tuple[int, int, int, int]:
    """(P, L, d, S) of a config, the arguments of the per-token formulas."""
    return count_parameters(cfg), cfg.n_layers, cfg.d_model, cfg.seq_len


def train_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int, steps: int = 0, *,
                          latent_only: bool = False) -> float:
    """T inner steps plus the slow step; latent_only=False is the paper's (T + 1)(6P + 6LdS)."""
    full = 6 * n_params + 6 * n_layers * d_model * seq_len
    inner = full - 2 * n_params if latent_only else full
    return steps * inner + full


def eval_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int, steps: int = 0, *,
                         latent_only: bool = False) -> float:
    """Scoring a sequence: T inner steps plus one forward pass (T = 0: the autoregressive forward)."""
    forward = 2 * n_params + 2 * n_layers * d_model * seq_len
    inner = 6 * n_params + 6 * n_layers * d_model * seq_len - (2 * n_params if latent_only else 0)
    return steps * inner + forward


def _sdpa_flops(q: tuple, k: tuple, v: tuple, *args, out_shape=None, **kwargs) -> int:
    b, h, s_q, d = q
    return 4 * b * h * s_q * k[2] * d  # scores and weighted sum over the full S_q x S_k matrix


def _sdpa_backward_flops(grad_out: tuple, q: tuple, k: tuple, v: tuple, *args, out_shape=None, **kwargs) -> int:
    b, h, s_q, d = q
    return 10 * b * h * s_q * k[2] * d  # recomputed scores + four gradient products, as torch counts CUDA


# torch's counter knows the CUDA attention kernels; teach it the CPU one so CPU counts include attention
_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
}


def measure_flops_per_token(model: Decoder, post_cfg: PosteriorConfig | None = None, *, train: bool = True) -> float:
    """Count the matmul/attention FLOPs of one real step on one sequence of random tokens, per token.

    train=True: the inner loop (post_cfg.steps steps, no final scoring pass) then the slow step, a
    forward and backward of the mean token cross-entropy at the detached z. train=False: the inner
    loop, then the scoring forward pass. An autoregressive model has no inner loop (post_cfg None).
    Runs on a copy of the model, so the caller's model and gradients are untouched.
    """
    cfg = model.cfg
    if post_cfg is not None and post_cfg.steps and not cfg.n_latents:
        raise LtmError("an autoregressive model has no inner loop: steps must be 0")
    if cfg.n_latents and post_cfg is None:
        raise LtmError("counting an LTM's FLOPs needs its fast-loop settings (post_cfg)")
    model = copy.deepcopy(model)
    device = model.embed.weight.device
    gen = torch.Generator(device).manual_seed(0)
    x, y = torch.randint(0, cfg.vocab_size, (2, 1, cfg.seq_len), generator=gen, device=device)
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        z = fit_posterior(model, x, y, post_cfg, generator=gen, score=not train).z if cfg.n_latents else None
        if train:
            F.cross_entropy(model(x, z).flatten(0, 1), y.flatten(), ignore_index=-1).backward()
        elif not cfg.n_latents:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() / cfg.seq_len
