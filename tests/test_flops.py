import pytest
import torch

from ltm.errors import LtmError
from ltm.flops import (
    eval_flops_per_token,
    flop_shape,
    measure_flops_per_token,
    train_flops_per_token,
)
from ltm.model import Decoder, ModelConfig

from settings import fast_loop

PAPER = dict(vocab_size=50258, seq_len=1024, d_model=512, n_heads=8, n_latents=24)
TINY = ModelConfig(vocab_size=128, seq_len=32, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n_layers, steps, gflops", [(3, 16, 4.07), (6, 16, 5.52), (12, 64, 32.2)])
def test_paper_training_flops_per_token(n_layers, steps, gflops):
    shape = flop_shape(ModelConfig(n_layers=n_layers, **PAPER))
    assert train_flops_per_token(*shape, steps) / 1e9 == pytest.approx(gflops, abs=0.005 if gflops < 10 else 0.05)


def test_n_latents_does_not_enter_the_paper_formula():
    shapes = {flop_shape(ModelConfig(n_layers=12, **{**PAPER, "n_latents": n})) for n in (24, 48, 96)}
    assert len(shapes) == 1


def test_gpt2_large_needs_its_untied_output_head():
    d, layers, vocab, ctx = 1280, 36, 50257, 1024
    per_layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    tied = vocab * d + ctx * d + layers * per_layer + 2 * d
    assert tied == 774_030_080  # the usual GPT-2-Large count
    untied = tied + vocab * d
    assert train_flops_per_token(untied, layers, d, ctx) / 1e9 == pytest.approx(5.32, rel=0.002)
    assert train_flops_per_token(tied, layers, d, ctx) / 1e9 == pytest.approx(4.93, abs=0.005)


def test_formula_structure():
    p, layers, d, s = flop_shape(TINY)
    full = 6 * p + 6 * layers * d * s
    assert train_flops_per_token(p, layers, d, s) == full  # the autoregressive baseline
    assert train_flops_per_token(p, layers, d, s, 5) == 6 * full
    assert train_flops_per_token(p, layers, d, s, 5, latent_only=True) == 6 * full - 5 * 2 * p
    assert eval_flops_per_token(p, layers, d, s) == 2 * p + 2 * layers * d * s
    assert eval_flops_per_token(p, layers, d, s, 5, latent_only=True) == 5 * (full - 2 * p) + 2 * p + 2 * layers * d * s


def executed(cfg: ModelConfig) -> dict[str, float]:
    """Per-token matmul + attention FLOPs that the code actually runs, counted by hand.

    Differences from the formula: the cross-attention key/value projection runs on the N_z/L latents, not
    on the S tokens; norm weights cost no matmul; the counter charges attention for the whole S x S
    matrix (4Sd forward, 10Sd backward incl. recomputed scores) where the formula charges the causal half.
    """
    d, h, v, layers, s, k = cfg.d_model, cfg.mlp_hidden, cfg.vocab_size, cfg.n_layers, cfg.seq_len, cfg.latents_per_layer
    cross = 2 * d * d if k else 0  # query and output projections of the cross-attention
    token_params = v * d + layers * (4 * d * d + cross + 3 * d * h)
    kv = 2 * (2 * d * d) * k / s  # per layer: keys and values of k latents, shared by s tokens
    attn = 4 * d * (s + k)  # per layer: self (full matrix) + cross
    forward = 2 * token_params + layers * (kv + attn)
    slow = 3 * 2 * token_params + layers * (2 * kv + 3.5 * attn)  # z detached: no input grad for kv
    # latent-only inner step: layer 0's self-attention branch and its cross query do not depend on z
    first = 2 * d * d + 2 * 3 * d * h + kv + 10 * d * k
    later = 2 * (4 * d * d + cross + 3 * d * h) + kv + 10 * d * (s + k)
    latent = forward + 2 * v * d + first + (layers - 1) * later
    return dict(forward=forward, slow=slow, inner_full=slow + layers * kv, inner_latent=latent)


@pytest.fixture(scope="module")
def ltm() -> Decoder:
    torch.manual_seed(0)
    return Decoder(TINY)


def test_measured_slow_step_is_the_hand_count_and_near_the_formula(ltm):
    want = executed(TINY)
    measured = measure_flops_per_token(ltm, fast_loop(steps=0))
    assert measured == pytest.approx(want["slow"], rel=1e-9)
    assert measured == pytest.approx(train_flops_per_token(*flop_shape(TINY)), rel=0.05)


def test_measured_inner_loop_with_decoder_grads_is_t_full_passes(ltm):
    want, steps = executed(TINY), 3
    measured = measure_flops_per_token(ltm, fast_loop(steps=steps, decoder_grads=True))
    assert measured == pytest.approx(want["slow"] + steps * want["inner_full"], rel=1e-9)


def test_latent_only_inner_loop_skips_the_weight_gradients(ltm):
    want, steps = executed(TINY), 3
    measured = measure_flops_per_token(ltm, fast_loop(steps=steps))
    assert measured == pytest.approx(want["slow"] + steps * want["inner_latent"], rel=1e-9)
    # a full backward costs twice the forward; without weight gradients well under that
    assert want["inner_latent"] / want["inner_full"] < 0.7
    shape = flop_shape(TINY)
    assert measured == pytest.approx(train_flops_per_token(*shape, steps, latent_only=True), rel=0.1)


def test_measured_eval_is_inner_loop_plus_one_forward(ltm):
    want, steps = executed(TINY), 2
    assert measure_flops_per_token(ltm, fast_loop(steps=steps), train=False) == pytest.approx(
        steps * want["inner_latent"] + want["forward"], rel=1e-9)


def test_measured_autoregressive_model():
    cfg = ModelConfig(**{**TINY.__dict__, "n_latents": 0})
    torch.manual_seed(0)
    ar = Decoder(cfg)
    want = executed(cfg)
    assert measure_flops_per_token(ar) == pytest.approx(want["slow"], rel=1e-9)
    assert measure_flops_per_token(ar, train=False) == pytest.approx(want["forward"], rel=1e-9)
    with pytest.raises(LtmError):
        measure_flops_per_token(ar, fast_loop(steps=2))


def test_measurement_leaves_the_model_untouched(ltm):
    before = {k: v.clone() for k, v in ltm.state_dict().items()}
    measure_flops_per_token(ltm, fast_loop(steps=2, decoder_grads=True))
    assert all(p.grad is None for p in ltm.parameters())
    assert all(torch.equal(before[k], v) for k, v in ltm.state_dict().items())


def test_the_bf16_peak_is_looked_up_per_exact_part():
    from ltm.flops import peak_bf16_flops

    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12  # the SXM part
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA H100 NVL") == 835e12
    assert peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("NVIDIA L40S") == 362e12 and peak_bf16_flops("NVIDIA L4") == 121e12
    assert peak_bf16_flops("Some Future GPU") is None  # unknown: no MFU rather than a wrong one
