"""Report section on the scaling stage's fits: accepted laws with their bootstrap CIs, figures, parity and
residual plots; refused laws with their reason only (never a parameter value); warnings.
"""
from __future__ import annotations

from typing import Any

from ltm.families import family
from ltm.report.figures import FigureInfo
from ltm.report.inputs import Inputs
from ltm.report.laws import Accepted, count_laws, refusals, subset_text
from ltm.report.tables import figure_md, num, table

DERIVED_SHOWN = ("a", "b", "L_opt@", "N_opt@", "D_over_N@")


def _ci(v: dict[str, Any]) -> str:
    ci = v.get("ci95")
    return f"{num(v.get('estimate'))} [{num(ci[0])}, {num(ci[1])}]" if ci else f"{num(v.get('estimate'))} [no CI]"


def _heldout(e: dict[str, Any]) -> str:
    h = (e.get("fit_quality") or {}).get("heldout")
    if not h:
        return "not defined"
    if not h.get("available"):
        return f"n/a: {h.get('reason', 'unavailable')}"
    return f"MAE {num(h.get('mae'))} nats, max |rel| {num(h.get('max_abs_rel'))} ({h.get('split', '')})"


def _boot(e: dict[str, Any]) -> str:
    b = e.get("bootstrap")
    if not b:
        return "none"
    method = str(b.get("method", "")).split(" (")[0]
    return f"B={num(b.get('B'))}, {num(b.get('n_failed'))} failed, {method}"


def accepted_table(accepted: list[Accepted]) -> str:
    rows = []
    for a in accepted:
        e = a.entry
        ins = (e.get("fit_quality") or {}).get("in_sample") or {}
        rows.append([f"{family(a.family).label} / {a.loss_kind}", a.name, subset_text(e.get("subset")),
                     e.get("form", ""), num(e.get("n_points")),
                     "; ".join(f"{k} = {_ci(v)}" for k, v in (e.get("params") or {}).items()),
                     _boot(e), num(ins.get("mae")), _heldout(e), "; ".join(e.get("warnings") or []) or "—"])
    return table(["group", "law", "fitted to", "form", "points", "estimate [95 % bootstrap CI]", "bootstrap",
                  "in-sample MAE (nats)", "held-out check", "flags"], rows)


def derived_tables(accepted: list[Accepted]) -> list[str]:
    out = []
    for a in accepted:
        d = a.entry.get("derived") or {}
        rows = [[k, _ci(v)] for k, v in d.items() if k.startswith(DERIVED_SHOWN)]
        if rows:
            out += [f"Derived from {a.label} ({family(a.family).label} / {a.loss_kind}); `@C=` marks a compute "
                    "budget in FLOPs, L_opt the predicted loss of the compute-optimal allocation:\n",
                    table(["quantity", "estimate [95 % bootstrap CI]"], rows), ""]
    return out


def group_overview(fit: dict[str, Any]) -> str:
    rows = []
    for g in fit.get("groups", []):
        excl = g.get("excluded") or []
        acc = g.get("accepted") or []
        rows.append([family(g["family"]).label, g["loss_kind"], "bound" if g.get("loss_is_bound") else "exact",
                     num(g.get("n_records")), num(g.get("n_fitted")),
                     "; ".join(f"{x['run']} ({x['reason']})" for x in excl) or "none",
                     f"{len(acc)} of {len(g.get('laws') or [])}"])
    return table(["family", "loss kind", "bound?", "records", "runs fitted", "excluded", "laws accepted"], rows)


def selections(fit: dict[str, Any]) -> list[str]:
    """Which T_eval / extra-axis form was chosen by held-out error, where any form was accepted."""
    outcome: dict[tuple, list[str]] = {}
    for g in fit.get("groups", []):
        for sel in (g.get("teval_selection") or []) + (g.get("axis_selection") or []):
            s = sel.get("selection") or {}
            if not any(r.get("status") == "accepted" for r in s.get("table", [])):
                continue
            where = sel.get("run") or subset_text(sel.get("subset"))
            key = (f"{family(g['family']).label} / {g['loss_kind']}", s.get("chosen"), s.get("by", ""))
            outcome.setdefault(key, []).append(str(where))
    lines = []
    for (grp, chosen, by), where in outcome.items():
        what = f"chosen form **{chosen}**" if chosen else "no form chosen (no accepted form has a held-out error)"
        lines.append(f"- {grp}: {what} by {by}, for {', '.join(where)}")
    return lines


def laws_section(inp: Inputs, accepted: list[Accepted], figs: list[FigureInfo]) -> str:
    fit = inp.fit
    n_acc, n_all = count_laws(fit)
    parts = ["## 4. Fitted scaling laws\n",
             f"The scaling stage (`fit.json`, method of docs/scaling.md: summed Huber in log space, multi-start "
             f"L-BFGS-B, design and identifiability checks, cluster bootstrap) tried {n_all} law fits in "
             f"{len(fit.get('groups', []))} (family, loss kind) groups; exact NLL and each bound are fitted "
             f"apart. **{n_acc} of {n_all} passed the checks.**\n", group_overview(fit), ""]
    if n_acc == 0:
        parts.append("**No scaling law passed the checks on this grid.** The runs are too few (and their N, D, T "
                     "too narrowly spread) for any law's design minimums, so every fit was refused; the table "
                     "below gives each reason, and no parameter values exist for refused fits. What the runs "
                     "do show is in the figures above: the measured loss vs T_eval curves (section 2) and "
                     "loss vs compute (section 3), without a fitted law. A grid that supports a fit needs more "
                     "points per law (e.g. more T_eval values per checkpoint for L(T_eval), more sizes and token "
                     "budgets for L(N, D)).\n")
    else:
        banded = any((a.entry.get("bootstrap") or {}).get("theta_samples") for a in accepted)
        parts += ["### Accepted laws\n", accepted_table(accepted), "",
                  ("Shaded bands are 95 % percentile bands of the stored bootstrap replicates." if banded else
                   "fit.json stores per-parameter bootstrap percentiles, not the replicate parameter vectors, "
                   "so no joint prediction band can be drawn: the curves below are point estimates and the "
                   "95 % intervals are the ones in the table."), ""]
        parts += selections(fit) + [""]
        parts += derived_tables(accepted)
        for c in fit.get("comparisons") or []:
            ci = (c.get("bootstrap") or {}).get("ci95")
            parts.append(f"- Crossover ({c.get('label')}): {num(c.get('crossover_flops'))} FLOPs"
                         + (f", 95 % CI [{num(ci[0])}, {num(ci[1])}]" if ci else "") + ".")
        law_figs = [f for f in figs if f.uses_scaling and f.key.startswith("law_")]
        par_figs = [f for f in figs if f.uses_scaling and f.key.startswith("parity_")]
        for f in law_figs:
            parts += [figure_md(f), ""]
        if par_figs:
            parts.append("### Parity and residuals (accepted laws, from residuals.csv)\n")
            for f in par_figs:
                parts += [figure_md(f), ""]
    refused = [[f"{family(r['family']).label} / {r['loss_kind']}", r["law"], "; ".join(r["subsets"]), r["reason"]]
               for r in refusals(fit)]
    parts += ["### Refused laws (reason only; no values are reported for a refused fit)\n",
              table(["group", "law", "tried on", "reason"], refused) if refused else "None."]
    warns = list(dict.fromkeys(fit.get("warnings") or []))
    if warns:
        parts += ["", "Warnings from the scaling stage:", ""] + [f"- {w}" for w in warns]
    return "\n".join(parts)
