"""The report's latent-usage section and claims audit, from small hand-made evaluation records."""
from types import SimpleNamespace

from ltm.report.claims import claims_rows
from ltm.report.inputs import RunArtifacts
from ltm.report.latents import kl_floor_table, latent_section, verdict_sentence


def _usage(carries: bool) -> dict:
    info = 0.2 if carries else 0.0005
    return {"nll_fit": 4.0, "nll_prior_z": 4.0 + info, "information_vs_prior": {"nats_per_token": info, "stderr": 0.01},
            "information_vs_shuffled": {"nats_per_token": info, "stderr": 0.01}, "latents_carry_information": carries,
            "kl_per_token": 6.1, "kl_per_dim": 1.5, "kl_mean_part_per_dim": 0.01, "kl_variance_part_per_dim": 1.49,
            "latent_dims": 512, "active_units": 3 if carries else 0, "kl_floor_per_dim": 1.48}


def _run(name, family, tokens, T=0, nz=0, loss=5.0, carries=False, params=1000):
    rec = {"protocol": {"T_eval": T, "K": 4}}
    if family == "ltm":
        rec.update(iwae={"nelbo": loss}, fresh_elbo={"nelbo_stderr": 0.001}, latent_usage=_usage(carries))
    else:
        rec["exact"] = {"nll": loss}
    curve = [{"T_eval": t, "iwae_nelbo": loss + 1.0 / (1 + t), "fresh_elbo_kl": 1.0 / (1 + t),
              "kl_likelihood_free": 1.0 / (1 + t)} for t in (0, 4, 16)] if family == "ltm" else []
    return RunArtifacts(name=name, family=family, train={"tokens": tokens, "params": params},
                        eval={"inner_steps": T, "n_latents": nz, "splits": {"val": rec}}, curve=curve)


def _inputs(runs):
    return SimpleNamespace(params={"runs": {r.name: {} for r in runs}}, runs=runs, split="val", demo=None)


def test_report_says_plainly_when_latents_carry_nothing():
    inp = _inputs([_run("ltm-a", "ltm", 100, T=4, nz=8, loss=12.0), _run("ar-a", "ar", 100, loss=6.5)])
    assert "latents carry no information" in verdict_sentence(inp)
    text = latent_section(inp, {})
    assert "ltm-a" in text and "0 / 512" in text
    rows = {row[0]: row for row in claims_rows(inp)}
    assert rows["LTM beats AR at equal size and tokens"][2].startswith("not supported")
    assert rows["More latents help (at large T)"][2].startswith("not testable")
    assert "undo the initialisation" in rows["More inference steps at test time lower the bound (beyond shedding the initial KL)"][2]
    assert rows["The paper's OWT perplexities are NELBO bounds"][2].startswith("not supported at 16")


def test_claims_follow_the_numbers():
    runs = [_run("ltm-T2", "ltm", 100, T=2, nz=8, loss=4.2, carries=True),
            _run("ltm-T4", "ltm", 100, T=4, nz=8, loss=4.0, carries=True),
            _run("ar", "ar", 100, loss=4.5)]
    inp = _inputs(runs)
    assert "carry information in every" in verdict_sentence(inp)
    rows = {row[0]: row for row in claims_rows(inp)}
    assert rows["PPL falls as training T grows"][2].startswith("supported")
    assert rows["LTM beats AR at equal size and tokens"][2].startswith("supported (2 of 2")
    runs[1] = _run("ltm-T4", "ltm", 100, T=4, nz=8, loss=4.3, carries=True)  # more steps, worse bound
    assert {r[0]: r for r in claims_rows(_inputs(runs))}["PPL falls as training T grows"][2].startswith("not supported")
    # a fall that the KL of an uninformed fit accounts for is not inference
    runs[1] = _run("ltm-T4", "ltm", 100, T=4, nz=8, loss=4.0, carries=True)
    runs[0].curve = [{"T_eval": 2, "iwae_nelbo": 4.2, "kl_likelihood_free": 7.0}]
    runs[1].curve = [{"T_eval": 4, "iwae_nelbo": 4.0, "kl_likelihood_free": 6.8}]
    verdict = {r[0]: r for r in claims_rows(_inputs(runs))}["PPL falls as training T grows"]
    assert verdict[2].startswith("not supported") and "likelihood-free" in verdict[1]
    runs[1].curve = []  # without a curve the KL floor stands in
    runs[0].curve = []
    runs[0].eval["splits"]["val"]["latent_usage"]["kl_floor_per_token"] = 7.0
    runs[1].eval["splits"]["val"]["latent_usage"]["kl_floor_per_token"] = 6.9
    assert {r[0]: r for r in claims_rows(_inputs(runs))}["PPL falls as training T grows"][2].startswith("supported")


def test_kl_floor_table_flags_the_paper_numbers_below_the_floor():
    text = kl_floor_table()
    assert text.count("below the floor") == 1  # T = 16 only: from T = 32 on the floor is ~0
    assert "| 16 |" in text


def test_ground_truth_is_shown_beside_every_bound_on_a_synthetic_corpus():
    ltm, ar = _run("ltm-a", "ltm", 100, T=4, nz=8, loss=4.3), _run("ar-a", "ar", 100, loss=4.2)
    for r, bpb in ((ltm, 2.5), (ar, 2.4)):
        rec = r.eval["splits"]["val"]
        rec["ground_truth"] = {"bpb": 2.2, "bpb_stderr": 0.01}
        rec["iwae" if r is ltm else "exact"]["bpb"] = bpb
    text = latent_section(_inputs([ltm, ar]), {})
    assert "Against the ground truth" in text
    assert "| ltm-a | IWAE bound | 2.5 | 2.2 ± 0.01 | 0.3 |" in text
    assert "| ar-a | exact NLL | 2.4 |" in text
    assert "Against the ground truth" not in latent_section(_inputs([_run("ltm-b", "ltm", 100, T=4, nz=8)]), {})


def test_deviations_from_the_paper_are_labelled():
    from ltm.report.latents import deviations

    dev = deviations({"posterior": {"inner_steps": 4, "lr_max": 0.34, "lr_min": 0.034, "init_logvar_mean": -5.0},
                      "data": {"shards": {"seq_len": 1024}}})
    assert dev == ["T (inner steps at training) `posterior.inner_steps` = 4 (paper: 16)"]
