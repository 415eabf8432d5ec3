"""Compute-optimal frontier math and the paper's compute accounting (docs/scaling.md §1.2, §2, §5 tests 11-12)."""
from __future__ import annotations

import numpy as np
import pytest

from ltm.errors import LtmError
from ltm.flops import train_flops_per_token
from ltm.scaling.frontier import chinchilla_G, crossover, exponents, fit_ctok, optimal_allocation
from ltm.scaling.laws import AXIS_LAWS

from scaling_synthetic import CHINCHILLA_ROUNDED, nd_loss, nd_theta, numeric_allocation


def _random_params(rng):
    return {"A": float(np.exp(rng.uniform(3, 9))), "B": float(np.exp(rng.uniform(3, 9))),
            "E": float(rng.uniform(1, 3)), "alpha": float(rng.uniform(0.15, 0.8)),
            "beta": float(rng.uniform(0.15, 0.8))}


def test_closed_form_meets_the_budget_and_matches_numeric_argmin():
    rng = np.random.default_rng(0)
    for _ in range(25):
        nat = _random_params(rng)
        C = float(10 ** rng.uniform(17, 24))
        N, D, L = optimal_allocation(nat["A"], nat["B"], nat["E"], nat["alpha"], nat["beta"], C)
        assert 6 * N * D == pytest.approx(C, rel=1e-10)
        n_num, d_num, l_num = numeric_allocation(lambda n, d: nd_loss(nat, n, d), lambda n: 6 * n, C,
                                                 (np.log(1e2), np.log(1e20)))
        assert n_num == pytest.approx(N, rel=1e-6)
        assert l_num == pytest.approx(L, rel=1e-12)


def test_general_accounting_k_N_to_the_p_matches_numeric_argmin():
    nat = CHINCHILLA_ROUNDED
    for k, p in [(6.0, 1.0), (18.0, 1.0), (9.0, 0.9), (40.0, 1.1)]:
        C = 1e21
        N, D, _ = optimal_allocation(nat["A"], nat["B"], nat["E"], nat["alpha"], nat["beta"], C, k, p)
        assert k * N**p * D == pytest.approx(C, rel=1e-10)
        n_num, _, _ = numeric_allocation(lambda n, d: nd_loss(nat, n, d), lambda n: k * n**p, C)
        assert n_num == pytest.approx(N, rel=1e-6)


def test_frontier_exponents_and_G():
    nat = CHINCHILLA_ROUNDED
    a, b = exponents(nat["alpha"], nat["beta"])
    assert a + b == pytest.approx(1.0) and a == pytest.approx(0.4516, abs=1e-4)  # §1.2: rounded params
    G = chinchilla_G(nat["A"], nat["B"], nat["alpha"], nat["beta"])
    C = np.array([1e20, 1e22])
    N, D, _ = optimal_allocation(nat["A"], nat["B"], nat["E"], nat["alpha"], nat["beta"], C)
    np.testing.assert_allclose(N, G * (C / 6) ** a, rtol=1e-10)
    np.testing.assert_allclose(D, (C / 6) ** b / G, rtol=1e-10)


@pytest.mark.parametrize("nat, c, ratio", [
    ({"A": 477.8, "B": 2143.4, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}, 1e21, 21.4),  # Epoch optimum
    ({"A": 477.8, "B": 2143.4, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}, 5.76e23, 17.9),
    (CHINCHILLA_ROUNDED, 1e21, 50.0),  # the rounded Hoffmann parameters
    (CHINCHILLA_ROUNDED, 5.76e23, 93.0),
])
def test_tokens_per_parameter_reproduced(nat, c, ratio):
    N, D, _ = optimal_allocation(nat["A"], nat["B"], nat["E"], nat["alpha"], nat["beta"], c)
    assert D / N == pytest.approx(ratio, rel=0.03)


def test_numeric_frontier_with_T_reduces_to_closed_form_at_T0():
    """An extra-axis law at T = 0 with C_tok = 6N gives Chinchilla's closed form."""
    nat = CHINCHILLA_ROUNDED
    C = 3e21
    N, _, L = optimal_allocation(nat["A"], nat["B"], nat["E"], nat["alpha"], nat["beta"], C)
    for name, law in AXIS_LAWS["T"].items():
        extra = {"eff_params_log": [0.5], "eff_params_pow": [0.4], "eff_data_log": [0.5], "additive": [0.0, 0.5]}
        theta = np.concatenate([nd_theta(nat), extra[name]])

        def loss(n, d, law=law, theta=theta):
            cols = {"lnN": np.log(n), "lnD": np.log(d), "lnT1": np.zeros_like(n)}
            return np.exp(law.predict(theta, cols))

        n_num, _, l_num = numeric_allocation(loss, lambda n: 6 * n, C)
        if name == "additive":  # its extra term is a constant C_x at T = 0: same N*, loss shifted by it
            assert l_num == pytest.approx(L + 1.0, rel=1e-9)
        else:
            assert l_num == pytest.approx(L, rel=1e-9)
        assert n_num == pytest.approx(N, rel=1e-6)


def test_crossover_of_two_frontiers():
    # a: lower asymptote but steeper cost at small C; b: the reverse. They cross where a - b = 0.
    la = lambda lnC: 1.5 + 200.0 * np.exp(-0.1 * lnC)  # noqa: E731
    lb = lambda lnC: 1.8 + 50.0 * np.exp(-0.1 * lnC)  # noqa: E731
    c = crossover(la, lb, (np.log(1e10), np.log(1e30)))
    expect = np.exp(-10 * np.log(0.3 / 150.0))
    assert c == pytest.approx(expect, rel=1e-8)
    assert crossover(la, lambda x: la(x) - 1.0, (1.0, 60.0)) is None


def test_fit_ctok_recovers_power_law():
    N = np.array([1e6, 4e6, 16e6, 64e6])
    fit = fit_ctok(N, 7.0 * N**0.95)
    assert fit["k"] == pytest.approx(7.0) and fit["p"] == pytest.approx(0.95) and fit["max_rel_dev"] < 1e-10
    with pytest.raises(LtmError, match="single model size"):
        fit_ctok(np.full(3, 1e6), np.full(3, 6e6))


# ---------------------------------------------------------------- compute accounting (ltm.flops)
@pytest.mark.parametrize("params, layers, T, published", [
    (38e6, 3, 16, 4.07e9),  # LTM-S
    (51e6, 6, 16, 5.52e9),  # LTM-M
    (76e6, 12, 64, 32.2e9),  # LTM-L
])
def test_paper_training_flops_table(params, layers, T, published):
    """Kong et al. 2025 §2: (T+1)·(6P + 6·L·d·seq) reproduces the paper's FLOPs/token (P known to ~1 %)."""
    got = train_flops_per_token(params, layers, 512, 1024, T)
    assert got == pytest.approx(published, rel=0.015)
    # every inner step is counted as a full forward+backward: T + 1 times the T = 0 (AR) step
    assert (T + 1) * train_flops_per_token(params, layers, 512, 1024) == pytest.approx(got, rel=1e-12)
