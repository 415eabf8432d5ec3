"""The KL floor of the fast loop against simulation, and the latent-usage diagnostics."""
import math

import numpy as np
import pytest
import torch

from ltm.bounds import score_batch
from ltm.fast_loop import adam_step_bound, kl_floor_per_dim, logvar_ceiling
from ltm.latent_usage import UsageTotals, alternative_nll, likelihood_free_kl
from ltm.model import Decoder, ModelConfig
from ltm.posterior import Posterior, fit_posterior

from settings import fast_loop

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER = fast_loop(steps=16)
CFG = ModelConfig(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)


def _last_adam_step(grads: torch.Tensor, betas: tuple[float, float]) -> float:
    """|update| of Adam's last step (lr 1, eps 0) after feeding it this gradient history."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1.0, betas=betas, eps=0.0)
    for g in grads:
        before = p.detach().clone()
        p.grad = g.reshape(1).clone()
        opt.step()
    return float((p.detach() - before).abs())


def test_adam_step_bound_is_attained_and_never_exceeded():
    betas = (0.9, 0.999)
    assert adam_step_bound(1, betas) == pytest.approx(1.0)
    for t in (2, 5, 16):
        bound = adam_step_bound(t, betas)
        rng = np.random.default_rng(t)
        for _ in range(50):  # random histories stay below
            assert _last_adam_step(torch.tensor(rng.normal(size=t)), betas) <= bound + 1e-12
        # the Cauchy-Schwarz maximiser g_i proportional to (b1 / b2)^(t-i) attains it
        worst = torch.tensor([(betas[0] / betas[1]) ** (t - i) for i in range(1, t + 1)], dtype=torch.float64)
        assert _last_adam_step(worst, betas) == pytest.approx(bound, rel=1e-9)


@pytest.mark.parametrize("steps", [0, 1, 4, 16])
def test_kl_floor_is_below_the_likelihood_free_fit_and_close_to_it(steps):
    floor = kl_floor_per_dim(PAPER, steps)
    free = likelihood_free_kl(PAPER, steps, dims=20000)["kl_per_dim"]
    assert floor <= free + 1e-3
    assert free - floor < 0.1 * max(free, 0.1)  # the KL-only fit moves at almost the largest step


def test_kl_floor_holds_against_any_likelihood_gradient():
    """Adversarial pulls on log sigma^2 (random, or always upwards) never beat the floor."""
    cfg = fast_loop(steps=4)
    floor_ceiling = logvar_ceiling(cfg, 4, cfg.init_logvar_mean)
    g = torch.Generator().manual_seed(0)
    for strength in (0.0, 1.0, 1e3):
        logvar = torch.full((4096,), cfg.init_logvar_mean, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.AdamW([logvar], lr=cfg.lr_max, betas=cfg.betas, weight_decay=cfg.weight_decay)
        for k in range(4):
            for group in opt.param_groups:
                group["lr"] = cfg.lr(k)
            pull = -strength * torch.rand(4096, generator=g, dtype=torch.float64)  # towards larger sigma
            logvar.grad = 0.5 * (logvar.detach().exp() - 1) + pull
            opt.step()
        assert float(logvar.detach().max()) <= floor_ceiling + 1e-9


def test_paper_settings_floor_matches_the_issue_derivation():
    # 24 latents x 512 dims over 1024 tokens = 12 dims per token; T = 16: at least ~5.2 nats/token
    per_token = 12 * kl_floor_per_dim(PAPER, 16)
    assert 5.0 < per_token < 5.4
    assert math.exp(per_token) > 11.8 * 10  # far above the paper's reported perplexity at T = 16
    assert kl_floor_per_dim(PAPER, 64) == 0.0  # enough steps reach the prior's variance


def test_continued_schedule_holds_lr_min_past_training_T():
    cfg = fast_loop(steps=16, schedule_steps=4)
    assert cfg.lr(0) == pytest.approx(cfg.lr_max)
    assert cfg.lr(4) == pytest.approx(cfg.lr_min) and cfg.lr(15) == pytest.approx(cfg.lr_min)
    assert fast_loop(steps=4).lr(2) == cfg.lr(2)


def _model() -> Decoder:
    torch.manual_seed(0)
    return Decoder(CFG).eval()


def _batch(n=8):
    x = torch.randint(0, CFG.vocab_size, (n, CFG.seq_len), generator=torch.Generator().manual_seed(1))
    return x, torch.roll(x, -1, dims=1)


def test_a_decoder_that_ignores_z_carries_no_information():
    """With cross-attention outputs zeroed, NLL does not depend on z: the information is exactly zero."""
    model = _model()
    with torch.no_grad():
        for block in model.blocks:
            block.cross.out.weight.zero_()
    x, y = _batch()
    totals = UsageTotals()
    s = score_batch(model, x, y, steps=2, samples=2, seed=0, post_cfg=fast_loop(steps=2))
    totals.add(s.tokens, s.fresh.nll, alternative_nll(model, x, y, s.posterior, seed=1), s.posterior)
    out = totals.summary()
    assert abs(out["information_vs_prior"]["nats_per_token"]) < 1e-6
    assert abs(out["information_vs_shuffled"]["nats_per_token"]) < 1e-6
    assert not out["latents_carry_information"]
    assert out["kl_per_dim"] == pytest.approx(out["kl_mean_part_per_dim"] + out["kl_variance_part_per_dim"])


def test_latents_that_encode_the_sequence_are_detected():
    """A posterior fitted long on each sequence tells a decoder that reads z more than prior noise does."""
    model = _model()
    with torch.no_grad():  # a random decoder whose cross-attention is loud enough to matter
        for block in model.blocks:
            block.cross.out.weight.mul_(30.0)
    x, y = _batch(64)
    cfg = fast_loop(steps=40, init_logvar_mean=-2.0)
    post = fit_posterior(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    totals = UsageTotals()
    with torch.no_grad():
        totals.add((y >= 0).sum(1), model.nll(x, y, post.z).double(), alternative_nll(model, x, y, post, seed=1), post)
    out = totals.summary()
    for key in ("information_vs_prior", "information_vs_shuffled"):
        assert out[key]["nats_per_token"] > 2 * out[key]["stderr"] > 0, key
    assert out["latents_carry_information"]


def test_active_units_count_dimensions_whose_mean_varies_across_sequences():
    n, shape = 64, (CFG.n_latents, CFG.d_model)
    g = torch.Generator().manual_seed(0)
    mu = torch.zeros(n, *shape)
    mu[:, 0, :10] = torch.randn(n, 10, generator=g)  # 10 dims used (variance ~1), the rest constant
    mu[:, 1, :] = 0.01 * torch.randn(n, CFG.d_model, generator=g)  # variance 1e-4: inactive
    post = Posterior(mu=mu, logvar=torch.zeros(n, *shape), eps=torch.zeros(n, *shape), nelbo_trace=torch.zeros(0),
                     nll=None, kl=None)
    totals = UsageTotals()
    nll = torch.full((n,), 10.0)
    totals.add(torch.full((n,), 32), nll, {"prior": nll.double(), "shuffled": torch.zeros(n, dtype=torch.float64)},
               post)
    out = totals.summary()
    assert out["active_units"] == 10
    assert out["kl_variance_part_per_dim"] == 0.0
    assert out["kl_mean_part_per_dim"] == pytest.approx(float(0.5 * mu.pow(2).mean()))


def test_eval_schedules_respan_or_continue_the_training_cosine():
    from ltm.bounds import fit_for_eval
    from ltm.evaluate import eval_posterior

    train = fast_loop(steps=4)
    respan, cont = eval_posterior(train, 16, "respan"), eval_posterior(train, 16, "continue")
    assert respan.steps == cont.steps == 16
    assert respan.lr(8) == pytest.approx(0.5 * (train.lr_max + train.lr_min))  # half-way down a 16-step cosine
    assert cont.lr(2) == train.lr(2) and cont.lr(8) == train.lr_min
    assert eval_posterior(train, 4, "continue").lr(3) == eval_posterior(train, 4, "respan").lr(3)
    model = _model()
    x, y = _batch(4)
    a = fit_for_eval(model, x, y, steps=16, seed=0, post_cfg=respan)
    b = fit_for_eval(model, x, y, steps=16, seed=0, post_cfg=cont)
    assert not torch.equal(a.logvar, b.logvar)
    # an unknown eval.lr_schedule is refused where params are validated (tests/test_config.py)


def test_harm_from_prior_z_alone_is_not_information():
    """z far from the decoder's training range hurts (large prior gap), but a code shared by every
    sequence tells nothing about any one of them: the verdict follows the shuffled comparison."""
    n, shape = 32, (CFG.n_latents, CFG.d_model)
    g = torch.Generator().manual_seed(0)
    post = Posterior(mu=torch.full((n, *shape), 3.0), logvar=torch.zeros(n, *shape), eps=torch.zeros(n, *shape),
                     nelbo_trace=torch.zeros(0), nll=None, kl=None)
    fit = torch.full((n,), 100.0, dtype=torch.float64)
    alt = {"prior": fit + 20 + torch.randn(n, generator=g, dtype=torch.float64),
           "shuffled": fit + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)}
    totals = UsageTotals()
    totals.add(torch.full((n,), 32), fit, alt, post)
    out = totals.summary()
    assert out["information_vs_prior"]["nats_per_token"] > 0.5
    assert not out["latents_carry_information"]
    assert out["active_units"] == 0
