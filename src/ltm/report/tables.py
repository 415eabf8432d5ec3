"""Markdown helpers and the run-level sections of the report: header, run table, T_eval and compute
figures, zero-/few-shot and generation.

Numbers are printed with 4 significant digits (`num`); counts as integers. Every LTM number carries its
protocol (T_eval, K); AR numbers are exact.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ltm.config import params_hash
from ltm.families import family
from ltm.report.figures import FigureInfo, other_bounds
from ltm.report.inputs import Inputs
from ltm.report.metrics import tightest

PAPER_LABEL = "paper (OWT-trained, GPT-2 tokenizer; not comparable in scale)"
PAPER_PROTOCOL = ("posterior fitted on the scored sequence at the training T, NELBO with the optimisation noise, "
                  "mean over sequences of exp(NELBO/len); reported as upper bounds (<=) but optimistically "
                  "biased (Kong et al. 2025, section 5); 1024-token blocks")
ESTIMATORS = {"iwae": "IWAE", "fresh_elbo": "fresh ELBO", "exact": "exact"}


def num(x: Any) -> str:
    """4 significant digits; an em dash for a missing, boolean or non-finite value."""
    try:
        v = float(x)
    except (TypeError, ValueError):  # None, text
        return "—"
    if isinstance(x, bool) or not math.isfinite(v):
        return "—"
    if v.is_integer() and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.4g}"


def table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(out)


def protocol_text(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "—"
    p = rec.get("protocol", {})
    seqs = f"{num(p.get('sequences'))} seq x {num(p.get('block_length'))} tok"
    if any(k in rec for k in ("iwae", "fresh_elbo", "paper")):
        return f"T_eval={num(p.get('T_eval'))}, K={num(p.get('K'))}; {seqs}"
    if "exact" in rec:
        return f"exact; {seqs}"
    knobs = ", ".join(f"{k}={num(p[k])}" for k in ("K", "samples", "T_eval") if p.get(k) is not None)
    return f"bound{' (' + knobs + ')' if knobs else ''}; {seqs}"


def best_bpb(rec: dict[str, Any] | None) -> tuple[str, str]:
    """bits/byte of the tightest estimate (`metrics.tightest`) and its label."""
    key = tightest(rec)
    if key is None:
        return "—", "—"
    return num(rec[key].get("bpb")), ESTIMATORS.get(key, key)


def extra_keys(recs: list[dict[str, Any] | None]) -> list[str]:
    """Other bound estimators present in any of the records, in first-seen order."""
    return list(dict.fromkeys(k for rec in recs for k in other_bounds(rec)))


def _estimator_head(extra: list[str]) -> list[str]:
    return ["IWAE PPL (≤)", "fresh-ELBO PPL (≤)", *(f"{k} PPL (≤)" for k in extra), "exact PPL", "bpb", "bpb of"]


def _estimator_cells(rec: dict[str, Any] | None, extra: list[str]) -> list[str]:
    """The cells under `_estimator_head`: each estimator's PPL, then the tightest estimate's bits/byte."""
    ppl = [num(rec[k].get("ppl")) if rec and k in rec else "—" for k in ("iwae", "fresh_elbo", *extra, "exact")]
    return [*ppl, *best_bpb(rec)]


# ---------------------------------------------------------------- sections
def header(inp: Inputs) -> str:
    params, runs = inp.params, inp.runs
    counts = ", ".join(f"{n} {family(f).label}" for f, n in Counter(r.family for r in runs).items())
    data = params.get("data", {})
    corpus, tok, shards = data.get("corpus", {}), data.get("tokenizer", {}), data.get("shards", {})
    tok_text = (f"{tok.get('kind')} tokenizer" + (f", vocabulary {tok.get('vocab_size')}" if tok.get("kind") == "bpe"
                                                   else " (exact GPT-2 BPE + BOS)"))
    recs = [rec for r in runs for rec in (r.eval.get("splits") or {}).values()]
    tok_sha = sorted({str(rec.get("dataset", {}).get("tokenizer_sha256"))[:12] for rec in recs} - {"None"})
    h = params_hash({k: v for k, v in params.items() if k != "runtime"})
    ltm = [(r, r.split(inp.split)["protocol"]) for r in runs if family(r.family).has_latents and r.split(inp.split)]
    Ts = sorted({p.get("T_eval") for _, p in ltm} - {None})
    at_train = all(p.get("T_eval") == r.inner_steps for r, p in ltm)
    Ks = sorted({p.get("K") for _, p in ltm} - {None})
    t_list = ", ".join(map(str, Ts)) or "—"
    which_t = "the training T of each run" if at_train else "eval.t_eval, not the training T"
    return "\n".join([
        "# LTM pipeline: results report",
        "",
        f"**What was run.** {len(runs)} runs ({counts}) from params hash `{h}` (all of params.yaml except "
        f"`runtime`). Data: `{corpus.get('source')}` corpus"
        + (f" ({corpus.get('hf_path')})" if corpus.get("source") == "hf" else "")
        + f", {tok_text}, {shards.get('seq_len')}-token blocks; tokenizer sha256 "
        + (", ".join(f"`{s}…`" for s in tok_sha) or "not recorded") + f". Headline split: `{inp.split}`.",
        "",
        "**How to read LTM numbers.** An LTM has no exact likelihood: its per-sequence posterior q(z|x) is fitted "
        "by T_eval AdamW steps at evaluation, then the NLL is bounded from above. *IWAE* (K importance samples) "
        "is the tightest bound, the *fresh-noise ELBO* (K fresh draws) is looser; both are upper bounds on the "
        "NLL, so their perplexities are upper bounds (≤) on the true PPL. More samples K can only tighten IWAE "
        "in expectation; more steps T_eval usually tighten both, but nothing guarantees it. The *paper "
        "protocol* (the same noise the posterior was optimised against, mean of per-sequence PPLs) is "
        "optimistically biased and is **not** a bound: it is shown only for comparison with the paper. AR "
        f"numbers are exact NLL. Here the headline LTM numbers use T_eval = {t_list} ({which_t}) and "
        f"K = {', '.join(map(str, Ks)) or '—'}; every table states its protocol. "
        "Perplexities are per token of each run's tokenizer; bits per byte (bpb) are comparable across "
        "tokenizers. Lower is better.",
    ])


def run_table(inp: Inputs) -> str:
    extra = extra_keys([r.split(inp.split) for r in inp.runs])
    head = ["run", "family", "params", "tokens", "T", "N_z", "train FLOPs", "train val loss", "val loss kind",
            *_estimator_head(extra), "eval FLOPs/token", "eval stage FLOPs/token", "eval protocol"]
    rows = []
    for r in inp.runs:
        rec = r.split(inp.split)
        rows.append([r.name, family(r.family).label, num(r.train.get("params")), num(r.train.get("tokens")),
                     num(r.train.get("inner_steps", r.inner_steps)), num(r.train.get("n_latents")),
                     num(r.train.get("train_flops")), num(r.train.get("val_loss")),
                     str(r.train.get("val_loss_kind", "—")), *_estimator_cells(rec, extra),
                     num((rec or {}).get("protocol", {}).get("flops_per_token")),
                     num((r.eval.get("eval_cost") or {}).get("flops_per_scored_token")), protocol_text(rec)])
    kinds = sorted({str(r.train.get("val_loss_kind")) for r in inp.runs})
    notes = {"nelbo_optim_noise": "`nelbo_optim_noise`: the trainer's quick LTM validation loss (NELBO with the "
                                  "optimisation noise, like the paper protocol; not a bound)",
             "nll_exact": "`nll_exact`: exact NLL"}
    return "\n".join([
        f"## 1. Runs\n\nOne row per run. *train val loss* is the trainer's own validation number (nats/token, "
        f"kind in the next column); the PPL and bpb columns are the evaluation stage's `{inp.split}` split with "
        "the protocol in the last column. *eval FLOPs/token* is what scoring one token cost (same conventions as "
        "the training FLOPs): for an LTM the T_eval fast-loop steps, the fit's forward pass, K forward passes for "
        "the fresh draws and two for the latent diagnostics; for AR one forward pass; for diffusion one per "
        "Monte-Carlo draw. *eval stage FLOPs/token* is what the whole evaluation stage computed per token it "
        "scored on its splits, the T_eval curve included (`eval_cost` in its metrics.json: the curve's share, "
        "how its fits were shared).\n",
        table(head, rows), "",
        "Val loss kinds: " + "; ".join(notes.get(k, f"`{k}`") for k in kinds) + ".",
    ])


def figure_md(fig: FigureInfo) -> str:
    return f"![{fig.caption}]({fig.file})\n\n*{fig.file}: {fig.caption}.*"


PAPER_OWT = [["LTM-S (38M), N_z 24", "≈11.8", "≈7.0", "≈3.4", "≈2.8"],
             ["LTM-M (51M), N_z 24", "≈11.1", "≈7.4", "≈2.95", "≈2.5"]]


def teval_section(inp: Inputs, figs: dict[str, FigureInfo]) -> str:
    parts = ["## 2. Perplexity vs inference steps\n"]
    if "ppl_vs_teval" in figs:
        rows = {r.name: max((row.get("T_eval", 0) for row in r.curve), default=0) for r in inp.runs
                if r.curve and family(r.family).has_latents}
        lin = next((r.eval_lineage for r in inp.runs if r.eval_lineage), {})
        tcm = ((lin.get("params") or {}).get("eval") or {}).get("t_curve_max_rows")
        tcm = tcm if tcm is not None else (inp.params.get("eval") or {}).get("t_curve_max_rows")
        parts += [figure_md(figs["ppl_vs_teval"]), "",
                  f"Curve points use the first {num(tcm)} `val` sequences (eval.t_curve_max_rows; the run table "
                  f"uses more), the same seeds at every T_eval; largest T_eval per run: "
                  + ", ".join(f"{k} {num(v)}" for k, v in rows.items()) + "."]
    else:
        parts.append("No LTM run has a T_eval curve.")
    parts += ["", f"Reference, {PAPER_LABEL}: OWT validation PPL vs training T, read off the paper's figures "
                  "(≈; protocol: " + PAPER_PROTOCOL + "). Baselines: GPT-2-Large ≈11.5 (exact), "
                  "MD4-Medium ≈16.6, MDLM ≈23.3.", "",
              table(["model", "T=16", "T=32", "T=64", "T=128"], PAPER_OWT)]
    return "\n".join(parts)


def compute_section(figs: dict[str, FigureInfo]) -> str:
    parts = ["## 3. Loss vs training compute\n"]
    for key in ("loss_vs_flops", "train_curves"):
        if key in figs:
            parts += [figure_md(figs[key]), ""]
    if len(parts) == 1:
        parts.append("No run has both an evaluation and a training FLOPs count.")
    parts.append("Training FLOPs count the inner loop: (T + 1) x (6P + 6LdS) per token (flops_per_token_formula).")
    return "\n".join(parts)


# ---------------------------------------------------------------- zero-shot and few-shot
PAPER_ZERO_SHOT = [["GPT-2-Large (774M)", "161.33", "30.09", "45.61", "exact NLL"],
                   ["LTM-M (51M, T=16)", "≤32.06", "≤17.39", "≤25.16", "paper protocol"],
                   ["LTM-L (76M, T=64)", "≤4.43", "≤3.66", "≤3.92", "paper protocol"]]
PAPER_GSM8K = [["GPT-2-Large", "≈9.1", "≈10.2", "≈10.9"], ["LTM-S", "≈15.5", "≈22.1", "≈22.0"],
               ["LTM-L", "≈18.9", "≈24.6", "≈25.2"]]


def zero_shot_section(inp: Inputs) -> str:
    others = [(r, split, rec) for r in inp.runs for split, rec in (r.eval.get("splits") or {}).items()
              if split != inp.split]
    extra = extra_keys([rec for _, _, rec in others])
    head = ["run", "family", "split", "protocol", "tokens", *_estimator_head(extra), "paper-protocol PPL (biased)"]
    rows = [[r.name, family(r.family).label, split, protocol_text(rec), num(rec.get("protocol", {}).get("tokens")),
             *_estimator_cells(rec, extra), num(rec.get("paper", {}).get("ppl_mean_of_sequences"))]
            for r, split, rec in others]
    parts = ["## 5. Zero-shot and few-shot\n", "### Zero-shot (splits other than the headline split)\n"]
    if rows:
        parts += ["Scored with the same protocol as the run table; `heldout-lee` is the held-out news domain of "
                  "the builtin corpus (never seen in training or tokenizer fitting). The last column is the "
                  "paper's aggregate (mean over sequences of exp(NELBO/len), optimisation noise) for comparison "
                  "with the paper's numbers only.\n", table(head, rows)]
    else:
        parts.append("No split besides the headline split was evaluated (eval.splits).")
    parts += ["", f"Reference, {PAPER_LABEL}: zero-shot PPL on 1024-token blocks (MDLM/SEDD detokenisers, "
                  f"documents joined with EOS). LTM protocol: {PAPER_PROTOCOL}.\n",
              table(["model", "PTB", "WikiText-2", "LM1B", "protocol"], PAPER_ZERO_SHOT), ""]
    parts += fewshot_section(inp)
    parts += generation_section(inp)
    return "\n".join(parts)


def generation_section(inp: Inputs) -> list[str]:
    """Samples of each named run judged by the pipeline's AR baseline (results/generation/RUN)."""
    parts, rows = ["", "### Generation\n"], []
    for r in inp.runs:
        g = r.generation
        for mode, m in ((g or {}).get("modes") or {}).items():
            rows.append([r.name, family(r.family).label, mode, str(g.get("judge", "—")), num(m.get("gen_ppl")),
                         num(m.get("unigram_entropy")), num(m.get("mauve"))])
    if not rows:
        return parts + ["No generation results: no `results/generation/<RUN>/metrics.json` exists for any run."]
    proto = next(r.generation["protocol"] for r in inp.runs if r.generation)
    parts += [f"Generated tokens scored by the AR judge (perplexity; lower is more fluent to the judge, which is "
              f"itself a tiny model here) and their unigram entropy (nats). Unconditional: LTM z from the prior "
              f"(z temperature {proto.get('z_temperature')}); conditional: the first {proto.get('prompt_tokens')} "
              f"tokens of val rows as prompts, LTM z fitted on the prompt. {proto.get('samples')} samples of "
              f"{proto.get('max_new_tokens')} tokens, temperature {proto.get('temperature')}, top-p "
              f"{proto.get('top_p')}; diffusion: {proto.get('diffusion_steps')} ancestral steps. MAUVE only when "
              "the optional package is installed.\n",
              table(["run", "family", "mode", "judge", "judge PPL", "unigram entropy", "MAUVE"], rows)]
    return parts


