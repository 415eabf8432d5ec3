"""Degenerate designs and bad input are refused or flagged (docs/scaling.md §3.1, §3.7, §5 test 9)."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from ltm.config import load_schema
from ltm.errors import LtmError
from ltm.scaling import run_scaling
from ltm.scaling.checks import identifiability
from ltm.scaling.config import KEYS, resolve
from ltm.scaling.fit import MIN_AGREE
from ltm.scaling.laws import ND
from ltm.scaling.records import normalize, to_points

from scaling_synthetic import (
    CHINCHILLA_ROUNDED,
    METHOD,
    RATIOS_5,
    SIZES_5,
    grid_design,
    make_records,
    nd_loss,
    nd_theta,
    noisy,
)

FAST = {**METHOD, "n_bootstrap": 0}
TH = nd_theta(CHINCHILLA_ROUNDED)


def _rho(N, D):
    return identifiability(ND, TH, {"lnN": np.log(N), "lnD": np.log(D)})


def _nd_entry(records, cfg=FAST):
    res = run_scaling(records, cfg)
    (group,) = res["groups"]
    main = [e for e in group["laws"] if e["role"] == "main"]
    assert len(main) == 1
    return main[0], res


def _records(N, D, sigma=0.003, seed=0, **kw):
    return make_records(noisy(nd_loss(CHINCHILLA_ROUNDED, N, D), sigma, seed), N, D, **kw)


def test_identifiability_ratio_matches_reproduced_values():
    N, D = grid_design()
    assert _rho(N, D) == pytest.approx(2.4e-3, rel=0.1)  # docs/scaling.md §3.7 table
    N1 = np.array(SIZES_5 * 5)
    assert _rho(N1, 20 * N1) < 1e-5  # collinear D = 20N: refuse
    assert _rho(np.full(25, 40e6), 40e6 * np.array(RATIOS_5 * 5)) < 1e-12  # one size
    N2, D2 = grid_design(ratios=(15, 17.5, 20, 22.5, 25))
    assert 1e-5 < _rho(N2, D2) < 1e-3  # narrow D/N: flag, don't refuse


def test_collinear_design_is_refused():
    N = np.repeat(SIZES_5, 5) * np.tile([1.0, 1.01, 1.02, 1.03, 1.04], 5)
    entry, _ = _nd_entry(_records(N, 20 * N))
    assert entry["status"] == "refused"
    assert "D/N" in entry["reason"]
    assert "params" not in entry


def test_single_model_size_is_refused():
    D = 40e6 * np.array(RATIOS_5 * 5) * np.repeat([1.0, 1.1, 1.2, 1.3, 1.4], 5)
    entry, res = _nd_entry(_records(np.full(25, 40e6), D))
    assert entry["status"] == "refused" and "distinct N" in entry["reason"]
    # the fallback shows what the design does support: L(D) at fixed N
    fallback = [e for e in res["groups"][0]["laws"] if e["role"] == "fallback"]
    assert [e["law"] for e in fallback] == ["L(D)|N"] and fallback[0]["status"] == "accepted"


def test_too_few_points_is_refused():
    N, D = grid_design(SIZES_5[:3], RATIOS_5[:3])
    entry, _ = _nd_entry(_records(N, D))
    assert entry["status"] == "refused"
    assert "9 points for 5 free parameters (need at least 20)" in entry["reason"]


def test_all_equal_losses_are_refused():
    N, D = grid_design()
    entry, _ = _nd_entry(make_records(np.full(N.size, 3.0), N, D))
    assert entry["status"] == "refused" and "all losses are equal" in entry["reason"]


def test_optimum_at_bound_is_refused_with_the_parameter_named():
    N, D = grid_design()
    entry, res = _nd_entry(make_records(1.69 + 0.02 * N**0.2 + 410.7 / D**0.28, N, D))
    assert entry["status"] == "refused" and "alpha=0 (lower bound)" in entry["reason"]
    assert entry["diagnostics"]["at_bound"]
    assert res["groups"][0]["accepted"] == []
    assert any("no law passed the checks" in w for w in res["warnings"])


def test_narrow_ratio_design_is_flagged():
    N, D = grid_design(ratios=(15, 17.5, 20, 22.5, 25))
    entry, _ = _nd_entry(_records(N, D, sigma=0.0005, seed=2))
    assert entry["status"] == "accepted"
    assert any("weakly identified" in w for w in entry["warnings"])
    assert any("D/N spans only 1.7x" in w for w in entry["warnings"])


@pytest.mark.parametrize("bad, msg", [
    ({"loss": float("nan")}, "'loss' must be finite"),
    ({"loss": -1.0}, "'loss' must be finite and > 0"),
    ({"loss": 0.0}, "> 0"),
    ({"params": 0}, "'params' must be finite"),
    ({"tokens": float("inf")}, "'tokens' must be finite"),
    ({"loss": "3.1"}, "must be a number"),
    ({"family": "rnn"}, "family must be one of"),
    ({"loss_kind": ""}, "loss_kind must be a non-empty string"),
    ({"params": None}, "missing key"),
])
def test_bad_records_raise_one_line_errors(bad, msg):
    rec = {"run": "r0", "family": "ar", "loss_kind": "nll_exact", "loss": 3.0, "params": 1e6, "tokens": 1e7}
    rec.update(bad)
    with pytest.raises(LtmError, match=msg) as err:
        run_scaling([rec], FAST)
    assert "\n" not in str(err.value)


def test_ltm_record_needs_T_and_duplicates_are_refused():
    rec = {"run": "r0", "family": "ltm", "loss_kind": "elbo_fresh", "loss": 3.0, "params": 1e6, "tokens": 1e7}
    with pytest.raises(LtmError, match="needs 'T'"):
        normalize([rec])
    rec["T"] = 4
    with pytest.raises(LtmError, match="duplicate record"):
        normalize([rec, dict(rec)])
    normalize([rec, {**rec, "loss_kind": "iwae"}])  # same run under another loss kind is fine
    with pytest.raises(LtmError, match="no run records"):
        normalize([])


def test_mixed_loss_kinds_are_never_fitted_together():
    N, D = grid_design()
    recs = _records(N, D, prefix="a") + _records(N, D, seed=1, prefix="b", family="ltm", loss_kind="elbo_fresh", T=4)
    with pytest.raises(LtmError, match="mixed loss kinds"):
        to_points(normalize(recs))
    mixed_family = _records(N, D, prefix="a") + _records(N, D, seed=1, prefix="b", family="diffusion")
    with pytest.raises(LtmError, match="mixed families"):
        to_points(normalize(mixed_family))
    res = run_scaling(recs, FAST)
    assert [(g["family"], g["loss_kind"], g["n_fitted"]) for g in res["groups"]] == [
        ("ar", "nll_exact", 25), ("ltm", "elbo_fresh", 25)]
    assert res["groups"][1]["loss_is_bound"] and not res["groups"][0]["loss_is_bound"]


def test_config_validation_names_the_key():
    assert asdict(resolve(METHOD)) == METHOD
    with pytest.raises(LtmError, match="missing key.*min_tokens_per_param"):  # no defaults: params.yaml has them
        resolve({k: v for k, v in METHOD.items() if k != "min_tokens_per_param"})
    with pytest.raises(LtmError, match="unknown key.*huber_dleta"):
        resolve({"huber_dleta": 1e-3})
    with pytest.raises(LtmError, match="fit.n_bootstrap"):
        resolve({"n_bootstrap": "many"})
    with pytest.raises(LtmError, match="unknown key.*grid"):  # the start grid is fixed, not a key
        resolve({"grid": {"alpha": [1.0]}})
    with pytest.raises(LtmError, match="heldout_rule"):
        resolve({**METHOD, "heldout_rule": "random"})
    st = resolve({**METHOD, "huber_delta": 1e-2, "n_starts": 5})
    assert st.fit.delta == 1e-2 and st.fit.n_starts == 5
    # fewer starts than must agree is refused by the schema, which states the acceptance rule's minimum
    with pytest.raises(LtmError, match="fit.n_starts: 2 is less than the minimum of 3"):
        resolve({**METHOD, "n_starts": 2})
    assert load_schema()["properties"]["fit"]["properties"]["n_starts"]["minimum"] == MIN_AGREE
    # the typed settings hold exactly the schema's fit keys, less the two that choose the records
    assert set(KEYS) == set(load_schema()["properties"]["fit"]["required"]) - {"loss_kinds", "split"}


def test_exclusions_are_logged_and_sensitivity_reported():
    N, D = grid_design()
    recs = _records(N, D)
    recs += make_records(np.array([4.8, 4.6]), np.array([2e9, 3e9]), np.array([2e8, 3e8]), prefix="tiny-D")
    recs.append({**recs[0], "run": "diverged-run", "diverged": True, "loss": 9.0})
    entry, res = _nd_entry(recs)
    reasons = {e["run"]: e["reason"] for e in res["groups"][0]["excluded"]}
    assert reasons == {"tiny-D-0": "D/N < 1", "tiny-D-1": "D/N < 1", "diverged-run": "diverged"}
    assert entry["status"] == "accepted" and entry["n_points"] == 25
    sens = entry["exclusion_sensitivity"]
    assert sens["n_points"] == 28 and sens["available"]
    # the far-off-frontier runs drag alpha: the shift is what the report must show
    assert sens["shift"]["alpha"] == pytest.approx(sens["params"]["alpha"] - entry["params"]["alpha"]["estimate"])
    assert abs(sens["shift"]["alpha"]) > 0.01
