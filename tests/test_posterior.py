import dataclasses

import pytest
import torch

from ltm.errors import LtmError
from ltm.model import Decoder, ModelConfig
from ltm.posterior import (
    fit_posterior,
    fit_trajectory,
    kl_to_standard_normal,
    latent_grads,
    nelbo_terms,
)

from settings import fast_loop

CFG = ModelConfig(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(dtype=torch.float32) -> Decoder:
    torch.manual_seed(0)
    return Decoder(CFG).to(dtype)


def batch(seed: int = 1, size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    # a learnable signal: y repeats x shifted, so latents can help the NLL
    x = torch.randint(0, CFG.vocab_size, (size, CFG.seq_len), generator=torch.Generator().manual_seed(seed))
    return x, torch.roll(x, -1, dims=1)


def gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def latent_point(dtype=torch.float64, size: int = 3):
    g = torch.Generator().manual_seed(3)
    shape = (size, CFG.n_latents, CFG.d_model)
    mu = (0.3 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()
    logvar = (-1.0 + 0.2 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()
    return mu, logvar, torch.randn(shape, generator=g, dtype=dtype)


def test_latent_gradients_match_full_backward_and_finite_differences():
    model = make_model(torch.float64)
    x, y = batch()
    mu, logvar, eps = latent_point()
    loss, g_mu, g_logvar = latent_grads(model, x, y, mu, logvar, eps)

    nll, kl = nelbo_terms(model, x, y, mu, logvar, eps)
    (nll + kl).sum().backward()  # reference: ordinary backward through everything
    torch.testing.assert_close(g_mu, mu.grad)
    torch.testing.assert_close(g_logvar, logvar.grad)
    torch.testing.assert_close(loss, (nll + kl).sum().detach())

    def f(m, lv):
        n, k = nelbo_terms(model, x, y, m, lv, eps)
        return (n + k).sum().item()

    h = 1e-6
    with torch.no_grad():
        for idx in [(0, 0, 0), (1, 2, 5), (2, 3, 31)]:
            for param, grad in ((mu, g_mu), (logvar, g_logvar)):
                bump = torch.zeros_like(param)
                bump[idx] = h
                args_plus = (mu + bump, logvar) if param is mu else (mu, logvar + bump)
                args_minus = (mu - bump, logvar) if param is mu else (mu, logvar - bump)
                fd = (f(*args_plus) - f(*args_minus)) / (2 * h)
                assert fd == pytest.approx(grad[idx].item(), rel=1e-5, abs=1e-7)


def test_kl_matches_torch_distributions():
    mu, logvar, _ = latent_point()
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), ref)


def test_default_loop_gives_decoder_no_gradient_and_restores_state():
    model = make_model()
    model.train()
    model.embed.weight.requires_grad_(True)
    model.norm.weight.requires_grad_(False)  # a caller's own freezing must survive
    seen = []
    hooks = [p.register_hook(lambda g, n=n: seen.append(n)) for n, p in model.named_parameters()
             if p.requires_grad]
    modes = []
    model.blocks[0].register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    fit_posterior(model, *batch(), fast_loop(steps=3), generator=gen())
    for h in hooks:
        h.remove()
    assert seen == []
    assert all(p.grad is None for p in model.parameters())
    assert modes and not any(modes)  # decoder in eval mode during the loop
    assert model.training  # and its mode restored afterwards
    assert not model.norm.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "norm.weight")


def test_decoder_grads_accumulates_the_summed_nll_gradient_of_every_inner_step():
    model = make_model(torch.float64)
    x, y = batch()
    quirk = fast_loop(steps=2, decoder_grads=True)
    post = fit_posterior(model, x, y, quirk, generator=gen())
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    # reference: the same two latent points, gradients of sum NLL w.r.t. the weights, added up
    start = fit_posterior(model, x, y, dataclasses.replace(quirk, steps=0, decoder_grads=False), generator=gen())
    one = fit_posterior(model, x, y, dataclasses.replace(quirk, steps=1, decoder_grads=False), generator=gen())
    for p_ in (start, one):
        model.nll(x, y, p_.z).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, msg=n)
    # the latent trajectory itself does not depend on the switch
    plain = fit_posterior(model, x, y, dataclasses.replace(quirk, decoder_grads=False), generator=gen())
    torch.testing.assert_close(post.mu, plain.mu)
    torch.testing.assert_close(post.logvar, plain.logvar)


def test_loop_lowers_the_nelbo_and_more_steps_lower_it_further():
    model = make_model()
    x, y = batch()
    finals = []
    for steps in (0, 4, 16, 48):
        post = fit_posterior(model, x, y, fast_loop(steps=steps), generator=gen())
        assert post.nelbo_trace.shape == (steps + 1,)
        torch.testing.assert_close(post.nelbo_trace[-1], post.nelbo.sum())
        finals.append(post.nelbo.sum().item())
        if steps:
            assert post.nelbo_trace[-1] < post.nelbo_trace[0]
    assert finals == sorted(finals, reverse=True) and finals[-1] < 0.9 * finals[0]


