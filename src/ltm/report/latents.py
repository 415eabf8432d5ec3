"""Report sections on what the latents do: usage diagnostics, the KL floor, the ground truth and the
synthetic-corpus demonstration.

Reads only what the evaluate stage recorded (`latent_usage` per split, the T_eval curve with its
likelihood-free KL column) and computes the KL floor of the paper's settings (ltm.fast_loop).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ltm.families import family
from ltm.fast_loop import PosteriorConfig, kl_floor_per_dim
from ltm.report.figures import FigureInfo, _figure, _new, _teval_x
from ltm.report.inputs import Inputs, RunArtifacts
from ltm.report.tables import figure_md, num, table

# The paper's LTM-S / LTM-M validation PPL (read off its figures) at training T; N_z 24 vectors of
# d = 512 over 1024-token blocks: 12 latent dimensions per token.
PAPER_PPL = {16: (11.8, 11.1), 32: (7.0, 7.4), 64: (3.4, 2.95), 128: (2.8, 2.5)}
# The paper's fast loop (Kong et al. 2025: AdamW on (mu, log sigma^2), cosine 0.34 -> 0.034, log sigma^2
# from -5; the step count is set per use)
PAPER_FAST_LOOP = PosteriorConfig(steps=16, lr_max=0.34, lr_min=0.034, betas=(0.9, 0.999), weight_decay=0.01,
                                  adam_eps=1e-8, init_mu_std=0.01, init_logvar_mean=-5.0, init_logvar_std=0.1,
                                  decoder_grads=False, lr_logvar_scale=1.0)
PAPER_DIMS_PER_TOKEN = 24 * 512 / 1024


def _usage(run: RunArtifacts, split: str) -> dict[str, Any] | None:
    return (run.split(split) or {}).get("latent_usage")


def _ltm_with_usage(inp: Inputs) -> list[RunArtifacts]:
    return [r for r in inp.runs if family(r.family).has_latents and _usage(r, inp.split)]


def _pm(info: dict[str, Any] | None) -> str:
    """'nats/token ± standard error' of an information estimate."""
    return f"{num((info or {}).get('nats_per_token'))} ± {num((info or {}).get('stderr'))}"


def _info_text(usage: dict[str, Any]) -> str:
    return _pm(usage.get("information_vs_shuffled") or usage["information_vs_prior"])


def verdict_sentence(inp: Inputs) -> str:
    """The plain sentence at the top of the LTM section."""
    runs = _ltm_with_usage(inp)
    if not runs:
        return "No LTM evaluation has latent-usage diagnostics (re-run the evaluate stage)."
    empty = [r.name for r in runs if not _usage(r, inp.split)["latents_carry_information"]]
    if len(empty) == len(runs):
        return ("**In this run the latents carry no information**: for every LTM, the NLL with z from another "
                "sequence's posterior is the same as at its own (within two standard errors), so its bound is the "
                "decoder's NLL plus KL left over from the fast loop's initialisation; see the KL floor below.")
    if empty:
        carrying = [r for r in runs if r.name not in empty]
        shown = ", ".join(f"{r.name} ({_info_text(_usage(r, inp.split))})" for r in carrying)
        return (f"The latents carry information in {len(carrying)} of {len(runs)} LTM runs: {shown} nats/token "
                f"specific to the sequence; none measurable in {', '.join(empty)}.")
    return ("The latents carry information in every LTM run (NLL at the sequence's own z below the NLL at "
            "another sequence's z).")


def usage_table(inp: Inputs) -> str:
    rows = []
    for r in _ltm_with_usage(inp):
        u, p = _usage(r, inp.split), r.split(inp.split)["protocol"]
        rows.append([r.name, num(p["T_eval"]), num(u["nll_fit"]), num(u["nll_prior_z"]),
                     _pm(u.get("information_vs_shuffled")), _pm(u["information_vs_prior"]), num(u["kl_per_token"]),
                     num(u["kl_mean_part_per_dim"]), num(u["kl_variance_part_per_dim"]),
                     num(u["kl_floor_per_dim"]), f"{u['active_units']} / {u['latent_dims']}"])
    return table(["run", "T_eval", "NLL at z~q", "NLL at z~prior", "info vs shuffled", "info vs prior",
                  "KL/token", "KL mean part/dim", "KL var part/dim", "KL floor/dim", "active units"], rows)


def make_kl_vs_teval(inp: Inputs, out: Path) -> FigureInfo | None:
    named = set(inp.params.get("runs") or {})
    runs = [r for r in _ltm_with_usage(inp) if r.name in named and r.curve and "kl_likelihood_free" in r.curve[0]]
    if not runs:
        return None
    fig, axes = _new(1, len(runs), 4.8, 3.6)
    for ax, run in zip(axes.flat, runs):
        T = [row["T_eval"] for row in run.curve]
        ax.plot(T, [row["fresh_elbo_kl"] for row in run.curve], "-o", color=family("ltm").color, ms=4,
                label="KL of the fitted q")
        ax.plot(T, [row["kl_likelihood_free"] for row in run.curve], "--", color="black", lw=1.2,
                label="likelihood-free fast loop")
        ax.axvline(run.inner_steps, color="grey", ls=":", lw=1.0, label="training T")
        _teval_x(ax, T, run.inner_steps)
        ax.set_ylabel("KL (nats/token)")
        ax.set_title(run.name, fontsize=10)
        ax.grid(True, alpha=0.25)
    axes.flat[0].legend(fontsize=8)
    return _figure(fig, out, "kl_vs_teval", "kl_vs_teval.png",
                   "KL per token of the fitted posterior vs T_eval, next to what the same fast loop leaves when "
                   "the likelihood gradient is zero: where the two coincide, the latents encode nothing",
                   [r.name for r in runs])


def paper_kl_floors() -> list[tuple[int, float, float, float]]:
    """(T, paper LTM-S PPL, paper LTM-M PPL, KL floor in nats/token) at each training T of PAPER_PPL."""
    return [(T, s, m, kl_floor_per_dim(PAPER_FAST_LOOP, T) * PAPER_DIMS_PER_TOKEN) for T, (s, m) in PAPER_PPL.items()]


def kl_floor_table() -> str:
    rows = [[str(T), f"≈{s} / ≈{m}", num(floor), num(math.exp(floor)),
             "below the floor: cannot be a NELBO" if min(s, m) < math.exp(floor) else "consistent"]
            for T, s, m, floor in paper_kl_floors()]
    return table(["T", "paper PPL LTM-S / LTM-M", "KL floor (nats/token)", "smallest NELBO PPL", "reading"], rows)


def ground_truth_table(inp: Inputs) -> str | None:
    """Every run's bits per byte next to the exact entropy of a synthetic corpus (None for real text)."""
    rows = []
    for r in inp.runs:
        rec = r.split(inp.split) or {}
        truth = rec.get("ground_truth")
        if not truth:
            continue
        for key, label in (("exact", "exact NLL"), ("iwae", "IWAE bound"), ("fresh_elbo", "fresh-ELBO bound"),
                           ("diffusion_bound", "diffusion NELBO bound")):
            if (rec.get(key) or {}).get("bpb") is not None:
                rows.append([r.name, label, num(rec[key]["bpb"]), f"{num(truth['bpb'])} ± {num(truth['bpb_stderr'])}",
                             num(rec[key]["bpb"] - truth["bpb"])])
    return table(["run", "estimator", "bits/byte", "ground truth (bits/byte)", "excess"], rows) if rows else None


