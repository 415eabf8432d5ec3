"""The results report: built from a small synthetic set of artifacts with the pipeline's file layout.

The artifacts are written here (no training): per-run training metrics and logs, evaluation metrics and
T_eval curves, and a real scaling fit (ltm.scaling.run_scaling) on them, in which the loss-vs-T_eval laws
are accepted and the run-level laws refused, as on a small CPU grid.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from ltm.errors import LtmError
from ltm.grid import all_runs
from ltm.io import write_json
from ltm.report import build_report
from ltm.report.laws import accepted_laws, read_residuals
from ltm.scaling import run_scaling, write_outputs

from scaling_synthetic import METHOD

# The params sections the report reads (written out, not loaded: the report does not validate params).
PARAMS = {
    "data": {"corpus": {"source": "builtin"}, "tokenizer": {"kind": "bpe", "vocab_size": 512},
             "shards": {"seq_len": 32}},
    "models": {"ltm-tiny": {"family": "ltm", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_latents": 4, "window": 16},
               "ar-tiny": {"family": "ar", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_latents": 0, "window": 16}},
    "runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 40000}, "ar-tiny": {"model": "ar-tiny", "tokens": 40000}},
    "sweep": {"ltm": {"models": ["ltm-tiny"], "tokens": [20000, 40000], "inner_steps": [2, 8], "n_latents": [4]},
              "ar": {"models": ["ar-tiny"], "tokens": [20000]}},
    "eval": {"samples": 4, "t_curve": [0, 1, 2, 3, 4, 6, 8, 12, 16], "t_curve_max_rows": 32},
    "fit": {"split": "val"},
}
SCALING_CFG = {**METHOD, "n_bootstrap": 10, "min_tokens_per_param": 0.0}
POISON = {"alpha": 0.987654321, "a": 31.4159265, "J": 2.7182818}  # values only a refused entry carries
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ltm_loss(t_eval: float, tokens: float, fresh: bool) -> float:
    """Smooth saturating loss in T_eval, lower with more tokens; fresh ELBO above IWAE."""
    return 4.0 + 2e4 / tokens + (0.07 if fresh else 0.0) + 3.0 * math.exp(-t_eval / 4.0)


def _split(family: str, T: int, tokens: int, shift: float, K: int) -> dict:
    n_tok, n_bytes = 4096, 9000.0
    proto = {"T_eval": T if family == "ltm" else 0, "K": K if family == "ltm" else None, "seed": 0,
             "batch_size": 16, "block_length": 32, "max_rows": 128, "sequences": 128, "tokens": n_tok,
             "bytes": n_bytes}
    rec = {"protocol": proto, "dataset": {"tokenizer_sha256": "ab" * 32, "heldout": shift > 0}}
    bpb = lambda nats: nats * n_tok / (math.log(2) * n_bytes)  # noqa: E731
    if family == "ar":
        nll = 5.0 + 1e4 / tokens + shift
        rec["exact"] = {"nll": nll, "ppl": math.exp(nll), "bpb": bpb(nll)}
        return rec
    iw, fr = _ltm_loss(T, tokens, False) + shift, _ltm_loss(T, tokens, True) + shift
    rec["iwae"] = {"nelbo": iw, "ppl": math.exp(iw), "bpb": bpb(iw)}
    rec["fresh_elbo"] = {"nll": fr - 1.0, "kl": 1.0, "nelbo": fr, "ppl": math.exp(fr), "bpb": bpb(fr),
                         "nelbo_stderr": 1e-3}
    rec["paper"] = {"nll": fr - 1.1, "kl": 1.0, "nelbo": fr - 0.1, "ppl": math.exp(fr - 0.1), "bpb": bpb(fr - 0.1),
                    "ppl_mean_of_sequences": math.exp(fr - 0.05), "note": "biased"}
    return rec


def _lineage(stage: str, h: str) -> dict:
    return {"stage": stage, "params_hash": h, "git": {"commit": "0123456789abcdef", "dirty": False},
            "output_sha256": "feedc0ffee" + h}


def make_artifacts(root: Path) -> dict:
    """params + runs/ + results/{eval,scaling} for every run of the synthetic params; returns the params."""
    params = copy.deepcopy(PARAMS)
    rng = np.random.default_rng(0)
    records = []
    for i, name in enumerate(all_runs(params)):
        ltm = name.startswith("ltm")
        T = (4 if name == "ltm-tiny" else int(name.split("-T")[1].split("-")[0])) if ltm else 0
        tokens = 20000 if "D20000" in name else 40000
        n_params = 51424 + 7 * i
        flops = tokens * (T + 1) * 963217.5
        run_dir = root / "runs" / name
        write_json(run_dir / "metrics.json", {
            "run": name, "family": "ltm" if ltm else "ar", "steps": tokens // 4096, "tokens": tokens,
            "params": n_params, "n_latents": 4 if ltm else 0, "inner_steps": T, "train_loss": 6.1234 + i / 7,
            "val_loss": 12.3456 + i / 3 if ltm else 5.4321 + i / 9,
            "val_loss_kind": "nelbo_optim_noise" if ltm else "nll_exact",
            "flops_per_token_formula": flops / tokens, "train_flops": flops, "tokens_per_s": 1234.5})
        (run_dir / "train_log.tsv").write_text("step\ttokens\tloss\tval_loss\n0\t0\t\t9\n5\t2048\t7.1\t\n"
                                               f"10\t{tokens}\t6.2\t6.3\n")
        write_json(run_dir / "model" / "lineage.json", {**_lineage("train", f"train{i:012d}"), "run_hash": f"rh{i}"})
        family = "ltm" if ltm else "ar"
        ev = {"run": name, "family": family, "inner_steps": T, "n_latents": 4 if ltm else 0, "tokens": tokens,
              "params": n_params, "train_flops": flops,
              "splits": {"val": _split(family, T, tokens, 0.0, 4), "heldout-lee": _split(family, T, tokens, 0.3, 4)}}
        eval_dir = root / "results" / "eval" / name
        write_json(eval_dir / "metrics.json", ev)
        write_json(eval_dir / "lineage.json", {**_lineage("evaluate", "evalhash00000001"),
                                               "params": {"eval": params["eval"]}})
        base = {"run": name, "family": family, "params": n_params, "tokens": tokens, "flops": flops, "T": T,
                "n_latents": 4 if ltm else None}
        val = ev["splits"]["val"]
        if not ltm:
            (eval_dir / "t_curve.tsv").write_text("T_eval\texact_nll\n0\t5.5\n")
            records.append({**base, "loss_kind": "nll_exact", "loss": val["exact"]["nll"]})
            continue
        lines = ["T_eval\tpaper_ppl\tfresh_elbo_nelbo\tfresh_elbo_ppl\tiwae_nelbo\tiwae_ppl"]
        for t in params["eval"]["t_curve"]:
            iw = _ltm_loss(t, tokens, False) * math.exp(rng.normal(0, 0.002))
            fr = _ltm_loss(t, tokens, True) * math.exp(rng.normal(0, 0.002))
            lines.append(f"{t}\t{math.exp(fr - 0.1):.6g}\t{fr:.6g}\t{math.exp(fr):.6g}\t{iw:.6g}\t{math.exp(iw):.6g}")
            if t >= 1 and t != T:
                records += [{**base, "loss_kind": "iwae", "loss": float(f"{iw:.6g}"), "T_eval": t},
                            {**base, "loss_kind": "elbo_fresh", "loss": float(f"{fr:.6g}"), "T_eval": t}]
        (eval_dir / "t_curve.tsv").write_text("\n".join(lines) + "\n")
        records += [{**base, "loss_kind": "iwae", "loss": val["iwae"]["nelbo"]},
                    {**base, "loss_kind": "elbo_fresh", "loss": val["fresh_elbo"]["nelbo"]}]
    scaling = root / "results" / "scaling"
    result = run_scaling(records, SCALING_CFG)
    result["groups"][0]["laws"].append({  # a refused entry that (wrongly) carries values: never printed
        "law": "L(N,D)", "law_id": "chinchilla_nd", "status": "refused", "reason": "L(N,D): poisoned test entry",
        "subset": {"T": 9.0},
        "params": {"alpha": {"estimate": POISON["alpha"]}}, "theta": {"a": POISON["a"]},
        "diagnostics": {"J": POISON["J"]}})
    write_outputs(result, scaling)
    write_json(scaling / "lineage.json", _lineage("scaling", "fithash000000001"))
    return params


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("report_src")
    return root, make_artifacts(root)


def build(root: Path, params: dict, out: Path | None = None, **kw) -> Path:
    return build_report(params, root / "runs", root / "results" / "eval", root / "results" / "scaling",
                        out or root / "report", **kw)


@pytest.fixture(scope="module")
def built(artifacts) -> tuple[Path, dict, str]:
    root, params = artifacts
    path = build(root, params)
    return root, params, path.read_text(encoding="utf-8")


def table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after `heading`, as dicts keyed by the header cells."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    head = rows[0]
    return [dict(zip(head, r)) for r in rows[2:]]


def close(cell: str, value: float) -> bool:
    return math.isclose(float(cell), float(value), rel_tol=6e-4)


def test_run_table_numbers_match_the_metrics_files(built):
    root, params, text = built
    rows = {r["run"]: r for r in table_after(text, "## 1. Runs")}
    assert set(rows) == set(all_runs(params))
    for name, row in rows.items():
        train = json.loads((root / "runs" / name / "metrics.json").read_text())
        val = json.loads((root / "results" / "eval" / name / "metrics.json").read_text())["splits"]["val"]
        for col, key in (("params", "params"), ("tokens", "tokens"), ("T", "inner_steps"), ("N_z", "n_latents"),
                         ("train FLOPs", "train_flops"), ("train val loss", "val_loss")):
            assert close(row[col], train[key]), (name, col)
        assert row["val loss kind"] == train["val_loss_kind"]
        if train["family"] == "ltm":
            assert close(row["IWAE PPL (≤)"], val["iwae"]["ppl"])
            assert close(row["fresh-ELBO PPL (≤)"], val["fresh_elbo"]["ppl"])
            assert close(row["bpb"], val["iwae"]["bpb"]) and row["bpb of"] == "IWAE"
            assert row["exact PPL"] == "—"
            assert f"T_eval={train['inner_steps']}, K=4" in row["eval protocol"]
        else:
            assert close(row["exact PPL"], val["exact"]["ppl"])
            assert close(row["bpb"], val["exact"]["bpb"]) and row["bpb of"] == "exact"
            assert row["IWAE PPL (≤)"] == "—" and row["eval protocol"].startswith("exact")


def test_zero_shot_table_and_paper_numbers_are_labelled(built):
    root, _, text = built
    rows = table_after(text, "### Zero-shot")
    assert {r["split"] for r in rows} == {"heldout-lee"}
    for r in rows:
        val = json.loads((root / "results" / "eval" / r["run"] / "metrics.json").read_text())["splits"]["heldout-lee"]
        key = "iwae" if "iwae" in val else "exact"
        col = "IWAE PPL (≤)" if key == "iwae" else "exact PPL"
        assert close(r[col], val[key]["ppl"])
    assert text.count("paper (OWT-trained, GPT-2 tokenizer; not comparable in scale)") >= 3
    assert "≤32.06" in text and "161.33" in text
    assert "**Not run**" in text  # no few-shot results in this set
    # builtin corpus: the report says no fast-loop setting made the latents useful here, and where the study is
    assert "**Fast-loop settings on this corpus.**" in text and "docs/latent-regimes.md" in text


def test_refused_laws_show_reasons_and_never_values(built):
    root, _, text = built
    fit = json.loads((root / "results" / "scaling" / "fit.json").read_text())
    section = text[text.index("### Refused laws"):]
    refused = [e for g in fit["groups"] for e in g["laws"] if e["status"] == "refused"]
    assert refused
    for e in refused:
        assert e["reason"].split(": ", 1)[1] in section
    for v in POISON.values():
        for shown in (f"{v:.4g}", f"{v:.3g}", str(v)):
            assert shown not in text
    assert "poisoned test entry" in section


def test_accepted_laws_are_printed_with_cis_and_plotted(built):
    root, _, text = built
    fit = json.loads((root / "results" / "scaling" / "fit.json").read_text())
    accepted = [e for g in fit["groups"] for e in g["laws"] if e["status"] == "accepted"]
    assert accepted and all(e["law"].startswith("L(T_eval)") for e in accepted)
    table = text[text.index("### Accepted laws"):text.index("### Refused laws")]
    for e in accepted:
        for k, v in e["params"].items():
            assert f"{k} = {v['estimate']:.4g} [{v['ci95'][0]:.4g}, {v['ci95'][1]:.4g}]" in table
    assert "No scaling law passed" not in text
    figs = root / "report" / "figures"
    for kind in ("iwae", "elbo_fresh"):
        assert (figs / f"law_ltm_{kind}_teval.png").is_file()
        assert (figs / f"parity_ltm_{kind}_teval.png").is_file()
        assert f"figures/parity_ltm_{kind}_teval.png" in text


def test_residual_rows_are_matched_to_their_own_fit(artifacts):
    root, _ = artifacts
    fit = json.loads((root / "results" / "scaling" / "fit.json").read_text())
    accs = accepted_laws(fit, read_residuals(root / "results" / "scaling" / "residuals.csv"))
    assert accs
    for a in accs:
        fitted = [r for r in a.rows if r["role"] == "in_fit"]
        assert len(fitted) == a.entry["n_points"]
        assert {r["run"] for r in fitted} == {a.entry["subset"]["run"]}
    a = accs[0]  # stored bootstrap replicates (when present) give a band around the point estimate
    rng = np.random.default_rng(1)
    theta = a.theta()
    a.entry["bootstrap"] = {"theta_samples": (theta + rng.normal(0, 0.01, (50, theta.size))).tolist()}
    from ltm.report.laws import cols_of
    cols = cols_of(a.rows)
    lo, hi = a.band(cols)
    pred = a.predict(cols)
    assert np.all(lo <= pred * 1.001) and np.all(hi >= pred * 0.999) and np.all(hi > lo)


def test_loss_of_a_bound_is_its_whole_nelbo(artifacts):
    from ltm.report.figures import nats

    root, _ = artifacts
    val = json.loads((root / "results" / "eval" / "ltm-tiny" / "metrics.json").read_text())["splits"]["val"]
    assert nats(val["fresh_elbo"]) == val["fresh_elbo"]["nelbo"] != val["fresh_elbo"]["nll"]
    assert nats(val["iwae"]) == val["iwae"]["nelbo"]
    ar = json.loads((root / "results" / "eval" / "ar-tiny" / "metrics.json").read_text())["splits"]["val"]
    assert nats(ar["exact"]) == ar["exact"]["nll"]


def test_headline_metrics_are_few_numbers_per_named_run(built):
    """reports/metrics.json (dvc metrics / dvc exp show): numbers only, the tightest honest bpb per split
    (IWAE for an LTM, exact for AR, never the paper protocol) and what the latents carry."""
    root, params, _ = built
    metrics = json.loads((root / "report" / "metrics.json").read_text())
    assert sorted(metrics) == sorted(params["runs"])
    leaves = [v for run in metrics.values() for v in run.values()]
    assert leaves and all(isinstance(v, float) for v in leaves)
    assert len(leaves) <= 8 * len(metrics)
    for name, numbers in metrics.items():
        splits = json.loads((root / "results" / "eval" / name / "metrics.json").read_text())["splits"]
        key = "iwae" if "ltm" in name else "exact"
        assert numbers["val_bpb"] == pytest.approx(splits["val"][key]["bpb"], abs=1e-4)
        assert ("val_info_nats" in numbers) == ("latent_usage" in splits["val"])


def test_matched_comparisons_state_the_ratios_and_never_extrapolate(built):
    """Each LTM against AR at the same token budget (with the params and FLOP ratios) and at the same
    compute (AR interpolated in log FLOPs, only inside the AR runs' range)."""
    from ltm.report.matched import ar_at_flops

    root, params, text = built
    rows = {r["LTM run"]: r for r in table_after(text, "## 2c. Matched comparisons")}
    assert set(rows) == {n for n in all_runs(params) if n.startswith("ltm")}
    metrics = {n: json.loads((root / "runs" / n / "metrics.json").read_text()) for n in all_runs(params)}
    val = {n: json.loads((root / "results" / "eval" / n / "metrics.json").read_text())["splits"]["val"]
           for n in all_runs(params)}
    row = rows["ltm-tiny"]  # 40k tokens: its AR twin is ar-tiny
    assert row["same data: AR run"] == "ar-tiny"
    assert close(row["params LTM/AR"].rstrip("x"), metrics["ltm-tiny"]["params"] / metrics["ar-tiny"]["params"])
    assert close(row["FLOPs LTM/AR"].rstrip("x"), metrics["ltm-tiny"]["train_flops"] / metrics["ar-tiny"]["train_flops"])
    gap = val["ar-tiny"]["exact"]["nll"] - val["ltm-tiny"]["iwae"]["nelbo"]
    assert float(row["AR - LTM"]) == pytest.approx(gap, abs=1e-4)
    # the LTM's compute is beyond every AR run: no number
    assert row["same compute: AR - LTM"] == "—" and "not extrapolated" in row["AR at that compute"]

    class Run:
        def __init__(self, name, flops, nll):
            self.name, self.family, self.train = name, "ar", {"train_flops": flops}
            self.nll = nll

        def split(self, _):
            return {"exact": {"nll": self.nll}}

    ar = [Run("a", 1e10, 5.0), Run("b", 1e12, 3.0)]
    assert ar_at_flops(ar, 1e11, "val")[0] == pytest.approx(4.0)  # halfway in log FLOPs
    assert ar_at_flops(ar, 1e13, "val")[0] is None


def test_figures_are_valid_pngs_and_lineage_is_listed(built):
    root, _, text = built
    figs = sorted((root / "report" / "figures").glob("*.png"))
    names = {f.name for f in figs}
    assert {"ppl_vs_teval.png", "loss_vs_flops.png", "train_curves.png"} <= names
    for f in figs:
        assert f.read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(f)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert f"figures/{f.name}" in text
    lineage = text[text.index("## 6. Lineage"):]
    assert "evalhash00000001" in lineage and "fithash000000001" in lineage and "feedc0ffee" in lineage
    # the git commit of a record never enters the report: the same inputs give the same bytes at any commit
    assert "0123456789" not in text
    feeds = json.loads((root / "report" / "inputs.json").read_text())
    assert "0123456789" not in json.dumps(feeds)
    assert any(f["item"] == "figure: figures/ppl_vs_teval.png" for f in feeds)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_input_raises_and_keeps_the_previous_report(artifacts, tmp_path, monkeypatch):
    src, params = artifacts
    root = tmp_path / "copy"
    shutil.copytree(src / "runs", root / "runs")
    shutil.copytree(src / "results", root / "results")
    out = tmp_path / "out" / "report"
    build(root, params, out)
    before = _snapshot(out)
    run = next(iter(all_runs(params)))

    (root / "results" / "eval" / run / "metrics.json").unlink()
    with pytest.raises(LtmError) as err:
        build(root, params, out)
    assert "\n" not in str(err.value) and "metrics.json" in str(err.value)
    assert _snapshot(out) == before

    shutil.copy(src / "results" / "eval" / run / "metrics.json", root / "results" / "eval" / run / "metrics.json")
    (root / "runs" / run / "metrics.json").write_text("{not json")
    with pytest.raises(LtmError, match="unreadable"):
        build(root, params, out)
    assert _snapshot(out) == before

    shutil.copy(src / "runs" / run / "metrics.json", root / "runs" / run / "metrics.json")
    (root / "results" / "scaling" / "fit.json").unlink()
    with pytest.raises(LtmError, match="fit.json"):
        build(root, params, out)

    shutil.copy(src / "results" / "scaling" / "fit.json", root / "results" / "scaling" / "fit.json")
    import ltm.report as report

    def broken(*a, **k):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "make_all", broken)  # a failure half-way leaves no partial folder behind
    with pytest.raises(RuntimeError):
        build(root, params, out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["report"]


def test_a_grid_with_no_accepted_law_says_so(artifacts, tmp_path):
    src, params = artifacts
    root = tmp_path / "copy"
    shutil.copytree(src / "runs", root / "runs")
    shutil.copytree(src / "results", root / "results")
    fit_path = root / "results" / "scaling" / "fit.json"
    fit = json.loads(fit_path.read_text())
    for g in fit["groups"]:
        for e in g["laws"]:
            if e["status"] == "accepted":
                e.update(status="refused", reason=f"{e['law']}: refused for this test")
    fit_path.write_text(json.dumps(fit))
    text = build(root, params, tmp_path / "rep").read_text()
    assert "**No scaling law passed the checks on this grid.**" in text
    assert "### Accepted laws" not in text
    assert "L_inf =" not in text and "gamma =" not in text  # their old values stay unprinted
    assert not list((tmp_path / "rep" / "figures").glob("law_*.png"))


def test_another_family_gets_its_bound_column_and_fewshot_results_are_tabulated(artifacts, tmp_path):
    src, params = artifacts
    root = tmp_path / "copy"
    shutil.copytree(src / "runs", root / "runs")
    shutil.copytree(src / "results", root / "results")
    params = copy.deepcopy(params)
    params["models"]["mdlm-tiny"] = {"family": "diffusion", "d_model": 32, "n_layers": 2, "n_heads": 2,
                                     "n_latents": 0, "window": 64}
    params["runs"]["mdlm-x"] = {"model": "mdlm-tiny", "tokens": 40000}
    write_json(root / "runs" / "mdlm-x" / "metrics.json",
               {"run": "mdlm-x", "family": "diffusion", "params": 43200, "tokens": 40000, "n_latents": 0,
                "inner_steps": 0, "train_flops": 1.5e10, "val_loss": 7.25, "val_loss_kind": "diffusion_nelbo"})
    block = {"nelbo": 6.5, "ppl": math.exp(6.5), "bpb": 4.321}
    split = {"protocol": {"samples": 8, "sequences": 128, "block_length": 32, "tokens": 4096}, "nelbo_bound": block}
    write_json(root / "results" / "eval" / "mdlm-x" / "metrics.json",
               {"run": "mdlm-x", "family": "diffusion", "splits": {"val": split, "heldout-lee": split}})
    fewshot = tmp_path / "fewshot"
    write_json(fewshot / "ltm-tiny" / "metrics.json",
               {"results": [{"family": "ltm", "k": 2, "n": 5, "problems": 40, "solved": 7, "pass_at_n": 0.175}]})
    text = build(root, params, tmp_path / "rep", fewshot_dir=fewshot).read_text()
    shots = table_after(text, "### Few-shot reasoning")
    assert shots[0]["run"] == "ltm-tiny" and shots[0]["pass@n"] == "0.175" and shots[0]["k (shots)"] == "2"
    assert "**Not run**" not in text
    row = {r["run"]: r for r in table_after(text, "## 1. Runs")}["mdlm-x"]
    assert close(row["nelbo_bound PPL (≤)"], block["ppl"]) and close(row["bpb"], 4.321)
    assert row["exact PPL"] == "—" and row["eval protocol"].startswith("bound (samples=8)")
    assert "5 LTM, 2 AR, 1 diffusion" in text


def test_stage_entry_point_writes_the_report_and_its_lineage(artifacts, tmp_path, monkeypatch):
    import ltm.config
    from ltm.stages.report import report

    root, params = artifacts
    import ltm.stage_run
    runtime = ltm.config.load_params(ltm.config.REPO_ROOT / "params.yaml", env={})["runtime"]
    monkeypatch.setattr(ltm.stage_run, "load_params", lambda path: {"runtime": runtime, **copy.deepcopy(params)})
    out = tmp_path / "report"
    path = report("params.yaml", str(root / "runs"), str(root / "results" / "eval"),
                  str(root / "results" / "scaling"), str(out))
    assert path == out / "report.md" and path.is_file()
    rec = json.loads((out / "lineage.json").read_text())
    assert rec["stage"] == "report" and {"eval", "scaling", "train_metrics:ltm-tiny"} <= set(rec["inputs"])