def fewshot_records(obj: Any) -> list[dict[str, Any]]:
    """pass@n records (dicts with 'pass_at_n') anywhere in a few-shot metrics file."""
    if isinstance(obj, dict):
        if "pass_at_n" in obj:
            return [obj]
        return [r for v in obj.values() for r in fewshot_records(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in fewshot_records(v)]
    return []


def fewshot_section(inp: Inputs) -> list[str]:
    parts = ["### Few-shot reasoning\n"]
    rows = []
    for r in inp.runs:
        for rec in fewshot_records(r.fewshot):
            rows.append([r.name, family(r.family).label, num(rec.get("k")), num(rec.get("n")),
                         num(rec.get("problems")), num(rec.get("solved")), num(rec.get("pass_at_n")),
                         str(rec.get("source", rec.get("dataset", "—")))])
    if rows:
        parts += [f"From `{inp.fewshot_dir}/<RUN>/metrics.json`. LTM: z fitted on the prompt, n greedy decodes "
                  "with independent posterior fits; AR: n temperature samples; solved if any try's first number "
                  "equals the answer.\n",
                  table(["run", "family", "k (shots)", "n (tries)", "problems", "solved", "pass@n", "source"], rows)]
    else:
        parts.append(f"**Not run**: no `{inp.fewshot_dir}/<RUN>/metrics.json` exists for any run.")
    parts += ["", f"Reference, {PAPER_LABEL}: GSM8K pass@5 (%, ≈ read off the paper's figure; protocol: k "
                  "demonstrations 'Question: q Answer: a', z fitted on the prompt, greedy decoding with 5 "
                  "independent z draws, correct if the answer string appears in any).\n",
              table(["model", "0-shot", "5-shot", "10-shot"], PAPER_GSM8K)]
    return parts