def demo_section(demo: dict[str, Any] | None) -> str:
    """The synthetic-corpus demonstration (ltm demo): each run's bound next to the exact entropy."""
    if not demo:
        return "No synthetic-corpus demonstration (`ltm demo`, results/demo/metrics.json) was found."
    truth, rows = demo["ground_truth"], []
    for name, run in demo["runs"].items():
        for t, rec in run["by_T_eval"].items():
            if not family(run["family"]).has_latents:
                rows.append([name, "AR", "—", "exact NLL", num(rec["exact"]["bpb"]), "—", "—", "—"])
                continue
            u = rec["latent_usage"]
            gap = next(iter((rec.get("gap_to_ar") or {}).values()), None)
            rows.append([name, "LTM", t, "IWAE bound", num(rec["iwae"]["bpb"]), _info_text(u), num(u["kl_per_token"]),
                         f"{gap['nats_per_token']:+.4f} ± {num(gap['stderr'])}" if gap else "—"])
    post = demo.get("posterior") or {}
    setup = (f" The LTM has N_z = {next((r['n_latents'] for r in demo['runs'].values() if family(r['family']).has_latents), '?')}"
             f" latent vectors and its own fast loop (T = {post.get('inner_steps')}, log sigma^2 starting at "
             f"{post.get('init_logvar_mean')}; `demo.posterior`, paper: T 16 and -5); both train with "
             f"{demo.get('batch_tokens')} tokens per step.") if post else ""
    text = ["### The mechanism where the answer is known (synthetic corpus)\n",
            f"Documents of {demo['corpus']['words_per_doc']} pseudo-words from a mixture of {demo['corpus']['topics']} "
            f"topics (`data.corpus.synthetic`); both models attend to the last {demo['window']} "
            f"token{'s' if demo['window'] != 1 else ''} only, so the "
            "topic is visible only to a latent." + setup + " Exact entropy of the val text (the floor no estimator "
            f"can beat in expectation): **{num(truth['bpb'])} ± {num(truth['bpb_stderr'])} bits/byte**. "
            "*LTM - AR* is the IWAE bound minus AR's exact NLL on the same rows (paired; ± standard error over rows).",
            "", table(["run", "family", "T_eval", "estimator", "bits/byte", "info vs shuffled (nats/token)", "KL/token",
                       "LTM - AR (nats/token)"], rows), "", demo_verdict(demo)]
    return "\n".join(text)


