"""Estimators against a toy LTM whose marginal likelihood is computed exactly by quadrature."""
import math

import pytest
import torch
import torch.nn.functional as F

from ltm.bounds import (
    Samples,
    ar_nll,
    bits_per_byte,
    draw_samples,
    fit_for_eval,
    fresh_elbo,
    iwae,
    paper_protocol,
    score_batch,
    scored_tokens,
)
from ltm.errors import LtmError
from ltm.model import Decoder, ModelConfig

from settings import fast_loop

# One latent vector of width 2: z lives in R^2, so p(x) = integral of p(x|z) N(z; 0, I) is a 2-D quadrature.
TOY = ModelConfig(vocab_size=4, seq_len=8, d_model=2, n_layers=1, n_heads=1, n_latents=1, window=8)
SMALL = ModelConfig(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_model() -> Decoder:
    torch.manual_seed(0)
    model = Decoder(TOY).double()
    with torch.no_grad():  # large weights: p(x|z) then depends strongly (and non-linearly) on z
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model.eval()


def toy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, TOY.vocab_size, (3, TOY.seq_len), generator=torch.Generator().manual_seed(1))
    return x, torch.roll(x, -1, dims=1)


@torch.no_grad()
def exact_nll(model: Decoder, x: torch.Tensor, y: torch.Tensor, points: int, half_width: float = 6.0) -> torch.Tensor:
    """-log p(x) per sequence by a midpoint-style Riemann sum over [-w, w]^2 (the prior mass outside is < 1e-8)."""
    grid = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1).reshape(-1, 1, 2)
    log_area = 2 * math.log(float(grid[1] - grid[0]))
    out = []
    for i in range(len(x)):
        log_lik = -model.nll(x[i:i + 1].expand(len(z), -1), y[i:i + 1].expand(len(z), -1), z)
        log_prior = -0.5 * z.pow(2).sum(dim=(1, 2)) - math.log(2 * math.pi)
        out.append(-(torch.logsumexp(log_lik + log_prior, dim=0) + log_area))
    return torch.stack(out)


@pytest.fixture(scope="module")
def toy():
    model, (x, y) = toy_model(), toy_batch()
    exact = exact_nll(model, x, y, 181)
    coarse = exact_nll(model, x, y, 121)
    post = fit_for_eval(model, x, y, steps=50, seed=0, post_cfg=fast_loop(steps=16))
    return model, x, y, exact, coarse, post


def test_quadrature_reference_is_converged(toy):
    _, _, _, exact, coarse, _ = toy
    torch.testing.assert_close(exact, coarse, atol=1e-3, rtol=0)


def groups(draws: Samples, size: int) -> list[Samples]:
    """Split K draws into independent estimates of `size` draws each."""
    return [Samples(draws.nll[i:i + size], draws.log_prior_ratio[i:i + size])
            for i in range(0, len(draws.nll) - size + 1, size)]


