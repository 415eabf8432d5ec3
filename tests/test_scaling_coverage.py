"""Bootstrap CI coverage on synthetic data with known truth (docs/scaling.md §5 test 3; slow)."""
from __future__ import annotations

import numpy as np
import pytest

from ltm.scaling.fit import fit_law
from ltm.scaling.frontier import exponents
from ltm.scaling.laws import ND
from ltm.scaling.uncertainty import BootstrapSettings, bootstrap

from scaling_synthetic import CHINCHILLA_ROUNDED, FIT, grid_design, nd_loss, noisy

TRUTH = CHINCHILLA_ROUNDED


def _covers(samples: np.ndarray, truth: float) -> bool:
    lo, hi = np.percentile(samples[np.isfinite(samples)], [2.5, 97.5])
    return bool(lo <= truth <= hi)


@pytest.mark.slow
def test_95_percent_bootstrap_cis_cover_the_truth():
    """σ = 0.003, 20 seeds, B = 200: ≥ 15/20 for alpha, beta, a_opt; ≥ 13/20 for E and L̂ at 10× C."""
    N, D = grid_design()
    cols = {"lnN": np.log(N), "lnD": np.log(D)}
    L0 = nd_loss(TRUTH, N, D)
    n_t = np.sqrt(10 * np.max(6 * N * D) / (6 * 20))  # 10× the largest compute at D/N = 20
    truth = {"alpha": TRUTH["alpha"], "beta": TRUTH["beta"], "a": exponents(TRUTH["alpha"], TRUTH["beta"])[0],
             "E": TRUTH["E"], "L10x": nd_loss(TRUTH, n_t, 20 * n_t)}
    hits = dict.fromkeys(truth, 0)
    for seed in range(20):
        lnL = np.log(noisy(L0, 0.003, seed))
        fit = fit_law(ND, cols, lnL, FIT)
        boot = bootstrap(ND, cols, lnL, fit.theta, FIT, BootstrapSettings(n=200, seed=seed))
        s = boot.samples[boot.ok()]
        assert boot.n_failed == 0
        nat = {"A": np.exp(s[:, 0]), "B": np.exp(s[:, 1]), "E": np.exp(s[:, 2]), "alpha": s[:, 3], "beta": s[:, 4]}
        draws = {"alpha": nat["alpha"], "beta": nat["beta"], "a": exponents(nat["alpha"], nat["beta"])[0],
                 "E": nat["E"], "L10x": nd_loss(nat, n_t, 20 * n_t)}
        for k in truth:
            hits[k] += _covers(draws[k], truth[k])
    assert hits["alpha"] >= 15 and hits["beta"] >= 15 and hits["a"] >= 15, hits
    assert hits["E"] >= 13 and hits["L10x"] >= 13, hits
