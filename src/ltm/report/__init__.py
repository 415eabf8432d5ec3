"""The results report: one folder with report.md and figures/*.png, the first thing a reader opens.

    build_report(params, runs_dir, eval_dir, scaling_dir, out_dir) -> out_dir / "report.md"

Modules, lowest first: laws (fit.json's laws by law id, residual rows), inputs (the typed `Inputs`),
figures (PNG figures and their shared style), metrics (metrics.json), tables (markdown helpers and the
run-level sections), latents, claims, matched, fits (the fitted-laws section), lineage; this module
puts them together. Imports point down that list only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ltm.io import atomic_dir, check_replaceable, write_json, write_text
from ltm.report.claims import claims_section
from ltm.report.figures import FigureInfo, make_all
from ltm.report.fits import laws_section
from ltm.report.inputs import Inputs, RunArtifacts, load_inputs, read_json_file
from ltm.report.latents import latent_section, make_kl_vs_teval
from ltm.report.laws import Accepted, accepted_laws
from ltm.report.lineage import feeds, lineage_section
from ltm.report.matched import matched_section
from ltm.report.metrics import headline
from ltm.report.tables import (
    compute_section,
    header,
    run_table,
    teval_section,
    zero_shot_section,
)

__all__ = ["Inputs", "RunArtifacts", "build_report", "load_inputs", "read_json_file", "render"]


def build_report(params: dict[str, Any], runs_dir: Path, eval_dir: Path, scaling_dir: Path, out_dir: Path,
                 *, fewshot_dir: Path | None = None) -> Path:
    """Write out_dir/report.md, out_dir/figures/*.png, out_dir/inputs.json (which artifacts fed each
    figure and table) and out_dir/metrics.json (the headline numbers); returns the path of report.md. fewshot_dir defaults to eval_dir/../fewshot."""
    check_replaceable(Path(out_dir), "report")  # before reading anything: a wrong --out fails at once
    inp = load_inputs(params, runs_dir, eval_dir, scaling_dir, fewshot_dir)
    accepted = accepted_laws(inp.fit, inp.residuals)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, owner="report") as tmp:
        fig_dir = tmp / "figures"
        fig_dir.mkdir()
        figures = make_all(inp, accepted, fig_dir)
        figures += [f for f in (make_kl_vs_teval(inp, fig_dir),) if f is not None]
        text, feed_list = render(inp, accepted, figures)
        write_text(tmp / "report.md", text)
        write_json(tmp / "inputs.json", feed_list)
        write_json(tmp / "metrics.json", headline(inp))
    return out_dir / "report.md"


def render(inp: Inputs, accepted: list[Accepted], figures: list[FigureInfo]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown text and the per-item lineage mapping."""
    by_key = {f.key: f for f in figures}
    feed_list = feeds(inp, figures)
    sections = [header(inp), run_table(inp), teval_section(inp, by_key), latent_section(inp, by_key),
                claims_section(inp), matched_section(inp), compute_section(by_key),
                laws_section(inp, accepted, figures), zero_shot_section(inp), lineage_section(inp, feed_list)]
    return "\n\n".join(sections) + "\n", feed_list