def best_demo_gap(demo: dict[str, Any] | None) -> tuple[Any, dict[str, Any], bool] | None:
    """The demo's lowest paired LTM - AR gap as (T_eval, gap, clearly below AR: by more than three standard
    errors); None without an LTM and AR pair."""
    gaps = [(t, g) for r in ((demo or {}).get("runs") or {}).values() if family(r["family"]).has_latents
            for t, rec in r["by_T_eval"].items() for g in (rec.get("gap_to_ar") or {}).values()]
    if not gaps:
        return None
    t, best = min(gaps, key=lambda p: p[1]["nats_per_token"])
    return t, best, best["stderr"] is not None and -best["nats_per_token"] > 3 * best["stderr"]


def demo_verdict(demo: dict[str, Any]) -> str:
    """One sentence: do the latents carry information, and does the best LTM bound beat AR clearly?"""
    found = best_demo_gap(demo)
    if found is None:
        return "No LTM and AR pair to compare."
    t, best, clear = found
    carries = any(rec["latent_usage"]["latents_carry_information"] for r in demo["runs"].values()
                  if family(r["family"]).has_latents for rec in r["by_T_eval"].values())
    how = ("below the AR baseline's exact NLL, clearly (more than three standard errors)" if clear else
           "not clearly below the AR baseline's exact NLL")
    return (f"The latents {'carry' if carries else 'do not carry'} information here; the LTM's best bound "
            f"(T_eval={t}) is {how}: {best['nats_per_token']:+.4f} ± {num(best['stderr'])} nats/token.")


