"""Evaluate a checkpoint on a split: the paper's protocol next to honest bounds, token-weighted.

Rows of the split are scored in stored order, `batch_size` at a time, up to `max_rows`. Batch j gets
seed derive_seed(seed, j): the same checkpoint, data and eval params give identical numbers, and
every T_eval of a curve starts from the same initialisation and noise (paired comparisons).

Reported numbers (N = scored target tokens, n = sequences, Bytes = their text bytes, see eval_bytes):
  per-token values are sum over sequences of a per-sequence total / N, in nats;
  ppl = exp(per-token value);  bpb = sum of totals / (ln 2 * Bytes).
The paper's own aggregate, mean_i exp(NELBO_i / len_i), is reported as paper.ppl_mean_of_sequences.
"""

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from ltm.bounds import (
    BatchScores,
    ar_nll,
    bits_per_byte,
    paper_perplexity,
    score_stops,
    scored_tokens,
)
from ltm.config import FromParams
from ltm.data.loader import TokenShards, iter_eval_batches
from ltm.errors import LtmError
from ltm.eval_bytes import bytes_per_token, target_bytes
from ltm.fast_loop import PosteriorConfig, floor_note
from ltm.flops import eval_flops_per_token, flop_shape
from ltm.latent_usage import (
    UsageTotals,
    alternative_nll,
    likelihood_free_kl,
)
from ltm.model import Decoder
from ltm.progress import progress
from ltm.seeds import derive_seed

PAPER_NOTE = ("paper protocol: q fitted on the scored sequences, NELBO with the optimisation noise; "
              "optimistically biased, not a bound")


LR_SCHEDULES = {
    "respan": "fast lr cosine from lr_max to lr_min re-spanned over the T_eval steps",
    "continue": "the training fast-lr cosine (over inner_steps steps) continued: lr_min after step inner_steps",
}


def eval_posterior(post_cfg: PosteriorConfig, steps: int, lr_schedule: str) -> PosteriorConfig:
    """The fast-loop settings used at T_eval = steps: the training ones, with the lr cosine either
    re-spanned over T_eval or kept at the training T (and held at lr_min beyond it)."""
    span = post_cfg.steps if lr_schedule == "continue" and post_cfg.steps > 0 else None
    return replace(post_cfg, steps=steps, schedule_steps=span, decoder_grads=False)


@dataclass(frozen=True)
class EvalConfig(FromParams):
    """The `eval:` params section (validated there)."""
    splits: tuple[str, ...]
    max_rows: int  # rows (sequences) scored per split; 0 = all
    batch_size: int
    t_eval: int | None  # T_eval; None = the training T (posterior.inner_steps)
    samples: int  # K fresh draws for the fresh ELBO and the IWAE bound
    diffusion_samples: int  # Monte-Carlo draws of a diffusion model's NELBO bound
    seed: int
    t_curve: tuple[int, ...]
    t_curve_max_rows: int  # rows for each point of the T_eval curve; 0 = max_rows
    lr_schedule: str  # fast lr at T_eval: respan (cosine over T_eval) | continue (training cosine, then lr_min)


class _Totals(defaultdict):
    """Float64 running sums over batches; a key never added reads 0."""

    def __init__(self) -> None:
        super().__init__(float)

    def add(self, key: str, value: torch.Tensor | float) -> None:
        self[key] += float(value.sum()) if isinstance(value, torch.Tensor) else float(value)


def _per_token(total: float, tokens: float, n_bytes: float) -> dict[str, float]:
    per = total / tokens
    return {"nelbo": per, "ppl": math.exp(per), "bpb": bits_per_byte(total, n_bytes)}


def scoring_flops_per_token(model: Decoder, steps: int, samples: int, usage: bool) -> float:
    """What scoring one token costs (the training formula's conventions): for an LTM, T_eval fast-loop
    steps and the fit's final forward, K forward passes for the fresh draws and, with the latent-usage
    diagnostics, two more; for AR one forward pass."""
    shape = flop_shape(model.cfg)
    forward = eval_flops_per_token(*shape)
    return eval_flops_per_token(*shape, steps) + (samples + (2 if usage else 0)) * forward


