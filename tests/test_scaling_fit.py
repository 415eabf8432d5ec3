"""The L(N, D) fitter on synthetic data with known parameters (docs/scaling.md §5 tests 1, 2, 4, 10)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import approx_fprime, least_squares

from ltm.scaling.fit import FitError, Objective, check_acceptance, fit_law, multistart
from ltm.scaling.frontier import exponents
from ltm.scaling.laws import AXIS_LAWS, ND, TEVAL_LAWS

from scaling_synthetic import CHINCHILLA_ROUNDED, FIT, grid_design, nd_loss, nd_theta, noisy

TRUTH = CHINCHILLA_ROUNDED


def _cols(N, D):
    return {"lnN": np.log(N), "lnD": np.log(D)}


@pytest.fixture(scope="module")
def design():
    N, D = grid_design()
    return N, D, nd_loss(TRUTH, N, D)


def test_analytic_gradient_matches_finite_differences(design):
    N, D, L = design
    rng = np.random.default_rng(0)
    laws = [(ND, _cols(N, D))]
    T = np.repeat([4.0, 16.0, 64.0], 9)[: N.size]
    for law in AXIS_LAWS["T"].values():
        laws.append((law, {**_cols(N, D), "lnT1": np.log1p(T)}))
    te = np.arange(1, N.size + 1, dtype=float)
    for law in TEVAL_LAWS.values():
        laws.append((law, {"Teval": te, "lnTeval": np.log(te)}))
    for law, cols in laws:
        lo, hi = np.array(law.bounds).T
        theta = np.clip(law.grid_points()[len(law.grid_points()) // 2] + rng.normal(0, 0.05, law.n_params),
                        lo + 0.01, hi - 0.01)
        obj = Objective(law, cols, np.log(L) + rng.normal(0, 0.01, L.size), delta=0.05)
        _, g = obj(theta)
        fd = approx_fprime(theta, obj.value, 1e-7)
        np.testing.assert_allclose(g, fd, rtol=2e-4, atol=1e-3 * max(1.0, np.abs(fd).max()), err_msg=law.name)


def test_exact_recovery(design):
    """§5.1: noise-free 5×5 design → parameters to 1e-6 relative, objective ≈ 0."""
    N, D, L = design
    fit = fit_law(ND, _cols(N, D), np.log(L), FIT)
    for k, v in fit.natural().items():
        assert v == pytest.approx(TRUTH[k], rel=1e-6), k
    # J is Σρ(r/δ) = Σ huber_δ(r)/δ²; the unscaled Chinchilla objective is δ² times this
    assert fit.J * 1e-6 <= 1e-12
    assert fit.diagnostics["converged"] and fit.diagnostics["n_agree"] >= 3


def test_noisy_recovery_20_seeds(design):
    """§5.2: σ = 0.003 log noise, seeds 0-19; tolerances calibrated with ~2× margin."""
    N, D, L0 = design
    truth_a, _ = exponents(TRUTH["alpha"], TRUTH["beta"])
    c_big = 10 * np.max(6 * N * D)
    n_t = np.sqrt(c_big / (6 * 20))  # D/N = 20 at 10× the largest compute
    errs = {"alpha": [], "beta": [], "a": [], "L10x": []}
    for seed in range(20):
        fit = fit_law(ND, _cols(N, D), np.log(noisy(L0, 0.003, seed)), FIT)
        x = fit.natural()
        errs["alpha"].append(abs(x["alpha"] - TRUTH["alpha"]))
        errs["beta"].append(abs(x["beta"] - TRUTH["beta"]))
        errs["a"].append(abs(exponents(x["alpha"], x["beta"])[0] - truth_a))
        errs["L10x"].append(abs(nd_loss(x, n_t, 20 * n_t) / nd_loss(TRUTH, n_t, 20 * n_t) - 1))
    med = {k: np.median(v) for k, v in errs.items()}
    p95 = {k: np.percentile(v, 95) for k, v in errs.items()}
    assert med["alpha"] < 0.02 and p95["alpha"] < 0.06
    assert med["beta"] < 0.01 and p95["beta"] < 0.03
    assert med["a"] < 0.03
    assert med["L10x"] < 0.005 and p95["L10x"] < 0.025


@pytest.mark.parametrize("scale_name", ["1/n", "1", "1e6"])
def test_loss_scale_invariance(design, scale_name):
    """§5.4: multiplying the objective by 1/n, 1 or 1e6 leaves θ unchanged (tight tolerances)."""
    N, D, L0 = design
    lnL = np.log(noisy(L0, 0.003, 7))
    scale = {"1/n": 1.0 / N.size, "1": 1.0, "1e6": 1e6}[scale_name]
    ref = fit_law(ND, _cols(N, D), lnL, FIT)
    fit = fit_law(ND, _cols(N, D), lnL, FIT, scale=scale)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=1e-5)


def test_huber_resists_outliers_least_squares_does_not(design):
    """§5.10: three points shifted by +0.3 nats barely move α under Huber; least squares moves visibly."""
    N, D, L0 = design
    L = L0.copy()
    L[[0, 12, 24]] += 0.3
    huber = fit_law(ND, _cols(N, D), np.log(L), FIT).natural()
    assert abs(huber["alpha"] - TRUTH["alpha"]) < 0.01
    ls = multistart(ND, _cols(N, D), np.log(L), replace(FIT, delta=None))[0]
    assert abs(ls.theta[3] - TRUTH["alpha"]) > 3 * abs(huber["alpha"] - TRUTH["alpha"])
    assert abs(ls.theta[3] - TRUTH["alpha"]) > 0.01


def test_trust_region_crosscheck_agrees(design):
    """An independent optimiser (least_squares, loss='huber') reaches the same optimum."""
    N, D, L0 = design
    lnL = np.log(noisy(L0, 0.003, 3))
    fit = fit_law(ND, _cols(N, D), lnL, FIT)
    lo, hi = np.array(ND.bounds).T
    res = least_squares(lambda th: ND.predict(th, _cols(N, D)) - lnL, fit.theta + 0.02,
                        jac=lambda th: ND.log_jacobian(th, _cols(N, D)), bounds=(lo, hi), loss="huber",
                        f_scale=1e-3, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(res.x[3:], fit.theta[3:], atol=1e-4)


def test_sign_flipped_data_hits_alpha_bound_and_is_refused(design):
    """§5.9: loss increasing with N at fixed D → α at its lower bound 0 → refused, named."""
    N, D, _ = design
    L = 1.69 + 0.02 * N**0.2 + 410.7 / D**0.28
    with pytest.raises(FitError, match="alpha=0 \\(lower bound\\)") as err:
        fit_law(ND, _cols(N, D), np.log(L), FIT)
    assert err.value.diagnostics["converged"] is False


def test_acceptance_needs_agreeing_starts(design):
    """A single start can never satisfy 'at least 3 starts reach the best objective'."""
    N, D, L0 = design
    cols, lnL = _cols(N, D), np.log(noisy(L0, 0.003, 1))
    starts = multistart(ND, cols, lnL, replace(FIT, n_starts=1))
    with pytest.raises(FitError, match="starts reach the best objective"):
        check_acceptance(ND, starts, Objective(ND, cols, lnL))


def test_theta_round_trip():
    th = nd_theta(TRUTH)
    nat = ND.natural(th)
    for k in TRUTH:
        assert nat[k] == pytest.approx(TRUTH[k], rel=1e-12)