PAPER_SETTINGS = {  # what the paper ran (Kong et al. 2025), for labelling this run's deviations
    "posterior.inner_steps": (16, "T (inner steps at training)"),
    "posterior.lr_max": (0.34, "fast lr at the first inner step"),
    "posterior.lr_min": (0.034, "fast lr at the end of the cosine"),
    "posterior.init_logvar_mean": (-5.0, "initial log sigma^2"),
    "posterior.lr_logvar_scale": (1.0, "lr multiple for log sigma^2"),
    "posterior.decoder_grads": (False, "decoder gradients in the inner loop (Algorithm 1: none)"),
    "data.shards.seq_len": (1024, "block length"),
    "data.tokenizer.kind": ("gpt2", "tokenizer"),
    "train.batch_tokens": (524288, "tokens per optimizer step"),
    "train.lr": (4.0e-4, "decoder peak lr"),
}


def deviations(params: dict) -> list[str]:
    """'key: ours (paper: theirs)' for every setting of params that differs from the paper's."""
    out = []
    for key, (paper, what) in PAPER_SETTINGS.items():
        node = params
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and node != paper:
            out.append(f"{what} `{key}` = {node} (paper: {paper})")
    return out


def latent_section(inp: Inputs, figs: dict[str, FigureInfo]) -> str:
    dev = deviations(inp.params)
    parts = ["## 2a. What the latents carry\n", verdict_sentence(inp), "",
             "**Deviations from the paper in this run:** " + ("; ".join(dev) if dev else "none of the settings checked")
             + ". Model sizes and token budgets are in the run table.", "",
             f"Split `{inp.split}`, at each run's T_eval. *info vs shuffled* = NLL with z drawn from another sequence's "
             "posterior minus NLL at z ~ q (nats/token, ± standard error over sequences): the information specific "
             "to the sequence, on which the verdict rests (the other sequence is the neighbouring row, possibly of "
             "the same long document, so the estimate is conservative). *info vs prior* uses z ~ N(0, I) instead; it also counts "
             "the harm of z values unlike those the decoder was trained on, so it can be large with nothing encoded. "
             "KL per latent dimension is split into its mean part 0.5 mu² and variance part "
             "0.5 (sigma² - 1 - log sigma²); active units have Cov_x(E_q[z]) > 0.01 (Burda et al. 2016). "
             "The KL floor is the least KL per dimension that AdamW's bounded step allows from the fast loop's "
             "initialisation in T_eval steps (`ltm.latent_usage`).", "", usage_table(inp)]
    if "kl_vs_teval" in figs:
        parts += ["", figure_md(figs["kl_vs_teval"])]
    if (inp.params.get("data", {}).get("corpus", {}) or {}).get("source") == "builtin":
        parts += ["", "**Fast-loop settings on this corpus.** A documented sweep (docs/latent-regimes.md, "
                      "`bench/latent_regimes.py`: the paper's loop, log sigma² starting at the prior, separate "
                      "learning rates for mu and log sigma², more inference steps) found no setting within the CPU "
                      "budget under which the tiny LTM's latents carry more than about 0.01 nats/token on the builtin "
                      "corpus, or its bound beats AR beyond training noise; the named runs therefore keep the "
                      "authors' fast loop (T = 4 instead of 16). The mechanism is shown instead where information "
                      "outside the attention window matters and the answer is known: the synthetic-corpus "
                      "demonstration below."]
    truth = ground_truth_table(inp)
    if truth:
        parts += ["", "**Against the ground truth.** The corpus is synthetic, so the exact entropy of its text is "
                      "known (corpus manifest `ground_truth`): no estimator's expectation can fall below it.", "", truth]
    parts += ["", "**The KL floor at the paper's scale.** With the released fast-loop settings (log sigma² starting "
                  "at -5, lr 0.34 → 0.034 cosine over T steps), 24 latents × 512 dims over 1024 tokens keep at least "
                  "this much KL per token, whatever the decoder; e^floor is the smallest NELBO perplexity they allow. "
                  "A reported perplexity below it cannot include the KL term (the public code's checkpoint-selecting "
                  "validation loss is the NLL at z without KL) or came from other settings.", "", kl_floor_table(),
              "", demo_section(inp.demo)]
    return "\n".join(parts)
