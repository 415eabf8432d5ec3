"""The stage API end to end: run_scaling → result dict → fit.json + residuals.csv (docs/scaling.md §4)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ltm.scaling import format_summary, run_scaling, write_outputs
from ltm.scaling.api import RESIDUAL_COLUMNS
from ltm.scaling.fit import fit_law
from ltm.scaling.laws import ND
from ltm.scaling.uncertainty import BootstrapSettings, bootstrap

from scaling_synthetic import CHINCHILLA_ROUNDED, FIT, METHOD, grid_design, make_records, nd_loss, noisy

LTM_TRUTH = {"A": 406.4, "B": 250.0, "E": 1.45, "alpha": 0.34, "beta": 0.28}
CFG = {**METHOD, "n_bootstrap": 30}


def _pipeline_records():
    """AR and LTM sweeps on the same 5×5 grid; LTM pays ~12× the compute per token (T = 16 inner steps);
    three seeds on two AR configs to measure seed noise."""
    N, D = grid_design()
    recs = make_records(noisy(nd_loss(CHINCHILLA_ROUNDED, N, D), 0.003, 0), N, D, prefix="ar", seed=0)
    for seed in (1, 2):
        for i in (6, 18):
            recs += make_records(noisy(nd_loss(CHINCHILLA_ROUNDED, N[i:i + 1], D[i:i + 1]), 0.003, 10 * seed + i),
                                 N[i:i + 1], D[i:i + 1], prefix=f"ar-s{seed}-{i}", seed=seed)
    recs += make_records(noisy(nd_loss(LTM_TRUTH, N, D), 0.003, 1), N, D, family="ltm", loss_kind="elbo_fresh",
                         prefix="ltm", T=16, n_latents=24, T_eval=16, flops=70 * N * D)
    return recs


@pytest.fixture(scope="module")
def result():
    return run_scaling(_pipeline_records(), CFG)


def test_result_is_strict_json_and_has_the_reporting_fields(result):
    json.dumps(result, allow_nan=False)
    assert result["schema"] == "ltm.scaling.fit/1" and len(result["data_hash"]) == 64
    assert result["config"]["huber_delta"] == 1e-3 and result["config"]["n_bootstrap"] == 30
    ar, ltm = result["groups"]
    assert (ar["family"], ltm["family"]) == ("ar", "ltm")
    for g in (ar, ltm):
        main = g["laws"][0]
        assert main["role"] == "main" and main["status"] == "accepted"
        for key in ("form", "parametrisation", "objective", "optimizer", "bounds", "n_points", "params",
                    "derived", "diagnostics", "fit_quality", "bootstrap", "warnings", "compute_convention"):
            assert key in main, key
        assert main["objective"] == {"type": "huber_log", "delta": 1e-3, "reduction": "sum", "scale": "1/delta^2"}
        assert main["optimizer"]["tolerances"] == {"ftol": 1e-15, "gtol": 1e-9, "maxiter": 10000}
        assert main["optimizer"]["starts"]["grid_points"] == 4500
        for p in ("A", "B", "E", "alpha", "beta"):
            est, (lo, hi) = main["params"][p]["estimate"], main["params"][p]["ci95"]
            assert lo <= est <= hi and main["params"][p]["se"] > 0
        assert main["diagnostics"]["converged"] and main["diagnostics"]["crosscheck"]["agrees"]
        assert [row["delta"] for row in main["diagnostics"]["delta_sensitivity"]] == [1e-4, 1e-2, "least_squares"]
        assert main["fit_quality"]["heldout"]["available"]


def test_frontier_uses_each_familys_compute_accounting(result):
    ar, ltm = (g["laws"][0] for g in result["groups"])
    assert ar["compute_convention"]["k"] == pytest.approx(6.0) and ar["compute_convention"]["p"] == pytest.approx(1.0)
    assert ltm["compute_convention"]["k"] == pytest.approx(70.0)
    for e, k in ((ar, 6.0), (ltm, 70.0)):
        c = e["target_flops"][1]  # 10x the group's largest compute
        n, d = e["derived"][f"N_opt@C={c:.3g}"]["estimate"], e["derived"][f"D_opt@C={c:.3g}"]["estimate"]
        assert k * n * d == pytest.approx(c, rel=1e-9)
    assert ltm["subset"] == {"T": 16.0, "n_latents": 24.0}


def test_crossover_is_reported_as_bound_vs_exact(result):
    (cmp,) = result["comparisons"]
    assert cmp["label"] == "ltm elbo_fresh (bound) vs ar nll_exact (exact)"
    lo, hi = cmp["bootstrap"]["ci95"]
    assert lo <= cmp["crossover_flops"] <= hi
    assert cmp["searched_flops"][0] < cmp["crossover_flops"] < cmp["searched_flops"][1]


def test_seed_noise_is_measured_where_seeds_exist(result):
    ar, ltm = result["groups"]
    assert ar["seed_noise"]["measured"] and ar["seed_noise"]["configs_with_3_seeds"] == 2
    assert ar["seed_noise"]["sd_log_loss"] == pytest.approx(0.003, rel=0.8)
    assert not ltm["seed_noise"]["measured"]
    assert any("[ltm/elbo_fresh] seed noise not measured" in w for w in result["warnings"])


def test_write_outputs(result, tmp_path):
    paths = write_outputs(result, tmp_path / "scaling")
    fit = json.loads(paths["fit"].read_text())
    assert "residual_rows" not in fit and fit["groups"] == result["groups"]
    with open(paths["residuals"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == RESIDUAL_COLUMNS
    assert len(rows) == len(result["residual_rows"])
    main_rows = [r for r in rows if r["law"] == "L(N,D)" and r["split"] == "full" and r["family"] == "ar"]
    assert len(main_rows) == 29 and {r["role"] for r in main_rows} == {"in_fit"}
    held = [r for r in rows if r["law"] == "L(N,D)" and r["role"] == "held_out"]
    assert held and all(r["split"] == "heldout" for r in held)
    r = main_rows[0]
    assert float(r["residual"]) == pytest.approx(np.log(float(r["predicted"])) - np.log(float(r["observed"])))
    assert sorted(p.name for p in (tmp_path / "scaling").iterdir()) == ["fit.json", "residuals.csv"]


def test_small_cpu_grid_refuses_the_full_law_and_shows_what_it_supports():
    """Two tiny model sizes, each trained to 12 token budgets: L(N, D) cannot separate alpha from the
    other parameters. The report says so, shows the one-variable laws L(D)|N the grid does support,
    and never prints a refused fit's parameters."""
    N, D = grid_design((1e6, 4e6), tuple(np.geomspace(2, 200, 12)))
    nat = {"A": 30.0, "B": 60.0, "E": 2.0, "alpha": 0.3, "beta": 0.3}
    recs = make_records(noisy(nd_loss(nat, N, D), 0.002, 0), N, D, family="ltm", loss_kind="elbo_fresh", T=4,
                        n_latents=8)
    res = run_scaling(recs, CFG)
    (g,) = res["groups"]
    main = g["laws"][0]
    assert main["status"] == "refused" and "only 2 distinct N value(s) (need 3)" in main["reason"]
    assert "params" not in main and "theta" not in main
    fallback = [e for e in g["laws"] if e["role"] == "fallback"]
    assert [(e["law"], e["status"]) for e in fallback] == [("L(D)|N", "accepted")] * 2
    for e in fallback:
        assert e["params"]["alpha"]["estimate"] == pytest.approx(0.3, abs=0.05)  # L(D) at fixed N: beta
    text = format_summary(res)
    refused_lines = [ln for ln in text.splitlines() if "REFUSED" in ln]
    assert refused_lines and all("alpha=" not in ln and "E=" not in ln for ln in refused_lines)
    assert "L(N,D) [T=4.0 n_latents=8.0]: REFUSED - L(N,D): only 2 distinct N" in text
    assert sum("L(D)|N [N=" in ln and "alpha=" in ln for ln in text.splitlines()) == 2


def test_groups_fitted_side_by_side_give_the_same_result(result):
    assert run_scaling(_pipeline_records(), CFG, processes=2) == result


def test_bootstrap_is_deterministic_and_the_same_in_parallel():
    N, D = grid_design()
    cols, lnL = {"lnN": np.log(N), "lnD": np.log(D)}, np.log(noisy(nd_loss(CHINCHILLA_ROUNDED, N, D), 0.003, 5))
    fs = FIT
    theta = fit_law(ND, cols, lnL, fs).theta
    runs = [bootstrap(ND, cols, lnL, theta, fs, BootstrapSettings(n=24, check_every=12, seed=3, n_jobs=j))
            for j in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0].samples, runs[1].samples)
    np.testing.assert_array_equal(runs[0].samples, runs[2].samples)
    assert runs[0].n_checked == 2 and runs[0].n_failed == 0
    assert np.ptp(runs[0].samples[:, 3]) > 1e-3  # replicates really move away from the warm start
