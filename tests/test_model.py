import math

import pytest
import torch

from ltm.errors import LtmError
from ltm.model import Decoder, ModelConfig, count_parameters, token_nll

TINY = dict(vocab_size=97, seq_len=48, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> Decoder:
    torch.manual_seed(0)
    return Decoder(ModelConfig(**{**TINY, **overrides})).eval()


def tokens(batch: int = 2, seq: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def latents(model: Decoder, batch: int = 2, seed: int = 2) -> torch.Tensor:
    cfg = model.cfg
    return torch.randn(batch, cfg.n_latents, cfg.d_model, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_latents", [0, 4])
def test_changing_a_future_token_never_changes_earlier_logits(n_latents):
    model = tiny(n_latents=n_latents)
    z = latents(model) if n_latents else None
    x = tokens()
    base = model(x, z)
    for t in (0, 17, 47):
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 1) % TINY["vocab_size"]
        out = model(x2, z)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t])


def test_one_layer_sees_exactly_the_window():
    model = tiny(n_layers=1, window=8)
    z, x = latents(model), tokens()
    base = model(x, z)
    x2 = x.clone()
    x2[:, 10] = (x2[:, 10] + 1) % TINY["vocab_size"]
    out = model(x2, z)
    changed = (out - base).abs().amax(dim=(0, 2)) > 1e-6
    # position 10 is seen by queries 10..17 (8 keys each, itself included) and by nobody else
    assert changed.nonzero().flatten().tolist() == list(range(10, 18))


def test_window_covering_the_sequence_is_plain_causal_attention():
    full, windowed = tiny(window=48), tiny(window=47)
    windowed.load_state_dict(full.state_dict())
    x, z = tokens(), latents(full)
    assert not torch.allclose(full(x, z)[:, -1], windowed(x, z)[:, -1])  # position 47 loses key 0
    torch.testing.assert_close(full(x, z)[:, :47], windowed(x, z)[:, :47])


def test_latents_change_every_position():
    model = tiny()
    x = tokens()
    diff = (model(x, latents(model, seed=3)) - model(x, latents(model, seed=4))).abs().amax(dim=(0, 2))
    assert (diff > 1e-6).all()


def test_ltm_without_z_is_exactly_the_autoregressive_model():
    ltm, ar = tiny(n_latents=4), tiny(n_latents=0)
    shared = {k: v for k, v in ltm.state_dict().items() if ".cross" not in k}
    assert set(shared) == set(ar.state_dict())
    ar.load_state_dict(shared)
    x = tokens()
    assert torch.equal(ltm(x), ar(x))
    assert not any("cross" in name for name, _ in ar.named_parameters())


def test_nll_is_summed_cross_entropy_and_ignores_minus_one():
    model = tiny()
    x, z = tokens(), latents(model)
    y = tokens(seed=5)
    logits = model(x, z)
    per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(2, -1)
    torch.testing.assert_close(model.nll(x, y, z), per_token.sum(1))
    y[:, 20:] = -1
    torch.testing.assert_close(token_nll(logits, y), per_token[:, :20].sum(1))


def test_latent_blocks_go_to_their_own_layer():
    model = tiny(n_layers=2, n_latents=4)
    x, z = tokens(), latents(model)
    z2 = z.clone()
    z2[:, 2:] += 1.0  # layer 1's latents only
    # layer 1's cross-attention is the only consumer: zeroing its output projection hides the change
    torch.nn.init.zeros_(model.blocks[1].cross.out.weight)
    torch.testing.assert_close(model(x, z), model(x, z2))


@pytest.mark.parametrize("n_layers, millions", [(3, 38), (6, 51), (12, 76)])
def test_parameter_counts_match_the_paper(n_layers, millions):
    cfg = ModelConfig(vocab_size=50258, seq_len=1024, d_model=512, n_layers=n_layers, n_heads=8, n_latents=24)
    assert cfg.mlp_hidden == 1376
    assert round(count_parameters(cfg) / 1e6) == millions


def test_count_parameters_counts_the_tied_embedding_once():
    model = tiny()
    assert model.head.weight is model.embed.weight
    assert count_parameters(model.cfg) == sum(p.numel() for p in model.parameters())
    cfg = model.cfg
    per_layer = 8 * cfg.d_model**2 + 3 * cfg.d_model * cfg.mlp_hidden + 3 * cfg.d_model
    assert count_parameters(cfg) == cfg.vocab_size * cfg.d_model + cfg.n_layers * per_layer + cfg.d_model


def test_init_standard_deviations():
    cfg = ModelConfig(vocab_size=2000, seq_len=64, d_model=256, n_layers=4, n_heads=4, n_latents=8)
    torch.manual_seed(0)
    model = Decoder(cfg)
    resid = 0.02 / math.sqrt(2 * cfg.n_layers)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            assert torch.equal(p, torch.ones_like(p)), name
            continue
        want = resid if name.endswith(("attn.out.weight", "cross.out.weight", "mlp.down.weight")) else 0.02
        assert abs(p.std().item() - want) < 0.03 * want, name
        assert abs(p.mean().item()) < 0.05 * want, name


@pytest.mark.parametrize("bad", [
    dict(d_model=30), dict(n_latents=3), dict(n_latents=-2), dict(window=0), dict(seq_len=0),
    dict(n_latents=64), dict(d_model=30, n_heads=6), dict(init_std=0.0),
])
def test_bad_config_raises_ltm_error(bad):
    with pytest.raises(LtmError):
        ModelConfig(**{**TINY, **bad})


def test_bad_inputs_raise_ltm_error():
    model = tiny()
    with pytest.raises(LtmError):
        model(tokens().float())
    with pytest.raises(LtmError):
        model(tokens(seq=49))
    with pytest.raises(LtmError):
        model(tokens(), latents(model)[:, :3])
    with pytest.raises(LtmError):
        tiny(n_latents=0)(tokens(), latents(model))


def test_runs_under_bf16_autocast():
    model = tiny()
    x, z = tokens(), latents(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, z)
        nll = model.nll(x, x, z)
    assert logits.dtype == torch.bfloat16 and nll.dtype == torch.float32
    torch.testing.assert_close(nll, model.nll(x, x, z), rtol=0.02, atol=0)