def mean_and_stderr(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    stacked = torch.stack(values)
    return stacked.mean(0), stacked.std(0) / math.sqrt(len(values))


def test_exact_nll_below_iwae_below_fresh_elbo_with_monte_carlo_error_accounted(toy):
    """-log p(x) <= E[IWAE_K] <= E[IWAE_1] = -ELBO. Each expectation is estimated from 64 independent
    repeats; orderings are asserted up to 3 standard errors, and the gaps are required to be far larger
    than that, so the test cannot pass vacuously."""
    model, x, y, exact, _, post = toy
    repeats = 64
    draws = draw_samples(model, x, y, post, samples=repeats * 64, seed=11, rows_per_pass=4096)
    by_k = {k: mean_and_stderr([iwae(g).total for g in groups(draws, k)][:repeats]) for k in (1, 8, 64)}
    elbo, elbo_se = mean_and_stderr([fresh_elbo(post, g).total for g in groups(draws, 64)])
    grid_tol = 1e-3

    iwae64, se64 = by_k[64]
    assert torch.all(exact <= iwae64 + 3 * se64 + grid_tol)
    assert torch.all(iwae64 <= elbo + 3 * torch.hypot(se64, elbo_se))
    assert torch.all(elbo - exact > 0.1) and torch.all(elbo - exact > 20 * elbo_se)  # a real variational gap
    for small, large in ((1, 8), (8, 64)):  # the IWAE bound tightens with K
        (m_small, s_small), (m_large, s_large) = by_k[small], by_k[large]
        assert torch.all(m_large <= m_small + 3 * torch.hypot(s_small, s_large))
    # IWAE_1 and the fresh ELBO estimate the same number (sampled vs analytic KL)
    assert torch.all((by_k[1][0] - elbo).abs() <= 3 * torch.hypot(by_k[1][1], elbo_se))
    # many draws close most of the gap; the tolerance is 4 delta-method standard errors of the estimate,
    # sqrt(K / ESS - 1) / sqrt(K), which must itself be small. (q misses a second posterior mode of row 3,
    # so its weights are heavy-tailed: one rare draw can pull a small-K estimate below -log p(x); only the
    # expectation is a bound.)
    many = draw_samples(model, x, y, post, samples=32768, seed=12, rows_per_pass=16384)
    lw = many.log_weights
    big = iwae(many).total
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    se = torch.sqrt(len(lw) / ess - 1) / math.sqrt(len(lw))
    assert torch.all(se < 0.02)
    assert torch.all((big - exact).abs() < 4 * se) and torch.all((big - exact).abs() < 0.25 * (elbo - exact))


def test_paper_protocol_is_not_a_bound(toy):
    """The optimised-noise NELBO undercuts the exact NLL on this toy: it is not an upper bound."""
    model, x, y, exact, _, post = toy
    paper = paper_protocol(post).total
    assert torch.any(paper < exact - 0.1)
    elbo = fresh_elbo(post, draw_samples(model, x, y, post, samples=4096, seed=3, rows_per_pass=4096)).total
    assert torch.all(elbo > exact)  # the same q, scored honestly, stays above


def test_iwae_with_one_sample_is_the_single_sample_elbo(toy):
    model, x, y, _, _, post = toy
    one = draw_samples(model, x, y, post, samples=1, seed=5)
    torch.testing.assert_close(iwae(one).total, one.nll[0] - one.log_prior_ratio[0])
    # the sampled KL, log q(z) - log p(z), averages to the analytic KL
    many = draw_samples(model, x, y, post, samples=4096, seed=6, rows_per_pass=4096)
    sampled_kl = -many.log_prior_ratio
    se = sampled_kl.std(0) / math.sqrt(len(sampled_kl))
    assert torch.all((sampled_kl.mean(0) - fresh_elbo(post, many).kl).abs() < 4 * se)


def test_log_prior_ratio_is_the_gaussian_density_ratio_at_the_decoded_z(toy):
    model, x, y, _, _, post = toy
    draws = draw_samples(model, x, y, post, samples=3, seed=2)
    eps = torch.randn((3, *post.mu.shape), generator=torch.Generator().manual_seed(2), dtype=post.mu.dtype)
    z = post.mu + torch.exp(0.5 * post.logvar) * eps
    q = torch.distributions.Normal(post.mu, torch.exp(0.5 * post.logvar))
    p = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(draws.log_prior_ratio, (p.log_prob(z) - q.log_prob(z)).flatten(2).sum(2))
    torch.testing.assert_close(draws.nll, torch.stack([model.nll(x, y, zk) for zk in z]).detach())


def small_ltm() -> Decoder:
    torch.manual_seed(0)
    return Decoder(SMALL)


def small_batch(size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, SMALL.vocab_size, (size, SMALL.seq_len), generator=torch.Generator().manual_seed(4))
    return x, torch.roll(x, -1, dims=1)


def as_numbers(s) -> list[torch.Tensor]:
    return [s.tokens, s.paper.total, s.paper.nll, s.paper.kl, s.fresh.total, s.fresh.nll_var, s.iwae.total]


def test_same_seed_gives_identical_numbers_and_chunking_does_not_matter():
    model, (x, y) = small_ltm(), small_batch()
    first = score_batch(model, x, y, steps=3, samples=4, seed=9, post_cfg=fast_loop(steps=16))
    again = score_batch(model, x, y, steps=3, samples=4, seed=9, post_cfg=fast_loop(steps=16))
    for a, b in zip(as_numbers(first), as_numbers(again)):
        assert torch.equal(a, b)
    other = score_batch(model, x, y, steps=3, samples=4, seed=10, post_cfg=fast_loop(steps=16))
    assert not torch.equal(other.fresh.total, first.fresh.total)
    wide = score_batch(model, x, y, steps=3, samples=4, seed=9, rows_per_pass=12, post_cfg=fast_loop(steps=16))  # all draws in one pass
    for a, b in zip(as_numbers(first), as_numbers(wide)):
        torch.testing.assert_close(a, b)


def test_t_eval_runs_are_paired_and_inference_improves_the_bounds():
    """What holds for every T: with one seed all T_eval runs start from the same q and noise, and the
    first step is the same (its learning rate is lr_max whatever T is). A lower bound at larger T is NOT
    guaranteed (the cosine fast-lr schedule depends on T; AdamW is not a descent method); that it
    improves over no inference on this batch is checked as an expected outcome, with a wide margin."""
    model, (x, y) = small_ltm(), small_batch()
    runs = {t: score_batch(model, x, y, steps=t, samples=8, seed=1, post_cfg=fast_loop(steps=16)) for t in (0, 1, 16)}
    long = runs[16].posterior.nelbo_trace
    torch.testing.assert_close(runs[0].paper.total.sum(), long[0].double())
    torch.testing.assert_close(runs[1].paper.total.sum(), long[1].double())
    assert len(runs[0].posterior.nelbo_trace) == 1  # T_eval = 0: the initial q, scored
    for kind in ("paper", "fresh", "iwae"):
        start, end = getattr(runs[0], kind).total, getattr(runs[16], kind).total
        assert torch.all(end < start - 1.0)


def test_ar_nll_is_the_summed_cross_entropy_and_ignores_minus_one():
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=4, window=8))
    x, y = small_batch(4)
    y[1, -5:] = -1
    got = ar_nll(model, x, y)
    logp = F.log_softmax(model(x).double(), dim=-1)
    mask = y >= 0
    want = -(logp.gather(-1, y.clamp(min=0)[..., None])[..., 0] * mask).sum(1)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want.detach(), rtol=1e-6, atol=1e-4)
    assert scored_tokens(y).tolist() == [32, 27, 32, 32]


def test_bad_input_raises_ltm_error():
    ltm, (x, y) = small_ltm(), small_batch()
    with pytest.raises(LtmError, match="n_latents = 0"):
        ar_nll(ltm, x, y)
    ar = Decoder(ModelConfig(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=4))
    with pytest.raises(LtmError, match="latents"):
        score_batch(ar, x, y, steps=1, samples=1, seed=0, post_cfg=fast_loop(steps=16))
    post = fit_for_eval(ltm, x, y, steps=0, seed=0, post_cfg=fast_loop(steps=16))
    with pytest.raises(LtmError, match="samples K"):
        draw_samples(ltm, x, y, post, samples=0, seed=0)
    with pytest.raises(LtmError, match="both be"):
        score_batch(ltm, x, y[:, :-1], steps=1, samples=1, seed=0, post_cfg=fast_loop(steps=16))
    with pytest.raises(LtmError, match="byte count"):
        bits_per_byte(10.0, 0)
    assert bits_per_byte(math.log(2) * 8, 4) == pytest.approx(2.0)
