"""Split evaluation: token-weighted aggregation, protocol records, determinism, bytes, T_eval curves."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltm.bounds import score_batch
from ltm.data.loader import TokenShards, iter_eval_batches
from ltm.data.tokenizer import load_tokenizer
from ltm.errors import LtmError
from ltm.eval_bytes import bytes_per_token, load_token_byte_lengths, token_byte_lengths
from ltm.evaluate import ScoreCache, evaluate_split, t_eval_curve
from ltm.model import Decoder, ModelConfig
from ltm.seeds import derive_seed

from settings import eval_settings, fast_loop

CFG = eval_settings(max_rows=10, batch_size=4, t_eval=2, samples=3, seed=5)
POST = fast_loop(steps=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def val(tiny_data) -> TokenShards:
    return TokenShards(tiny_data / "data" / "shards", "val")


@pytest.fixture(scope="module")
def lengths(tiny_data) -> np.ndarray:
    return load_token_byte_lengths(tiny_data / "data" / "tokenizer")


def make_model(val: TokenShards, n_latents: int) -> Decoder:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=val.manifest["vocab_size"], seq_len=val.seq_len, d_model=32, n_layers=2,
                      n_heads=2, n_latents=n_latents, window=16)
    return Decoder(cfg)


def test_ltm_record_is_the_token_weighted_sum_of_batch_estimates(val, lengths):
    model = make_model(val, 4)
    rec = evaluate_split(model, val, CFG, post_cfg=POST, token_bytes=lengths)
    proto = rec["protocol"]
    assert rec["split"] == "val" and rec["family"] == "ltm"
    assert (proto["T_eval"], proto["K"], proto["seed"], proto["batch_size"]) == (2, 3, 5, 4)
    assert proto["block_length"] == val.seq_len == 32
    assert proto["sequences"] == 10 and proto["tokens"] == 10 * 32
    assert proto["bytes_method"] == "tokenizer" and proto["posterior"]["lr_max"] == POST.lr_max
    assert rec["dataset"]["corpus_sha256"] == val.manifest["corpus_sha256"]["val"]

    # recompute by hand: batch j of 4 rows (last one of 2) with seed derive_seed(5, j)
    sums = {"paper": 0.0, "fresh": 0.0, "iwae": 0.0, "kl": 0.0, "ppl_seq": 0.0, "bytes": 0}
    for j, (x, y) in enumerate(iter_eval_batches(val, 4, 10)):
        s = score_batch(model, x, y, steps=2, samples=3, seed=derive_seed(5, j), post_cfg=POST)
        sums["paper"] += s.paper.total.sum().item()
        sums["fresh"] += s.fresh.total.sum().item()
        sums["iwae"] += s.iwae.total.sum().item()
        sums["kl"] += s.fresh.kl.sum().item()
        sums["ppl_seq"] += torch.exp(s.paper.total / 32).sum().item()
        sums["bytes"] += int(lengths[y.numpy()].sum())
    n = 320
    assert proto["bytes"] == sums["bytes"]
    assert rec["paper"]["nelbo"] == pytest.approx(sums["paper"] / n, rel=1e-12)
    assert rec["paper"]["ppl_mean_of_sequences"] == pytest.approx(sums["ppl_seq"] / 10, rel=1e-12)
    assert rec["fresh_elbo"]["nelbo"] == pytest.approx(sums["fresh"] / n, rel=1e-12)
    assert rec["fresh_elbo"]["kl"] == pytest.approx(sums["kl"] / n, rel=1e-12)
    assert rec["fresh_elbo"]["nelbo"] == pytest.approx(rec["fresh_elbo"]["nll"] + rec["fresh_elbo"]["kl"])
    assert rec["iwae"]["nelbo"] == pytest.approx(sums["iwae"] / n, rel=1e-12)
    for name in ("paper", "fresh_elbo", "iwae"):
        part = rec[name]
        assert part["ppl"] == pytest.approx(math.exp(part["nelbo"]))
        assert part["bpb"] == pytest.approx(part["nelbo"] * n / (math.log(2) * sums["bytes"]))
    assert 0 < rec["fresh_elbo"]["nelbo_stderr"] < rec["fresh_elbo"]["nelbo"]


def test_same_params_give_identical_records_and_a_new_seed_changes_them(val):
    model = make_model(val, 4)
    first = evaluate_split(model, val, CFG, post_cfg=POST)
    assert evaluate_split(model, val, CFG, post_cfg=POST) == first
    assert evaluate_split(model, val, replace(CFG, seed=6), post_cfg=POST)["iwae"] != first["iwae"]
    default_t = evaluate_split(model, val, replace(CFG, t_eval=None), post_cfg=POST)
    assert default_t["protocol"]["T_eval"] == POST.steps  # T_eval defaults to the training T


def test_ar_record_is_the_exact_cross_entropy_and_independent_of_batching(val, lengths):
    model = make_model(val, 0)
    rec = evaluate_split(model, val, eval_settings(max_rows=10, batch_size=4), token_bytes=lengths)
    rows = torch.from_numpy(val.gather(np.arange(10)).astype(np.int64))
    with torch.no_grad():
        ce = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten()).item()
    assert rec["family"] == "ar" and rec["protocol"]["T_eval"] == 0 and rec["protocol"]["K"] is None
    assert set(rec) >= {"exact"} and "iwae" not in rec
    assert rec["exact"]["nll"] == pytest.approx(ce, rel=1e-6)
    assert rec["exact"]["ppl"] == pytest.approx(math.exp(ce), rel=1e-6)
    other = evaluate_split(model, val, eval_settings(max_rows=10, batch_size=3), token_bytes=lengths)
    assert other["exact"]["nll"] == pytest.approx(rec["exact"]["nll"], rel=1e-6)


def test_byte_counts_exact_from_the_tokenizer_and_approximate_from_the_manifest(tiny_data, val, lengths):
    tok, _ = load_tokenizer(tiny_data / "data" / "tokenizer")
    tok.encode_special_tokens = True  # as the shard builder encodes
    text = "Naïve café — 東京 <|endoftext|>\n\ttabs  and 123"
    assert lengths[tok.encode(text, add_special_tokens=False).ids].sum() == len(text.encode("utf-8"))
    assert lengths[val.manifest["bos_id"]] == lengths[val.manifest["eos_id"]] == 0
    assert np.array_equal(token_byte_lengths(tok), lengths)
    model = make_model(val, 0)
    cfg = eval_settings(max_rows=400, batch_size=200)
    exact = evaluate_split(model, val, cfg, token_bytes=lengths)
    approx = evaluate_split(model, val, cfg)
    assert approx["protocol"]["bytes_method"] == "manifest_ratio"
    ratio = bytes_per_token(val.manifest, "val")
    assert approx["protocol"]["bytes"] == pytest.approx(exact["protocol"]["tokens"] * ratio)
    assert approx["protocol"]["bytes"] == pytest.approx(exact["protocol"]["bytes"], rel=0.1)  # 400 rows: close


def test_t_eval_curve_rows_are_paired_points_of_evaluate_split(val):
    model = make_model(val, 4)
    cfg = replace(CFG, t_curve=(0, 1, 4), t_curve_max_rows=6)
    rows = t_eval_curve(model, val, None, cfg, post_cfg=POST)
    assert [r["T_eval"] for r in rows] == [0, 1, 4]
    point = evaluate_split(model, val, replace(CFG, t_eval=4, max_rows=6), post_cfg=POST)
    assert rows[2]["iwae_nelbo"] == point["iwae"]["nelbo"] and rows[2]["paper_kl"] == point["paper"]["kl"]
    assert set(rows[0]) >= {"paper_nelbo", "paper_ppl_mean_of_sequences", "fresh_elbo_nelbo", "fresh_elbo_bpb",
                            "iwae_nelbo", "iwae_ppl", "iwae_bpb"}
    assert rows[2]["fresh_elbo_nelbo"] < rows[0]["fresh_elbo_nelbo"]  # expected here, not guaranteed
    assert [r["T_eval"] for r in t_eval_curve(model, val, [2], cfg, post_cfg=POST)] == [2]


def test_a_continued_curve_is_one_fit_with_the_numbers_of_a_fit_per_point(val):
    """lr_schedule continue: the curve scores one fit at each of its T; every row is bit for bit the
    row of that T scored alone. The main scoring's batches are reused where they coincide."""
    model = make_model(val, 4)
    cfg = replace(CFG, t_eval=None, t_curve=(0, 1, 3, 5), t_curve_max_rows=6, lr_schedule="continue")
    alone = [row for t in cfg.t_curve for row in t_eval_curve(model, val, [t], cfg, post_cfg=POST)]
    assert t_eval_curve(model, val, None, cfg, post_cfg=POST) == alone
    cache = ScoreCache(cfg)
    main = evaluate_split(model, val, replace(cfg, max_rows=10), post_cfg=POST, cache=cache)
    assert main == evaluate_split(model, val, replace(cfg, max_rows=10), post_cfg=POST)
    assert cache.flops == pytest.approx(main["protocol"]["flops_per_token"] * main["protocol"]["tokens"], rel=1e-12)
    main_flops = cache.flops
    assert len(cache.scores) == 2  # the batches of rows 0-3 and 4-7 at T = 3; the curve scores rows 0-5
    shared = t_eval_curve(model, val, None, cfg, post_cfg=POST, cache=cache)
    assert shared == alone and cache.hits == 1  # the first batch; the second has 2 rows in the curve, not 4
    continued = cache.flops - main_flops
    respan = replace(cfg, lr_schedule="respan")
    cache = ScoreCache(respan)
    evaluate_split(model, val, respan, post_cfg=POST, cache=cache)
    assert t_eval_curve(model, val, None, respan, post_cfg=POST, cache=cache) == \
        [row for t in cfg.t_curve for row in t_eval_curve(model, val, [t], respan, post_cfg=POST)]
    assert cache.hits == 1
    assert continued < cache.flops - main_flops  # 5 fit steps per batch instead of 0 + 1 + 3 + 5 (3 once reused)


