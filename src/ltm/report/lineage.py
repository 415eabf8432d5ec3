"""Lineage of the report: which runs, params hashes, content hashes and scaling fit fed each figure and
table (from the lineage.json records beside every artifact). Git commits and times stay out: they live in
each stage's lineage.run.json, so the same inputs give a byte-identical report."""
from __future__ import annotations

from typing import Any

from ltm.report.figures import FigureInfo
from ltm.report.inputs import Inputs
from ltm.report.tables import table


def hash_text(rec: dict[str, Any] | None) -> str:
    return str(rec.get("params_hash")) if rec and rec.get("params_hash") else "missing"


def _feed(inp: Inputs, item: str, runs: list[str], scaling: bool = False) -> dict[str, Any]:
    by_name = {r.name: r for r in inp.runs}
    chosen = [by_name[n] for n in runs if n in by_name]
    return {
        "item": item,
        "runs": [r.name for r in chosen],
        "train_params_hashes": sorted({hash_text(r.train_lineage) for r in chosen}),
        "eval_params_hashes": sorted({hash_text(r.eval_lineage) for r in chosen}),
        "scaling_params_hash": hash_text(inp.scaling_lineage) if scaling else None,
        "scaling_data_hash": inp.fit.get("data_hash") if scaling else None,
    }


def feeds(inp: Inputs, figs: list[FigureInfo]) -> list[dict[str, Any]]:
    """One entry per table and figure of the report."""
    all_runs = [r.name for r in inp.runs]
    out = [_feed(inp, "table: runs (section 1)", all_runs)]
    out += [_feed(inp, f"figure: {f.file}", f.runs or all_runs, f.uses_scaling) for f in figs]
    out.append(_feed(inp, "tables: fitted and refused laws (section 4)", all_runs, scaling=True))
    zs = [r.name for r in inp.runs if any(s != inp.split for s in (r.eval.get("splits") or {}))]
    out.append(_feed(inp, "table: zero-shot (section 5)", zs))
    fs = [r.name for r in inp.runs if r.fewshot is not None]
    out.append(_feed(inp, "table: few-shot (section 5)", fs))
    return out


def _short(rec: dict[str, Any] | None, key: str) -> str:
    value = (rec or {}).get(key)
    return str(value)[:12] if value else "missing"


def lineage_section(inp: Inputs, feed_list: list[dict[str, Any]]) -> str:
    n = len(inp.runs)
    rows = []
    for f in feed_list:
        runs = f["runs"]
        runs_text = (f"all {n} runs" if len(runs) == n else ", ".join(runs)) if runs else "none"
        extra = f"; fit `{f['scaling_params_hash']}` (data {str(f['scaling_data_hash'])[:12]})" \
            if f["scaling_params_hash"] else ""
        th = f["train_params_hashes"]
        th_text = ", ".join(f"`{h}`" for h in th) if len(th) <= 3 else f"{len(th)} distinct (per-run table below)"
        rows.append([f["item"], runs_text, th_text or "—",
                     ", ".join(f"`{h}`" for h in f["eval_params_hashes"]) + extra or "—"])
    per_run = [[r.name, f"`{hash_text(r.train_lineage)}`", str((r.train_lineage or {}).get("run_hash", "—")),
                f"`{_short(r.train_lineage, 'output_sha256')}`", f"`{hash_text(r.eval_lineage)}`",
                f"`{_short(((r.eval_lineage or {}).get('files') or {}), 'metrics.json')}`"]
               for r in inp.runs]
    parts = [
        "## 6. Lineage\n",
        "Params hashes are those of each stage's own params subset (its lineage.json); `missing` means the "
        "artifact has no lineage record. `ltm lineage PATH` walks any artifact back to the raw corpus.\n",
        table(["figure / table", "runs", "train params hashes", "eval params hashes (+ scaling fit)"], rows), "",
        table(["run", "train params hash", "run hash", "model sha256", "eval params hash", "eval metrics sha256"],
              per_run), "",
        f"Scaling fit: params hash `{hash_text(inp.scaling_lineage)}`, fit.json data hash "
        f"`{str(inp.fit.get('data_hash'))[:16]}`, schema `{inp.fit.get('schema', '—')}`. "
        "The same mapping is in inputs.json. Git commits and times are kept out of every hashed artifact "
        "(each stage's lineage.run.json; `ltm lineage PATH` prints them), so the same inputs give "
        "byte-identical outputs: the commit of these results is the one whose dvc.lock lists their hashes.",
    ]
    return "\n".join(parts)
