import math

import pytest
import torch

from ltm.errors import LtmError
from ltm.generate import (
    conditional_sample,
    filter_logits,
    fit_prompt_z,
    generation_metrics,
    generation_perplexity,
    next_token,
    prior_z,
    sample,
    unigram_entropy,
)
from ltm.model import Decoder, ModelConfig

from settings import fast_loop

# init_std 0.3: at the default 0.02 a random tied-embedding model greedily repeats one token forever,
# which would make the cache-equality tests trivially true
TINY = dict(vocab_size=97, seq_len=48, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8, init_std=0.3)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> Decoder:
    torch.manual_seed(0)
    return Decoder(ModelConfig(**{**TINY, **overrides})).eval()


def tokens(batch: int = 2, seq: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unconditional_sample(model: Decoder, batch: int, max_new_tokens: int, bos_id: int, *,
                         z_temperature: float = 1.0, generator: torch.Generator | None = None,
                         **sample_kwargs) -> torch.Tensor:
    """Decode from BOS with z drawn from the (tempered) prior; the AR baseline decodes with z=None."""
    z = prior_z(model, batch, z_temperature, generator) if model.cfg.n_latents else None
    prompt = torch.full((batch, 1), bos_id, dtype=torch.long, device=model.embed.weight.device)
    return sample(model, prompt, max_new_tokens, z, generator=generator, **sample_kwargs)


@pytest.mark.parametrize("n_latents", [0, 4])
@pytest.mark.parametrize("prefill", [1, 5, 13])  # shorter than, and longer than, the window of 8
def test_cached_incremental_logits_equal_the_full_forward(n_latents, prefill):
    model = tiny(n_latents=n_latents)
    z = prior_z(model, 2, generator=gen(2)) if n_latents else None
    x = tokens(seq=TINY["seq_len"])
    with torch.no_grad():
        full = model(x, z)
        cache = model.new_cache(2, z)
        steps = [model.forward_cached(x[:, :prefill], cache)]
        steps += [model.forward_cached(x[:, t:t + 1], cache) for t in range(prefill, TINY["seq_len"])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_refuses_to_grow_past_the_context():
    model = tiny()
    cache = model.new_cache(2, prior_z(model, 2, generator=gen(0)))
    with torch.no_grad():
        model.forward_cached(tokens(seq=TINY["seq_len"]), cache)
        with pytest.raises(LtmError, match="past the context"):
            model.forward_cached(tokens(seq=1), cache)


@pytest.mark.parametrize("n_latents", [0, 4])
def test_conditional_greedy_generation_is_the_same_with_and_without_the_cache(n_latents):
    model = tiny(n_latents=n_latents)
    prompt = tokens(seq=20)  # longer than the window
    cfg = fast_loop(steps=3)
    cached, z1 = conditional_sample(model, prompt, 24, cfg, fit_generator=gen(3), greedy=True)
    plain, z2 = conditional_sample(model, prompt, 24, cfg, fit_generator=gen(3), greedy=True, use_cache=False)
    assert cached.shape == (2, 44)
    assert torch.equal(cached[:, :20], prompt)
    assert torch.equal(cached, plain)
    assert all(len(set(row.tolist())) > 5 for row in cached[:, 20:])  # a varied continuation, not one token
    if n_latents:
        torch.testing.assert_close(z1, z2, rtol=0, atol=0)
    else:
        assert z1 is None and z2 is None


def test_temperature_sampling_is_the_same_with_and_without_the_cache():
    model = tiny()
    z = prior_z(model, 3, temperature=0.7, generator=gen(5))
    kw = dict(temperature=0.9, top_k=20, top_p=0.95)
    a = sample(model, tokens(batch=3, seq=9), 30, z, generator=gen(6), **kw)
    b = sample(model, tokens(batch=3, seq=9), 30, z, generator=gen(6), use_cache=False, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(model, tokens(batch=3, seq=9), 30, z, generator=gen(7), **kw))


def test_the_fitted_z_depends_on_the_prompt_and_differs_per_row():
    model = tiny()
    cfg = fast_loop(steps=3)
    prompt = tokens(batch=1, seq=12).repeat(3, 1)
    z = fit_prompt_z(model, prompt, cfg, generator=gen(0)).z
    assert not torch.allclose(z[0], z[1]) and not torch.allclose(z[1], z[2])  # independent draws
    other = fit_prompt_z(model, tokens(batch=1, seq=12, seed=9).repeat(3, 1), cfg, generator=gen(0)).z
    assert not torch.allclose(z, other)


def test_top_k_keeps_exactly_the_k_largest_logits():
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.5, 0.3], [5.0, 4.0, 3.0, 2.0, 1.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, True, False], [True, True, False, False, False]]
    draws = torch.stack([next_token(logits, top_k=2, generator=gen(s)) for s in range(200)])
    assert set(draws[:, 0].tolist()) == {1, 3}
    assert set(draws[:, 1].tolist()) == {0, 1}