def test_fast_learning_rate_is_a_cosine_from_lr_max_towards_lr_min():
    cfg = fast_loop(steps=4)
    assert [round(cfg.lr(s), 6) for s in range(4)] == [0.34, round(0.034 + 0.306 * 0.5 * (1 + 2**-0.5), 6),
                                                        0.187, round(0.034 + 0.306 * 0.5 * (1 - 2**-0.5), 6)]


def test_initialisation_follows_the_paper():
    model = make_model()
    x, y = batch(size=64)
    post = fit_posterior(model, x, y, fast_loop(steps=0), generator=gen())
    assert post.mu.std().item() == pytest.approx(0.01, rel=0.03)
    assert post.logvar.mean().item() == pytest.approx(-5.0, abs=0.01)
    assert post.logvar.std().item() == pytest.approx(0.1, rel=0.03)
    assert post.eps.std().item() == pytest.approx(1.0, rel=0.03)


def test_same_generator_same_posterior_and_different_seed_differs():
    model = make_model()
    x, y = batch()
    cfg = fast_loop(steps=3)
    a = fit_posterior(model, x, y, cfg, generator=gen(5))
    b = fit_posterior(model, x, y, cfg, generator=gen(5))
    c = fit_posterior(model, x, y, cfg, generator=gen(6))
    assert torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar) and torch.equal(a.nelbo_trace, b.nelbo_trace)
    assert not torch.equal(a.mu, c.mu)


def test_one_fit_stopped_at_several_steps_equals_a_fit_per_step_when_the_lr_span_is_fixed():
    """The T_eval curve's reuse: with the cosine's span fixed (schedule_steps), the posterior after t of
    T steps is bit for bit a fit of t steps, its score included; with the span following T it is not."""
    model = make_model()
    x, y = batch()
    cfg = fast_loop(steps=6, schedule_steps=4)
    stops = (0, 2, 6)
    posts = fit_trajectory(model, x, y, cfg, stops, generator=gen(5))
    for t, post in zip(stops, posts):
        alone = fit_posterior(model, x, y, dataclasses.replace(cfg, steps=t), generator=gen(5))
        for name in ("mu", "logvar", "eps", "nelbo_trace", "nll", "kl"):
            assert torch.equal(getattr(post, name), getattr(alone, name)), (t, name)
    respan = fit_trajectory(model, x, y, fast_loop(steps=6), (2, 6), generator=gen(5))[0]
    assert not torch.equal(respan.mu, fit_posterior(model, x, y, fast_loop(steps=2), generator=gen(5)).mu)
    with pytest.raises(LtmError, match="stops must increase"):
        fit_trajectory(model, x, y, cfg, (2, 4))


def test_the_fit_scores_its_result_with_the_callers_gradient_flags():
    """CPU kernels round differently for weights that need no gradient, so the fit's own score (and each
    stop's) is taken outside the loop's frozen context: the number a caller gets by scoring q itself."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(CFG, vocab_size=2048, seq_len=128, d_model=64, n_latents=2, window=1)
    model = Decoder(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (16, cfg.seq_len), generator=gen(1))
    for stops in ((3,), (1, 3)):
        posts = fit_trajectory(model, x, x, fast_loop(steps=3, schedule_steps=3), stops, generator=gen(5))
        with torch.no_grad():
            for post in posts:
                assert torch.equal(post.nll, model.nll(x, x, post.z))


def test_works_under_bf16_autocast():
    model = make_model()
    x, y = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        post = fit_posterior(model, x, y, fast_loop(steps=4), generator=gen())
    assert post.mu.dtype == torch.float32 and post.nll.dtype == torch.float32
    assert torch.isfinite(post.nelbo_trace).all()
    assert post.nelbo_trace[-1] < post.nelbo_trace[0]


def test_works_inside_no_grad():
    model = make_model()
    x, y = batch()
    cfg = fast_loop(steps=3)
    with torch.no_grad():
        inside = fit_posterior(model, x, y, cfg, generator=gen())
    torch.testing.assert_close(inside.mu, fit_posterior(model, x, y, cfg, generator=gen()).mu)


def test_score_false_skips_the_final_pass():
    model = make_model()
    post = fit_posterior(model, *batch(), fast_loop(steps=2), generator=gen(), score=False)
    assert post.nelbo_trace.shape == (2,) and post.nll is None
    with pytest.raises(LtmError):
        post.nelbo


def test_bad_input_raises_ltm_error():
    model = make_model()
    x, y = batch()
    with pytest.raises(LtmError):
        fit_posterior(model, x, y[:, :-1], fast_loop(steps=16))
    with pytest.raises(LtmError):
        fit_posterior(Decoder(dataclasses.replace(CFG, n_latents=0)), x, y, fast_loop(steps=16))
    # bad fast-loop settings are refused where params are validated (tests/test_config.py)