class ScoreCache:
    """Batch scores already computed in this process, kept only where the T_eval curve can use them (the
    split it is drawn on, its first rows, its T values): a curve point whose batches the main scoring
    already fitted with the same rows, seed, T_eval, fast-loop settings and K reuses them. Also counts
    the work the scorings that share it really did (`flops`, training-formula conventions, per scored
    token of each batch) and the reused batch scores (`hits`)."""

    def __init__(self, ecfg: EvalConfig, split: str = "val") -> None:
        self.split, self.rows, self.t_values = split, ecfg.t_curve_max_rows or ecfg.max_rows, set(ecfg.t_curve)
        self.scores: dict[tuple, BatchScores] = {}
        self.hits = 0
        self.flops = 0.0

    def key(self, shards: TokenShards, ecfg: EvalConfig, j: int, n: int, fit_cfg: PosteriorConfig) -> tuple | None:
        first = j * ecfg.batch_size
        wanted = shards.split == self.split and fit_cfg.steps in self.t_values and (not self.rows or first < self.rows)
        return (str(shards.shards_dir.resolve()), shards.split, ecfg.batch_size, j, n, fit_cfg, ecfg.samples,
                ecfg.seed) if wanted else None


def _batch_scores(model: Decoder, x: torch.Tensor, y: torch.Tensor, seed: int, fit_cfgs: dict[int, PosteriorConfig],
                  one_fit: bool, ecfg: EvalConfig, rows_per_pass: int | None,
                  cached: dict[int, tuple | None], cache: ScoreCache | None) -> dict[int, BatchScores]:
    """BatchScores at every T_eval of fit_cfgs: from the cache, then from one fit through the largest T
    (`one_fit`) or one fit per T."""
    got = {t: cache.scores[k] for t, k in cached.items() if cache is not None and k in cache.scores}
    todo = sorted(set(fit_cfgs) - set(got))
    if cache is not None and todo:  # one fit through the largest T whose other stops add their scoring, or one per T
        cost = partial(scoring_flops_per_token, model, samples=ecfg.samples, usage=False)
        per_token = (cost(todo[-1]) + (len(todo) - 1) * cost(0)) if one_fit else sum(cost(t) for t in todo)
        cache.flops += float(scored_tokens(y).sum()) * per_token
    for stops in [tuple(todo)] if one_fit and todo else [(t,) for t in todo]:
        got.update(score_stops(model, x, y, stops=stops, samples=ecfg.samples, seed=seed,
                               post_cfg=fit_cfgs[stops[-1]], rows_per_pass=rows_per_pass))
    if cache is not None:
        cache.hits += len(fit_cfgs) - len(todo)
        cache.scores.update({k: got[t] for t, k in cached.items() if k is not None})
    return got


class _Point:
    """Float64 running sums of one T_eval over the batches of a split."""

    def __init__(self) -> None:
        self.totals, self.usage = _Totals(), UsageTotals()

    def add(self, s: BatchScores, samples: int) -> None:
        for name, est in (("paper", s.paper), ("fresh", s.fresh)):
            self.totals.add(f"{name}.total", est.total)
            self.totals.add(f"{name}.nll", est.nll)
            self.totals.add(f"{name}.kl", est.kl)
        self.totals.add("iwae.total", s.iwae.total)
        self.totals.add("paper.ppl_seq", paper_perplexity(s.paper.total, s.tokens))
        if s.fresh.nll_var is not None:
            self.totals.add("fresh.var", s.fresh.nll_var / samples)