@pytest.mark.parametrize("top_p, support", [(0.01, [0]), (0.5, [0]), (0.79, [0, 1]), (0.81, [0, 1, 2]),
                                            (0.96, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, support):
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: ids 1, 3, 2, 0
    order = [1, 3, 2, 0]
    kept = torch.isfinite(filter_logits(probs.log()[None], top_p=top_p))[0]
    assert kept.nonzero().flatten().tolist() == sorted(order[i] for i in support)


def test_top_p_sampling_never_leaves_the_nucleus():
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    draws = {int(next_token(logits, top_p=0.7, generator=gen(s))) for s in range(200)}
    assert draws == {1, 3}


def test_greedy_and_zero_temperature_take_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert next_token(logits, greedy=True).tolist() == [1, 0]
    assert next_token(logits, temperature=0).tolist() == [1, 0]


def test_a_prompt_longer_than_the_context_raises():
    model = tiny()
    with pytest.raises(LtmError, match="longer than the context"):
        sample(model, tokens(seq=TINY["seq_len"] + 1), 4, greedy=True)
    with pytest.raises(LtmError, match="longer than the context"):
        fit_prompt_z(model, tokens(seq=TINY["seq_len"] + 1))


def test_generation_stops_at_the_context():
    model = tiny(n_latents=0)
    out = sample(model, tokens(seq=40), 20, greedy=True)
    assert out.shape == (2, TINY["seq_len"])
    assert sample(model, tokens(seq=TINY["seq_len"]), 5, greedy=True).shape == (2, TINY["seq_len"])


def test_rows_that_emit_eos_are_padded_and_decoding_ends_when_all_have():
    model = tiny(n_latents=0)
    prompt = tokens(batch=2, seq=6)
    free = sample(model, prompt, 12, greedy=True)
    eos = int(free[0, 6 + 3])  # the 4th new token of row 0
    expected = free.clone()
    for row in expected:  # everything after a row's first EOS becomes EOS
        hits = (row[6:] == eos).nonzero()
        if len(hits):
            row[6 + int(hits[0]):] = eos
    out = sample(model, prompt, 12, greedy=True, eos_id=eos)
    all_done = (expected[:, 6:] == eos).all(dim=0).nonzero()
    length = 6 + int(all_done[0]) + 1 if len(all_done) else expected.shape[1]
    assert torch.equal(out, expected[:, :length])
    assert (out[0, 6 + 3:] == eos).all()


def test_unconditional_generation_starts_from_bos_and_scales_z():
    ltm, ar = tiny(), tiny(n_latents=0)
    torch.testing.assert_close(prior_z(ltm, 2, 0.5, gen(1)), 0.5 * prior_z(ltm, 2, 1.0, gen(1)))
    with pytest.raises(LtmError):
        prior_z(ar, 2)
    for model in (ltm, ar):
        out = unconditional_sample(model, 3, 10, bos_id=7, z_temperature=0.5, generator=gen(2), top_k=10)
        assert out.shape == (3, 11) and (out[:, 0] == 7).all()
        assert torch.equal(out, unconditional_sample(model, 3, 10, bos_id=7, z_temperature=0.5,
                                                     generator=gen(2), top_k=10))
    z = prior_z(ltm, 2, generator=gen(3))
    assert sample(ltm, None, 5, z, bos_id=7, greedy=True).shape == (2, 6)
    with pytest.raises(LtmError, match="bos_id"):
        sample(ltm, None, 5, z)


def test_generation_perplexity_scores_only_the_generated_tokens_under_the_judge():
    judge = tiny(n_latents=0)
    ids = tokens(batch=3, seq=16)
    with torch.no_grad():
        logp = judge(ids[:, :-1]).log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    assert generation_perplexity(judge, ids) == pytest.approx(math.exp(-logp.mean().item()), rel=1e-5)
    # prompt of 10 tokens: targets at positions 10..15 are ids[:, 10:], predicted by logits 9..14
    expected = math.exp(-logp[:, 9:].mean().item())
    assert generation_perplexity(judge, ids, prompt_len=10, batch_size=2) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(LtmError, match="autoregressive judge"):
        generation_perplexity(tiny(), ids)


def test_tokens_after_the_first_eos_are_not_scored():
    judge = tiny(n_latents=0)
    ids = tokens(batch=1, seq=12)
    ids[0, 8] = 5
    cut = generation_perplexity(judge, ids[:, :9], prompt_len=4)
    assert generation_perplexity(judge, ids, prompt_len=4, eos_id=5) == pytest.approx(cut, rel=1e-6)


def test_unigram_entropy():
    ids = torch.tensor([[9, 1, 1, 1, 1], [9, 1, 2, 3, 4]])
    assert unigram_entropy(ids, prompt_len=1) == pytest.approx(0.5 * math.log(4))
    assert unigram_entropy(torch.tensor([[9, 1, 2, 3, 4]]), prompt_len=1, eos_id=2) == pytest.approx(math.log(2))


def test_metrics_note_when_mauve_is_missing_or_not_asked_for():
    ids = tokens(batch=2, seq=10)
    out = generation_metrics(ids, judge_model=tiny(n_latents=0), prompt_len=2)
    assert out["mauve"] is None and "skipped" in out["mauve_note"] and out["gen_ppl"] > 1
    try:
        import mauve  # noqa: F401
    except ImportError:
        out = generation_metrics(ids, texts=["a"], reference_texts=["b"])
        assert out["mauve"] is None and "not installed" in out["mauve_note"]