# bad eval: settings are refused where params are validated (tests/test_config.py)


def test_bad_requests_raise_ltm_error(val):
    with pytest.raises(LtmError, match="no inference steps"):
        t_eval_curve(make_model(val, 0), val, [0, 1], CFG)
    torch.manual_seed(0)
    short = Decoder(ModelConfig(vocab_size=val.manifest["vocab_size"], seq_len=16, d_model=16, n_layers=1,
                                n_heads=2))
    with pytest.raises(LtmError, match="blocks of 32"):
        evaluate_split(short, val, CFG)


def test_evaluation_reports_progress_per_batch_when_given_a_label(val, capsys):
    """Under DVC or Snakemake stderr is no terminal: the evaluation still says how far it is."""
    model = make_model(val, 8)
    evaluate_split(model, val, eval_settings(max_rows=8, batch_size=4, samples=2), post_cfg=fast_loop(steps=1),
                   usage=False, desc="evaluate tiny val")
    err = capsys.readouterr().err
    assert "evaluate tiny val: 100%|2/2" in err and "batch" in err
    evaluate_split(model, val, eval_settings(max_rows=8, batch_size=4, samples=2), post_cfg=fast_loop(steps=1),
                   usage=False)
    assert capsys.readouterr().err == ""


def test_an_ltm_is_never_scored_with_a_silent_default_fast_loop(val):
    """Without the training fast-loop settings there is no T to score at: refused, not T = 16 by default."""
    with pytest.raises(LtmError, match="fast-loop settings"):
        evaluate_split(make_model(val, 8), val, eval_settings(max_rows=4, batch_size=4), usage=False)


def test_each_record_states_what_scoring_a_token_cost(val):
    """FLOPs per scored token in the protocol: AR one forward pass; an LTM T_eval steps, the fit's forward,
    K draws and two diagnostic passes, in the training formula's conventions."""
    from ltm.flops import eval_flops_per_token, flop_shape

    cfg = eval_settings(max_rows=4, batch_size=4, samples=3)
    ar, ltm = make_model(val, 0), make_model(val, 8)
    forward = eval_flops_per_token(*flop_shape(ar.cfg))
    assert evaluate_split(ar, val, cfg)["protocol"]["flops_per_token"] == forward
    rec = evaluate_split(ltm, val, cfg, post_cfg=fast_loop(steps=2))
    shape = flop_shape(ltm.cfg)
    expected = eval_flops_per_token(*shape, 2) + (3 + 2) * eval_flops_per_token(*shape)
    assert rec["protocol"]["flops_per_token"] == expected > 8 * forward