def evaluate_split(model: Decoder, shards: TokenShards, ecfg: EvalConfig, *,
                   post_cfg: PosteriorConfig | None = None, token_bytes: np.ndarray | None = None,
                   rows_per_pass: int | None = None, usage: bool = True,
                   per_sequence: bool = False, desc: str | None = None,
                   cache: ScoreCache | None = None) -> dict[str, Any]:
    """Score `shards` (one split) with `model`; returns one JSON-ready record.

    ecfg: the `eval:` section. post_cfg: the training fast-loop settings (T_eval defaults to its steps).
    token_bytes: per-id byte lengths (eval_bytes.token_byte_lengths) for exact bits per byte; without
    it the manifest's bytes-per-token ratio is used. rows_per_pass: decoder rows per pass when scoring
    the K draws (memory only; the numbers do not depend on it). usage: add the latent-usage diagnostics
    (ltm.latent_usage; two more decoder passes per batch). per_sequence: add `per_sequence`, the
    headline bound (exact NLL, IWAE) and the scored tokens of every row, for paired comparisons of
    two models on the same rows (the rows and their order depend only on the shards and cfg).
    desc: show progress per batch under this label (`ltm.progress`). cache: keep (and reuse) batch
    scores the T_eval curve can share.
    """
    is_ltm = model.cfg.n_latents > 0
    if is_ltm and post_cfg is None:  # never a silent default fast loop: T and the lrs change every bound
        raise LtmError("scoring an LTM needs the fast-loop settings it was trained with (post_cfg); none given")
    steps = (post_cfg.steps if ecfg.t_eval is None else ecfg.t_eval) if is_ltm else 0
    return _score_points(model, shards, ecfg, [steps], post_cfg=post_cfg, token_bytes=token_bytes,
                         rows_per_pass=rows_per_pass, usage=usage, per_sequence=per_sequence, desc=desc,
                         cache=cache)[0]


