import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltm import flops
from ltm.diffusion import (
    DiffusionConfig,
    MaskedDiffusionLM,
    denoiser_config,
    diffusion_eval_flops_per_token,
    diffusion_loss,
    diffusion_train_flops_per_token,
    masked_nll,
    nelbo_bound,
    random_subset,
    sample,
    stratified_uniform,
    summarise_bound,
)
from ltm.errors import LtmError
from ltm.model import Decoder, ModelConfig, count_parameters, window_mask

from settings import diffusion_settings

TINY = dict(d_model=16, n_layers=1, n_heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(vocab: int = 5, seq: int = 4, diffusion: DiffusionConfig | None = None, seed: int = 0,
         **preset) -> MaskedDiffusionLM:
    torch.manual_seed(seed)
    # a large init makes the denoiser's conditionals sharp and position-dependent, so tests can tell them apart
    return MaskedDiffusionLM.build(vocab, seq, diffusion or diffusion_settings(), **{**TINY, "init_std": 0.5, **preset}).eval()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- exact references on a tiny vocabulary

def subset_nll(model: MaskedDiffusionLM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every mask pattern M of one sequence x (S,): sizes |M| and G(M) = sum_{l in M} -log p(x_l | x_M masked)."""
    S = x.shape[0]
    masks = torch.tensor(list(itertools.product([False, True], repeat=S)))
    with torch.no_grad():
        g = masked_nll(model, x.expand(len(masks), S), masks)
    return masks.sum(1).double(), g.double()


def exact_count_form(model: MaskedDiffusionLM, x: torch.Tensor) -> float:
    """sum_k (1/k) E_{|M| = k}[G(M)] = sum_M G(M) / (k C(S, k)), by enumeration."""
    size, g = subset_nll(model, x)
    S = x.shape[0]
    keep = size > 0
    binom = torch.tensor([math.comb(S, int(k)) for k in size[keep]], dtype=torch.float64)
    return (g[keep] / (size[keep] * binom)).sum().item()


def time_integral(model: MaskedDiffusionLM, x: torch.Tensor, diff: DiffusionConfig, lo: float, hi: float = 1.0,
                  nodes: int = 200) -> float:
    """Gauss-Legendre quadrature over t in [lo, hi] of w(t) E_{z_t}[masked NLL], the expectation exact over masks."""
    size, g = subset_nll(model, x)
    S = x.shape[0]
    u_nodes, u_weights = np.polynomial.legendre.leggauss(nodes)
    t = torch.tensor(lo + (hi - lo) * (u_nodes + 1) / 2, dtype=torch.float64)
    rate = diff.mask_rate(t)[:, None]
    expect = (rate ** size * (1 - rate) ** (S - size) * g).sum(1)
    return ((hi - lo) / 2 * torch.tensor(u_weights) * diff.weight(t) * expect).sum().item()


# ---------------------------------------------------------------- bidirectional decoder

def test_bidirectional_decoder_sees_the_future_and_a_symmetric_window():
    torch.manual_seed(0)
    cfg = dict(vocab_size=20, seq_len=24, d_model=16, n_layers=1, n_heads=2)
    x = torch.randint(0, 20, (2, 24), generator=gen(1))
    x2 = x.clone()
    x2[:, 10] = (x2[:, 10] + 1) % 20
    for window, seen in ((24, list(range(24))), (3, list(range(8, 13)))):
        model = Decoder(ModelConfig(**cfg, window=window, causal=False))
        changed = (model(x2) - model(x)).abs().amax(dim=(0, 2)) > 1e-6
        assert changed.nonzero().flatten().tolist() == seen  # |i - 10| < window
    pos = torch.arange(6)
    assert torch.equal(window_mask(pos, pos, 2, causal=False), (pos[:, None] - pos[None]).abs() <= 1)
    with pytest.raises(LtmError):
        model.new_cache(2)


def test_configuration_errors():
    with pytest.raises(LtmError):
        ModelConfig(vocab_size=8, seq_len=4, d_model=16, n_layers=1, n_heads=2, causal="no")
    with pytest.raises(LtmError):
        denoiser_config(8, 4, n_latents=1, **TINY)
    with pytest.raises(LtmError):
        MaskedDiffusionLM(ModelConfig(vocab_size=9, seq_len=4, **TINY), diffusion_settings())  # causal
    # bad diffusion settings are refused where params are validated (tests/test_config.py)


def test_mask_token_is_an_input_only():
    model = tiny(vocab=7)
    assert model.mask_id == 7 and model.decoder.embed.weight.shape[0] == 8
    logits = model(torch.full((2, 4), 7))
    assert torch.isneginf(logits[..., 7]).all() and torch.isfinite(logits[..., :7]).all()
    assert (logits.argmax(-1) < 7).all()


# ---------------------------------------------------------------- schedule and time sampling

@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_schedule_endpoints_and_weight_is_minus_alpha_rate(schedule):
    diff = diffusion_settings(schedule=schedule, eps=0.01)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(diff.alpha(t), torch.tensor([1.0, 0.01], dtype=torch.float64))
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    d_alpha = (diff.alpha(t + h) - diff.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(diff.weight(t), -d_alpha / (1 - diff.alpha(t)), rtol=1e-6, atol=0)
    if schedule == "loglinear":
        torch.testing.assert_close(diff.weight(t), 1 / t)


def test_stratified_times_and_random_subsets():
    v = stratified_uniform(64, gen(0), "cpu")
    assert torch.equal((v * 64).floor().long(), torch.arange(64))
    k = torch.tensor([1, 3, 5, 0])
    masks = random_subset(4, 5, k, gen(1), "cpu")
    assert torch.equal(masks.sum(1), k)


# ---------------------------------------------------------------- loss

def test_no_masked_position_gives_zero_loss_and_finite_gradients():
    model = tiny().train()
    x = torch.randint(0, 5, (3, 4), generator=gen(2))
    loss, stats = diffusion_loss(model, x, gen(3), t=torch.zeros(3))
    assert loss.item() == 0 and stats["masked_frac"].item() == 0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.equal(masked_nll(model, x, torch.zeros_like(x, dtype=torch.bool)), torch.zeros(3))


@pytest.mark.parametrize("schedule, w1", [("loglinear", 1.0), ("cosine", math.pi / 2)])
def test_all_masked_is_the_weighted_unconditional_term(schedule, w1):
    model = tiny(diffusion=diffusion_settings(schedule=schedule, eps=0.0))
    x = torch.randint(0, 5, (3, 4), generator=gen(4))
    loss, stats = diffusion_loss(model, x, gen(5), t=torch.ones(3))
    assert stats["masked_frac"].item() == 1
    # the denoiser's prediction from an all-[MASK] input, softmax over the real vocabulary only
    logits = model.decoder(torch.full_like(x, model.mask_id))[..., :5]
    unconditional = F.cross_entropy(logits.transpose(1, 2), x, reduction="none").sum(1)
    torch.testing.assert_close(stats["nelbo_per_seq"], w1 * unconditional)
    torch.testing.assert_close(loss, w1 * unconditional.sum() / x.numel())


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_time_integral_equals_the_count_form_whatever_the_schedule(schedule):
    model = tiny()
    x = torch.tensor([3, 0, 4, 1])
    exact = exact_count_form(model, x)
    assert abs(time_integral(model, x, diffusion_settings(schedule=schedule, eps=0.0), 0.0) - exact) < 1e-6 * exact


def test_count_bound_is_an_unbiased_estimate_of_the_exact_nelbo():
    model = tiny()
    xs = torch.tensor([[3, 0, 4, 1], [2, 2, 2, 2]])
    est = nelbo_bound(model, xs.repeat_interleave(256, 0), 8, gen(6)).view(2, 256)
    for row, x in zip(est, xs):
        exact = exact_count_form(model, x)
        assert abs(row.mean().item() - exact) < 4 * row.std().item() / 16 + 1e-9


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_training_and_time_estimators_match_quadrature_over_t_min_to_1(schedule):
    diff = diffusion_settings(schedule=schedule, eps=0.1, t_min=0.05)  # large, so the truncation is visible
    model = tiny(diffusion=diff)
    x = torch.tensor([3, 0, 4, 1])
    want = time_integral(model, x, diff, diff.t_min)
    assert abs(want - exact_count_form(model, x)) > 0.02 * want
    batch = x.expand(2048, 4)
    with torch.no_grad():
        loss, stats = diffusion_loss(model, batch, gen(7))
    est = stats["nelbo_per_seq"].double()
    assert abs(est.mean().item() - want) < 4 * est.std().item() / math.sqrt(len(est))
    torch.testing.assert_close(loss.double(), est.mean() / 4)
    est = nelbo_bound(model, batch[:512], 4, gen(8), method="time")
    assert abs(est.mean().item() - want) < 4 * est.std().item() / math.sqrt(len(est))


def test_summarise_bound_is_token_weighted():
    out = summarise_bound(total_nats=2 * 100 * math.log(3), total_tokens=200)
    assert out["ppl_bound"] == pytest.approx(3.0) and out["bits_per_token"] == pytest.approx(math.log2(3))
    with pytest.raises(LtmError):
        summarise_bound(1.0, 0)


# ---------------------------------------------------------------- sampling

@pytest.mark.parametrize("steps", [1, 3, 50])
def test_samples_have_no_mask_and_keep_the_prompt(steps):
    model = tiny(vocab=6, seq=12)
    out = sample(model, 4, steps, generator=gen(9))
    assert out.shape == (4, 12) and out.min() >= 0 and out.max() < 6
    prompt = torch.tensor([5, 0, 3])
    out = sample(model, 4, steps, prompt=prompt, length=9, generator=gen(10))
    assert out.shape == (4, 9) and out.max() < 6 and (out[:, :3] == prompt).all()
    prompts = torch.randint(0, 6, (4, 5), generator=gen(11))
    assert torch.equal(sample(model, 4, steps, prompt=prompts, generator=gen(12))[:, :5], prompts)
    assert torch.equal(sample(model, 2, steps, generator=gen(13)), sample(model, 2, steps, generator=gen(13)))
    with pytest.raises(LtmError):
        sample(model, 4, steps, prompt=torch.tensor([6]))


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_two_step_sampler_has_the_exact_ancestral_distribution(schedule):
    """S = 2, V = 3, steps = 2: enumerate which positions the first step reveals."""
    diff = diffusion_settings(schedule=schedule, eps=0.05)
    model = tiny(vocab=3, seq=2, diffusion=diff, seed=3)
    m = model.mask_id
    with torch.no_grad():
        q = model(torch.tensor([[m, m]])).softmax(-1)[0, :, :3]  # q[l] = p(x_l | all masked)
        r1 = model(torch.tensor([[a, m] for a in range(3)])).softmax(-1)[:, 1, :3]  # r1[a, b] = p(x_1 = b | a, M)
        r0 = model(torch.tensor([[m, b] for b in range(3)])).softmax(-1)[:, 0, :3]  # r0[b, a] = p(x_0 = a | M, b)
    assert (r1 - q[1]).abs().max() > 0.05  # the conditionals differ from the marginals
    half, one = diff.alpha(torch.tensor(0.5)).item(), diff.alpha(torch.tensor(1.0)).item()
    p = (half - one) / (1 - one)  # the first step reveals each position with this probability
    independent = q[0][:, None] * q[1][None, :]
    exact = (p**2 + (1 - p) ** 2) * independent + p * (1 - p) * (q[0][:, None] * r1 + (q[1][:, None] * r0).T)
    n = 20000
    out = sample(model, n, 2, generator=gen(14))
    freq = torch.bincount(out[:, 0] * 3 + out[:, 1], minlength=9).double().view(3, 3) / n
    exact = exact.double()
    assert exact.sum().item() == pytest.approx(1.0)
    assert ((freq - exact).abs() / (exact * (1 - exact) / n).sqrt()).max() < 4.5


# ---------------------------------------------------------------- training and compute

def test_bound_decreases_with_a_few_dozen_adamw_steps_on_repeated_patterns():
    vocab, seq = 8, 16

    def batch(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, vocab, (n, 2), generator=g).repeat(1, seq // 2)  # two tokens, alternating

    torch.manual_seed(0)
    model = MaskedDiffusionLM.build(vocab, seq, diffusion_settings(), d_model=32, n_layers=2, n_heads=4)
    held_out = batch(32, gen(15))
    before = nelbo_bound(model, held_out, 8, gen(16)).mean().item()
    assert before == pytest.approx(seq * math.log(vocab), rel=0.05)  # a fresh model is near uniform
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data_gen, time_gen = gen(17), gen(18)
    for _ in range(60):
        loss, _ = diffusion_loss(model, batch(32, data_gen), time_gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = nelbo_bound(model, held_out, 8, gen(16)).mean().item()
    assert 2 * math.log(vocab) < after < 0.75 * before  # from ~S log V towards the data's 2 log V


def test_training_flops_formula_and_measured_count():
    model = tiny(vocab=10, seq=16, n_layers=2)
    cfg = model.cfg
    P, L, d, S = flops.flop_shape(cfg)
    assert P == count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    assert diffusion_train_flops_per_token(P, L, d, S) == flops.train_flops_per_token(P, L, d, 2 * S)
    assert diffusion_eval_flops_per_token(P, L, d, S, n_samples=3) == 3 * (2 * P + 4 * L * d * S)
    # what runs: matmuls of every weight but the norms (6 per weight), attention over the full S x S
    # matrix (4 S d forward + 10 S d backward, as ltm.flops counts it)
    hand = 6 * (cfg.vocab_size * d + L * (4 * d * d + 3 * d * cfg.mlp_hidden)) + 14 * L * d * S
    assert flops.measure_flops_per_token(model.decoder, train=True) == hand


def test_paper_scale_preset_sizes():
    owt = denoiser_config(50258, 1024, d_model=768, n_layers=12, n_heads=12)
    assert owt.window == 1024 and owt.vocab_size == 50259 and not owt.causal
    assert round(count_parameters(owt) / 1e6, 1) == 123.6  # GPT-2-small sized, tied embedding
    assert diffusion_train_flops_per_token(*flops.flop_shape(owt)) / 1e9 == pytest.approx(0.855, abs=0.001)
