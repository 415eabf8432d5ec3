"""Extra axes (inner steps T, number of latents N_z) and loss vs T_eval (docs/scaling.md §3.8, §5 test 13)."""
from __future__ import annotations

import numpy as np
import pytest

from ltm.scaling import run_scaling
from ltm.scaling.axes import extra_axis, pareto
from ltm.scaling.config import resolve
from ltm.scaling.laws import AXIS_LAWS
from ltm.scaling.records import normalize, to_points

from scaling_synthetic import CHINCHILLA_ROUNDED, METHOD, grid_design, law_loss, make_records, nd_theta, noisy

KAPPA = 0.3


def _axis_records(axis: str, seed: int, form: str = "eff_data_log", values=(4.0, 16.0, 64.0)):
    N0, D0 = grid_design()
    k = len(values)
    N, D, x = np.tile(N0, k), np.tile(D0, k), np.repeat(values, N0.size)
    col = {"T": "lnT1", "N_z": "lnZ1"}[axis]
    extra = {"eff_data_log": [KAPPA], "eff_params_log": [KAPPA], "eff_params_pow": [0.3], "additive": [0.0, 0.5]}
    theta = np.concatenate([nd_theta(CHINCHILLA_ROUNDED), extra[form]])
    L = law_loss(AXIS_LAWS[axis][form], theta, {"lnN": np.log(N), "lnD": np.log(D), col: np.log1p(x)})
    fixed = {"T": x, "n_latents": 24} if axis == "T" else {"T": 16, "n_latents": x}
    return make_records(noisy(L, 0.003, seed), N, D, family="ltm", loss_kind="elbo_fresh", prefix=f"s{seed}",
                        **fixed)


def _select(records, axis, cfg=None):
    st = resolve({**METHOD, "n_bootstrap": 0, "n_starts": 10, **(cfg or {})})
    (res,) = extra_axis(to_points(normalize(records)), axis, st, {})
    return res


def test_effective_data_form_is_selected_and_kappa_recovered():
    res = _select(_axis_records("T", seed=0), "T", {"n_bootstrap": 20})
    sel = res["selection"]
    assert sel["chosen"] == "eff_data_log"
    maes = {r["form"]: r["heldout_mae"] for r in sel["table"] if r.get("heldout_mae") is not None}
    assert maes["eff_data_log"] == min(maes.values()) and len(maes) >= 2
    chosen = res["outcomes"]["eff_data_log"].entry
    kappa = chosen["params"]["kappa"]
    assert kappa["estimate"] == pytest.approx(KAPPA, abs=0.1)
    # only the winner is bootstrapped
    assert chosen["bootstrap"]["B"] == 20 and kappa["ci95"][0] < kappa["estimate"] < kappa["ci95"][1]
    assert all(o.entry.get("bootstrap") is None for k, o in res["outcomes"].items() if k != "eff_data_log")
    for row in sel["table"]:  # every candidate is reported, accepted or refused with a reason
        assert row["status"] == "accepted" or row["reason"]
        if row["status"] == "accepted":
            assert {"aic", "bic"} <= set(row)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_effective_data_selection_over_seeds(seed):
    res = _select(_axis_records("T", seed=seed), "T")
    assert res["selection"]["chosen"] == "eff_data_log"
    assert res["outcomes"]["eff_data_log"].entry["params"]["kappa"]["estimate"] == pytest.approx(KAPPA, abs=0.1)


def test_latents_axis_uses_the_same_forms():
    res = _select(_axis_records("N_z", seed=0, form="eff_params_log", values=(8.0, 24.0, 96.0)), "N_z")
    assert res["axis"] == "N_z" and res["subset"] == {"T": 16.0}
    # the two effective-parameter forms are near-identical over 8-96 latents; either may win, data must not
    assert res["selection"]["chosen"] in ("eff_params_log", "eff_params_pow")
    maes = {r["form"]: r["heldout_mae"] for r in res["selection"]["table"] if r.get("heldout_mae") is not None}
    assert maes["eff_data_log"] > 1.5 * maes[res["selection"]["chosen"]]


def test_too_few_T_values_refuse_every_form():
    recs = _axis_records("T", seed=0, values=(4.0, 16.0))
    res = _select(recs, "T")
    assert res["selection"]["chosen"] is None
    assert all("distinct T" in r["reason"] for r in res["selection"]["table"])
    narrow = _select(_axis_records("T", seed=0, values=(8.0, 12.0, 16.0)), "T")
    assert all("T spans only 2x (need 4x)" in r["reason"] for r in narrow["selection"]["table"])


def _teval_records(kind: str, seed: int = 0):
    te = np.array([1.0, 2, 4, 8, 16, 32, 64, 128])
    curve = 2.5 + (1.5 * np.exp(-te / 8.0) if kind == "exp" else 1.5 * te**-0.5)
    L = noisy(curve, 0.001, seed)
    return [{"run": "ltm-a", "family": "ltm", "loss_kind": "elbo_fresh", "loss": float(l), "params": 5e6,
             "tokens": 1e8, "T": 16, "n_latents": 24, "T_eval": float(t)} for l, t in zip(L, te)]


@pytest.mark.parametrize("kind, chosen, name, value", [
    ("exp", "saturating_exp", "tau", 8.0),
    ("power", "saturating_power", "gamma", 0.5),
])
def test_teval_curve_form_is_chosen_by_heldout_error(kind, chosen, name, value):
    res = run_scaling(_teval_records(kind), {**METHOD, "n_bootstrap": 50})
    (group,) = res["groups"]
    (sel,) = group["teval_selection"]
    assert sel["run"] == "ltm-a" and sel["selection"]["chosen"] == chosen
    entry = next(e for e in group["laws"] if e["role"] == "teval" and e["law"].endswith(chosen))
    assert entry["params"][name]["estimate"] == pytest.approx(value, rel=0.15)
    assert entry["params"]["L_inf"]["estimate"] == pytest.approx(2.5, abs=0.1)
    assert entry["bootstrap"]["method"].startswith("residual")
    assert "T_eval <= 32" in entry["fit_quality"]["heldout"]["split"]
    # the headline row (T_eval = T = 16) is the run's main record; the L(N, D) law is refused (one run)
    main = next(e for e in group["laws"] if e["role"] == "main")
    assert main["status"] == "refused"


def test_pareto_envelope_rows():
    recs = make_records(np.array([4.0, 3.5, 3.8, 3.0, 3.1]), np.full(5, 1e6), np.array([1e7, 2e7, 3e7, 4e7, 5e7]))
    p = to_points(normalize(recs))
    assert list(pareto(p)) == [0, 1, 3]