def _score_points(model: Decoder, shards: TokenShards, ecfg: EvalConfig, t_list: list[int], *,
                  post_cfg: PosteriorConfig | None, token_bytes: np.ndarray | None, rows_per_pass: int | None,
                  usage: bool, per_sequence: bool, desc: str | None, cache: ScoreCache | None) -> list[dict[str, Any]]:
    """One pass over the split's rows scoring every T_eval in t_list; one record per entry of t_list."""
    is_ltm = model.cfg.n_latents > 0
    if shards.seq_len > model.cfg.seq_len:
        raise LtmError(f"split {shards.split!r} has blocks of {shards.seq_len} tokens, the model at most "
                       f"{model.cfg.seq_len}")
    device = next(model.parameters()).device
    ratio = None if token_bytes is not None else bytes_per_token(shards.manifest, shards.split)

    fit_cfgs = {t: eval_posterior(post_cfg, t, ecfg.lr_schedule) for t in t_list} if is_ltm else {}
    # the lr at step k not depending on T_eval (a fixed cosine span, schedule `continue`): one fit through the
    # largest T serves all; under `respan` the span is each fit's own T
    one_fit = (len(fit_cfgs) > 1 and all(c.schedule_steps is not None for c in fit_cfgs.values())
               and len({replace(c, steps=0) for c in fit_cfgs.values()}) == 1)
    points = {t: _Point() for t in fit_cfgs}
    shared = _Totals()  # tokens, bytes and the AR baseline's exact NLL
    rows: dict[str, list[float]] = {"nats": [], "tokens": []}
    max_rows = ecfg.max_rows or None
    n_rows = len(shards) if max_rows is None else min(max_rows, len(shards))
    batches = progress(iter_eval_batches(shards, ecfg.batch_size, max_rows), disable=desc is None, desc=desc,
                       total=-(-n_rows // ecfg.batch_size), unit="batch")
    for j, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        tokens = scored_tokens(y)
        shared.add("tokens", tokens)
        shared.add("bytes", target_bytes(y, token_bytes) if token_bytes is not None else float(tokens.sum()) * ratio)
        rows["tokens"] += tokens.tolist()
        if not is_ltm:
            nll = ar_nll(model, x, y)
            shared.add("exact", nll)
            rows["nats"] += nll.tolist()
            continue
        cached = {t: None if cache is None else cache.key(shards, ecfg, j, len(y), c) for t, c in fit_cfgs.items()}
        scores = _batch_scores(model, x, y, derive_seed(ecfg.seed, j), fit_cfgs, one_fit, ecfg, rows_per_pass,
                               cached, cache)
        for t, point in points.items():
            s = scores[t]
            if usage:
                if cache is not None:  # the diagnostics' two more decoder passes
                    cache.flops += float(tokens.sum()) * (scoring_flops_per_token(model, 0, 0, usage=True)
                                                          - scoring_flops_per_token(model, 0, 0, usage=False))
                alt = alternative_nll(model, x, y, s.posterior, seed=derive_seed(ecfg.seed, j, 2))
                point.usage.add(s.tokens, s.fresh.nll, alt, s.posterior)
            point.add(s, ecfg.samples)
        rows["nats"] += scores[t_list[0]].iwae.total.tolist()
    if not rows["tokens"]:
        raise LtmError(f"split {shards.split!r} has no rows to evaluate")
    return [_record(model, shards, ecfg, t, points.get(t), shared, len(rows["tokens"]), post_cfg=post_cfg,
                    token_bytes=token_bytes, usage=usage, rows=rows if per_sequence else None) for t in t_list]


def _record(model: Decoder, shards: TokenShards, ecfg: EvalConfig, steps: int, point: _Point | None, shared: _Totals,
            n_seq: int, *, post_cfg: PosteriorConfig | None, token_bytes: np.ndarray | None, usage: bool,
            rows: dict[str, list[float]] | None) -> dict[str, Any]:
    """The JSON-ready record of one T_eval (point None: a model without latents)."""
    is_ltm = point is not None
    N, n_bytes = shared["tokens"], shared["bytes"]
    record: dict[str, Any] = {
        "split": shards.split,
        "family": "ltm" if is_ltm else "ar",
        "protocol": {
            "T_eval": steps,
            "K": ecfg.samples if is_ltm else None,
            "seed": ecfg.seed,
            "batch_size": ecfg.batch_size,
            "block_length": shards.seq_len,
            "max_rows": ecfg.max_rows,
            "sequences": n_seq,
            "tokens": int(N),
            "bytes": n_bytes,
            "bytes_method": "tokenizer" if token_bytes is not None else "manifest_ratio",
            "posterior": {k: v for k, v in asdict(post_cfg).items()
                          if k not in ("steps", "decoder_grads", "schedule_steps")} if is_ltm else None,
            "lr_schedule": f"{ecfg.lr_schedule}: {LR_SCHEDULES[ecfg.lr_schedule]}" if is_ltm else None,
            "inner_steps": post_cfg.steps if is_ltm else None,
            "flops_per_token": scoring_flops_per_token(model, steps, ecfg.samples if is_ltm else 0, usage and is_ltm),
        },
        "dataset": {
            "split_rows": len(shards),
            "heldout": bool(shards.info.get("heldout", False)),
            "corpus_sha256": shards.manifest.get("corpus_sha256", {}).get(shards.split),
            "tokenizer_sha256": shards.manifest.get("tokenizer_sha256"),
        },
    }
    truth = (shards.manifest.get("ground_truth") or {}).get("splits", {}).get(shards.split)
    if truth:  # synthetic corpus: what no model can beat, per byte of the split's text
        record["ground_truth"] = {"bpb": truth["bpb"], "bpb_stderr": truth["bpb_stderr"],
                                  "nats_per_token_equiv": truth["bpb"] * math.log(2) * n_bytes / N,
                                  "note": "exact entropy of the generating process over the whole split, per byte"}
    if rows is not None:
        record["per_sequence"] = {"bound": "iwae" if is_ltm else "exact", **rows}
    if not is_ltm:
        exact = _per_token(shared["exact"], N, n_bytes)
        record["exact"] = {"nll": exact["nelbo"], "ppl": exact["ppl"], "bpb": exact["bpb"]}
        return record
    totals = point.totals
    record["paper"] = {
        "nll": totals["paper.nll"] / N, "kl": totals["paper.kl"] / N, **_per_token(totals["paper.total"], N, n_bytes),
        "ppl_mean_of_sequences": totals["paper.ppl_seq"] / n_seq,
        "note": PAPER_NOTE,
    }
    record["fresh_elbo"] = {
        "nll": totals["fresh.nll"] / N, "kl": totals["fresh.kl"] / N, **_per_token(totals["fresh.total"], N, n_bytes),
        "nelbo_stderr": math.sqrt(totals["fresh.var"]) / N if ecfg.samples > 1 else None,
    }
    record["iwae"] = _per_token(totals["iwae.total"], N, n_bytes)
    if usage:
        dims_per_token = latent_dims_per_token(model, n_seq, N)
        record["latent_usage"] = {**point.usage.summary(),
                                  **floor_note(eval_posterior(post_cfg, steps, ecfg.lr_schedule), steps, dims_per_token),
                                  "dims_per_token": dims_per_token}
    return record


def latent_dims_per_token(model: Decoder, sequences: float, tokens: float) -> float:
    """Latent dimensions (N_z x d per sequence) per scored token: converts per-dimension KL to per-token."""
    return model.cfg.n_latents * model.cfg.d_model * sequences / tokens


def curve_row(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a T_eval curve (nats per token unless named ppl/bpb), for `dvc plots`."""
    row = {"T_eval": record["protocol"]["T_eval"]}
    for name in ("paper", "fresh_elbo", "iwae"):
        for key in ("nelbo", "ppl", "bpb", "nll", "kl"):
            if key in record[name]:
                row[f"{name}_{key}"] = record[name][key]
    row["paper_ppl_mean_of_sequences"] = record["paper"]["ppl_mean_of_sequences"]
    return row


def t_eval_curve(model: Decoder, shards: TokenShards, t_list: list[int] | None, ecfg: EvalConfig, *,
                 post_cfg: PosteriorConfig | None = None, token_bytes: np.ndarray | None = None,
                 rows_per_pass: int | None = None, desc: str | None = None,
                 cache: ScoreCache | None = None) -> list[dict[str, Any]]:
    """Bounds vs T_eval: one row per T in t_list (default cfg.t_curve), on t_curve_max_rows rows.

    Rows share seeds, so differences between T values are not sampling noise of the initialisation.
    With lr_schedule `continue` the fast lr at step k does not depend on T_eval, so one fit through the
    largest T is scored at every T of the curve (the same numbers as one fit per T, for the cost of the
    largest alone); with `respan` each T has its own lr cosine and its own fit. Points the main scoring
    already computed come from `cache`. Nothing guarantees monotonicity in T (AdamW is not a descent
    method; under respan the lr schedule depends on T), which is why the curve is worth plotting.
    """
    if model.cfg.n_latents == 0:
        raise LtmError("a T_eval curve needs a model with latents; the AR baseline has no inference steps")
    t_list = list(ecfg.t_curve if t_list is None else t_list)
    if not t_list:
        raise LtmError("the T_eval curve needs at least one T value")
    if post_cfg is None:
        raise LtmError("scoring an LTM needs the fast-loop settings it was trained with (post_cfg); none given")
    point = replace(ecfg, max_rows=ecfg.t_curve_max_rows or ecfg.max_rows)
    records = _score_points(model, shards, point, t_list, post_cfg=post_cfg, token_bytes=token_bytes,
                            rows_per_pass=rows_per_pass, usage=False, per_sequence=False, desc=desc, cache=cache)
    rows = []
    for t, record in zip(t_list, records):
        # what a fit whose likelihood gradient is zero would leave, on the same scale (nats per token)
        free = likelihood_free_kl(eval_posterior(post_cfg, t, point.lr_schedule), t, seed=point.seed)["kl_per_dim"]
        dims_per_token = latent_dims_per_token(model, record["protocol"]["sequences"], record["protocol"]["tokens"])
        rows.append({**curve_row(record), "kl_likelihood_free": free * dims_per_token})
    return rows
