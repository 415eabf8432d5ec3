"""The fused output layer + cross-entropy of the fast loop (runtime.fused_loss) against the plain path."""
import pytest
import torch

from ltm.fused_loss import head_nll
from ltm.model import Decoder, ModelConfig, token_nll
from ltm.posterior import frozen, latent_grads

CFG = ModelConfig(vocab_size=300, seq_len=40, d_model=32, n_layers=2, n_heads=4, n_latents=4, window=8)

pytestmark = pytest.mark.usefixtures("one_thread")


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = Decoder(CFG)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, CFG.vocab_size, (3, CFG.seq_len), generator=g)
    y = torch.roll(x, -1, dims=1)
    y[0, :7] = -1  # ignored targets
    shape = (3, CFG.n_latents, CFG.d_model)
    mu = (0.3 * torch.randn(shape, generator=g)).requires_grad_()
    logvar = (-1.0 + 0.2 * torch.randn(shape, generator=g)).requires_grad_()
    return model, x, y, mu, logvar, torch.randn(shape, generator=g)


def test_latent_gradients_equal_the_plain_path_to_float32_rounding():
    model, x, y, mu, logvar, eps = setup()
    with frozen(model):
        plain = latent_grads(model, x, y, mu, logvar, eps)
        model.fused_loss = True
        fused = latent_grads(model, x, y, mu, logvar, eps)
    assert fused[0] == pytest.approx(plain[0].item(), rel=1e-6)
    for a, b in zip(plain[1:], fused[1:]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        assert a.abs().max() > 1e-3  # a gradient worth comparing


def test_per_token_loss_and_gradient_match_autograd_with_ignored_targets():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2100, 16, generator=g, dtype=torch.float64).requires_grad_()  # > one chunk of tokens
    w = torch.randn(50, 16, generator=g, dtype=torch.float64)
    t = torch.randint(-1, 50, (2100,), generator=g)
    up = torch.rand(2100, generator=g, dtype=torch.float64)  # any upstream per-token weights
    ref = torch.nn.functional.cross_entropy(h @ w.t(), t, ignore_index=-1, reduction="none")
    (grad_ref,) = torch.autograd.grad((ref * up).sum(), h)
    nll = head_nll(h, w, t)
    assert nll.dtype == torch.float64
    torch.testing.assert_close(nll, ref, rtol=1e-12, atol=1e-12)
    assert torch.all(nll[t < 0] == 0)
    (grad,) = torch.autograd.grad((nll * up).sum(), h)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


def test_a_trained_head_or_no_gradient_takes_the_plain_path_bit_for_bit():
    model, x, y, mu, *_ = setup()
    model.fused_loss = True
    plain = token_nll(model(x, mu.detach()), y)
    assert torch.equal(model.nll(x, y, mu.detach()), plain)  # the head trains: no fused path
    with torch.no_grad():
        assert torch.equal(model.nll(x, y, mu.detach()), plain)
    with pytest.raises(ValueError, match="no weight gradient"):
        head_nll(torch.zeros(2, CFG.d_model), model.head.weight, torch.zeros(2, dtype=torch.long))
