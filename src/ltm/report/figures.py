"""Report figures (PNG, matplotlib object API with the Agg canvas: no pyplot global state).

One colour per family everywhere (LTM blue, AR orange, diffusion green); runs of one family get shades
of it. Loss kinds are never joined on one curve: exact NLL and bounds are separate series (and panels).
Each make_* returns a FigureInfo (file, caption, runs that fed it) or None when there is nothing to draw.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ltm.families import family
from ltm.report.inputs import Inputs, RunArtifacts
from ltm.report.laws import Accepted, cols_of, law_class, subset_text, x_variable

KIND_STYLE = {  # eval estimator key -> (label, marker, is a bound)
    "exact": ("exact NLL", "o", False),
    "iwae": ("IWAE bound", "^", True),
    "fresh_elbo": ("fresh-noise ELBO bound", "s", True),
}
KNOWN_ESTIMATORS = ("exact", "iwae", "fresh_elbo", "paper")
DPI = 110


def other_bounds(rec: dict[str, Any] | None) -> list[str]:
    """Estimator blocks of an eval record beyond the LTM/AR ones (e.g. a diffusion NELBO bound): dicts with
    a 'ppl'. They are treated as upper bounds, never as exact."""
    if not rec:
        return []
    return [k for k, v in rec.items() if isinstance(v, dict) and "ppl" in v and k not in KNOWN_ESTIMATORS]


def nats(block: dict[str, Any]) -> float | None:
    """Loss of one estimator block in nats/token: the whole NELBO of a bound (never its NLL term alone),
    the NLL of an exact block."""
    for key in ("nelbo", "nats_per_token", "nll"):
        if block.get(key) is not None:
            return float(block[key])
    ppl = block.get("ppl")
    return math.log(ppl) if ppl else None


@dataclass
class FigureInfo:
    key: str
    file: str  # relative to the report folder
    caption: str
    runs: list[str] = field(default_factory=list)
    uses_scaling: bool = False


def run_shades(runs: list[RunArtifacts]) -> dict[str, Any]:
    """A distinct shade of its family colour for every run."""
    out: dict[str, Any] = {}
    for fam in dict.fromkeys(r.family for r in runs):
        members = [r.name for r in runs if r.family == fam]
        cmap = colormaps[family(fam).cmap]
        for i, name in enumerate(members):
            out[name] = cmap(0.85 - 0.45 * (i / max(len(members) - 1, 1))) if len(members) > 1 else family(fam).color
    return out


def _new(nrows: int, ncols: int, w: float, h: float, **kw) -> tuple[Figure, np.ndarray]:
    """A figure of nrows x ncols panels, each w x h inches, on the Agg canvas."""
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _grid(n: int, **kw: Any) -> tuple[Figure, np.ndarray]:
    """n panels of 4.8 x 3.8 inches, three to a row; the unused ones hidden."""
    ncols = min(3, n)
    fig, axes = _new(math.ceil(n / ncols), ncols, 4.8, 3.8, **kw)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def _figure(fig: Figure, out: Path, key: str, name: str, caption: str, runs: list[str], **kw: Any) -> FigureInfo:
    """Save the PNG as out/name and describe it for the report."""
    fig.savefig(out / name, dpi=DPI, format="png")
    return FigureInfo(key, f"figures/{name}", caption, runs, **kw)


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _tick(v: float, _pos=None) -> str:
    """Plain numbers up to 10^4 (T_eval 1, 2, 5, 10), then 2e9 style."""
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    return f"{v:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _log_x(ax) -> None:
    """Log x axis whose labels never collide: majors at 1, 2, 5 x 10^k, written 2e9; no minor labels."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_tick))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _teval_x(ax, T: list[float], train_T: int) -> None:
    """Symlog T_eval axis (T_eval = 0 shown) ticked at the curve's steps and the training T."""
    ax.set_xscale("symlog", linthresh=1.0)
    ticks = sorted({t for t in T if math.isfinite(t)} | {train_T})
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlim(-0.25 if min(ticks) <= 0 else 0.8 * min(ticks), 1.12 * max(ticks))
    ax.set_xlabel("inference steps T_eval")


def _finite(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


# ---------------------------------------------------------------- PPL vs inference steps (paper §3.4 style)
def make_ppl_vs_teval(inp: Inputs, out: Path) -> FigureInfo | None:
    ltm = [r for r in inp.runs if family(r.family).has_latents and r.curve]
    if not ltm:
        return None
    refs = []  # (run, PPL, label): exact PPL of AR runs, bound PPL of other families
    for r in inp.runs:
        rec = r.split(inp.split)
        if family(r.family).has_latents or not rec:
            continue
        if "exact" in rec:
            refs.append((r.name, rec["exact"]["ppl"], f"{family(r.family).label} {r.name}: exact PPL"))
        for key in other_bounds(rec)[:1]:
            refs.append((r.name, rec[key]["ppl"], f"{family(r.family).label} {r.name}: {key} PPL (bound)"))
    shades = run_shades(inp.runs)
    fig, axes = _grid(len(ltm), sharey=True)
    for ax, run in zip(axes.flat, ltm):
        T = [row["T_eval"] for row in run.curve]
        for col, label, style, color in (("iwae_ppl", "IWAE bound", "-o", family("ltm").color),
                                         ("fresh_elbo_ppl", "fresh-noise ELBO bound", "--s", "#6baed6"),
                                         ("paper_ppl", "paper protocol (biased, not a bound)", ":", "#7f7f7f")):
            x, y = _finite(T, [row.get(col, math.nan) for row in run.curve])
            if y:
                ax.plot(x, y, style, color=color, label=label, ms=4, lw=1.6 if style != ":" else 1.2)
        ax.axvline(run.inner_steps, color="black", ls=":", lw=1.2, label="training T")
        for name, ppl, label in refs:
            ax.axhline(ppl, color=shades[name], ls="-.", lw=1.2, label=label)
        _teval_x(ax, T, run.inner_steps)
        ax.set_yscale("log")
        ax.set_title(f"{run.name} (inner_steps={run.inner_steps})", fontsize=10)
        ax.set_ylabel(f"{inp.split} perplexity (per token)")
        ax.grid(True, which="both", alpha=0.25)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8)
    fig.suptitle(f"{inp.split} PPL vs inference steps (log scale; LTM: upper bounds, AR: exact)")
    K = sorted({(r.split(inp.split) or {}).get("protocol", {}).get("K") for r in ltm} - {None})
    return _figure(fig, out, "ppl_vs_teval", "ppl_vs_teval.png",
                   f"PPL vs T_eval per LTM run (K={', '.join(map(str, K)) or '?'} samples per sequence); the "
                   "dotted vertical line is the training T, dash-dot lines the other runs' PPL (AR: exact)",
                   [r.name for r in ltm] + [a[0] for a in refs])


# ---------------------------------------------------------------- loss vs training FLOPs
def _style(key: str) -> tuple[str, str, bool]:
    """(legend label, marker, is a bound) of an estimator key; another bound is named once (diffusion_bound ->
    "diffusion NELBO bound", not "diffusion_bound bound")."""
    if key in KIND_STYLE:
        return KIND_STYLE[key]
    words = key.replace("_", " ").removesuffix(" bound")
    return (f"{words} NELBO bound", "D", True)  # every other estimator a record holds is a NELBO


def _budget(tokens: float) -> str:
    """A token budget for a point label: 200k, 1.5M."""
    return f"{tokens / 1e6:.3g}M" if tokens >= 1e6 else f"{tokens / 1e3:.3g}k"


def make_loss_vs_flops(inp: Inputs, out: Path) -> FigureInfo | None:
    series: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for r in inp.runs:
        rec = r.split(inp.split)
        if not rec or not r.train.get("train_flops"):
            continue
        for key in [*KIND_STYLE, *other_bounds(rec)]:
            loss = nats(rec[key]) if key in rec else None
            if loss is not None:
                series.setdefault((r.family, key), []).append((float(r.train["train_flops"]), loss, r))
    if not series:
        return None
    panels = [p for p in (("exact NLL (exact likelihood)", False), ("upper bounds on NLL", True))
              if any(_style(k)[2] == p[1] for _, k in series)]
    fig, axes = _new(1, len(panels), 6.0, 4.6, sharex=True, sharey=True)
    for ax, (title, bound) in zip(axes.flat, panels):
        for (fam, key), pts in series.items():
            label, marker, is_bound = _style(key)
            if is_bound != bound:
                continue
            hollow = key == "fresh_elbo"
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=46,
                       label=f"{family(fam).label}: {label}", facecolors="none" if hollow else family(fam).color,
                       edgecolors=family(fam).color)
            if not hollow:  # fresh-ELBO points sit beside the IWAE ones: one label per run is enough
                for (xx, yy, run) in pts:
                    text = f"D={_budget(float(run.train.get('tokens') or 0))}" + (
                        f" T{run.inner_steps}" if family(fam).has_latents else "")
                    ax.annotate(text, (xx, yy), textcoords="offset points", xytext=(4, 3), fontsize=7)
        _log_x(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training compute (FLOPs, incl. inner loop)")
        ax.set_ylabel(f"{inp.split} loss (nats/token)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    fig.suptitle(f"Final {inp.split} loss vs training FLOPs (one marker per run and loss kind; "
                 "labels: token budget D, LTM training T)")
    runs = sorted({p[2].name for pts in series.values() for p in pts})
    return _figure(fig, out, "loss_vs_flops", "loss_vs_flops.png",
                   "final validation loss vs training FLOPs, each point labelled with its token budget D (and T "
                   "for an LTM); exact NLL and bounds are separate series and panels (a bound is not comparable "
                   "to an exact NLL as if both were exact)", runs)


# ---------------------------------------------------------------- training curves
def make_train_curves(inp: Inputs, out: Path) -> FigureInfo | None:
    runs = [r for r in inp.runs if r.train_log]
    if not runs:
        return None
    shades = run_shades(inp.runs)
    fig, axes = _new(1, 1, 7.5, 4.6)
    ax = axes[0, 0]
    for r in runs:
        x, y = _finite([row.get("tokens") for row in r.train_log[1:]], [row.get("loss") for row in r.train_log[1:]])
        if y:
            ax.plot(x, y, "-o", ms=3, color=shades[r.name], lw=1.4, label=f"{family(r.family).label} {r.name}")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss (LTM: token NLL given the fitted z, the decoder's objective; AR: NLL)", fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="upper right", ncols=2 if len(runs) > 6 else 1)
    return _figure(fig, out, "train_curves", "train_curves.png", "training loss vs tokens seen, one line per run",
                   [r.name for r in runs])


# ---------------------------------------------------------------- fitted laws
def _curve_x(rows: list[dict], col: str) -> np.ndarray:
    xs = np.array([r[col] for r in rows if r["role"] != "excluded"], float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    lo, hi = float(xs.min()), float(xs.max())
    return np.geomspace(lo, hi * (1.25 if col == "T_eval" else 2.0), 120)


def _grid_cols(rows: list[dict], col: str, x: np.ndarray) -> dict[str, np.ndarray]:
    base = {k: rows[0][k] for k in ("N", "D", "C", "T", "n_latents", "T_eval")}
    return cols_of([{**base, col: v} for v in x])


def _draw_law(ax, acc: Accepted, color, style: str, label: str, points: bool) -> None:
    """Observed points of the fit (filled: fitted, hollow: held out, x: excluded) and the fitted curve."""
    col, xlabel = x_variable(acc.law)
    rows = acc.rows
    pc = "#333333"
    for role, face, marker in (("in_fit", pc, "o"), ("held_out", "none", "o"), ("excluded", pc, "x")):
        pts = [r for r in rows if r["role"] == role] if points else []
        if pts:
            kw = {"facecolors": face, "edgecolors": pc} if marker == "o" else {"color": pc}
            ax.scatter([r[col] for r in pts], [r["observed"] for r in pts], marker=marker, s=28, zorder=3, **kw)
    x = _curve_x(rows, col)
    cols = _grid_cols(rows, col, x)
    y = acc.predict(cols)
    if y is not None:
        ax.plot(x, y, style, color=color, lw=1.8, label=label)
    band = acc.band(cols)
    if band is not None:
        ax.fill_between(x, band[0], band[1], color=color, alpha=0.18, lw=0)
    _log_x(ax)
    ax.set_xlabel(xlabel)


def make_law_figures(accepted: list[Accepted], out: Path) -> list[FigureInfo]:
    """Per (family, loss kind): fitted T_eval curves, fitted one-variable laws, parity and residuals."""
    infos = []
    groups: dict[tuple[str, str], list[Accepted]] = {}
    for acc in accepted:
        if acc.rows:
            groups.setdefault((acc.family, acc.loss_kind), []).append(acc)
    for (fam, kind), accs in groups.items():
        for cls, title in (("teval", "loss vs inference steps"), ("one_var", "one-variable laws")):
            sel = [a for a in accs if law_class(a.law) == cls]
            if sel:
                infos.append(_law_panels(fam, kind, cls, title, sel, out))
        for cls in ("teval", "runs"):
            sel = [a for a in accs if (law_class(a.law) == "teval") == (cls == "teval")]
            if sel:
                infos.append(_parity(fam, kind, cls, sel, out))
    return infos


def _law_panels(fam: str, kind: str, cls: str, title: str, accs: list[Accepted], out: Path) -> FigureInfo:
    by_panel: dict[str, list[Accepted]] = {}
    for a in accs:  # T_eval forms of one run share a panel; every other law gets its own
        key = a.label if cls != "teval" else str((a.entry.get("subset") or {}).get("run", a.label))
        by_panel.setdefault(key, []).append(a)
    fig, axes = _grid(len(by_panel))
    styles = ["-", "--", "-.", ":"]
    cmap = colormaps[family(fam).cmap]
    shades = [family(fam).color, cmap(0.45), cmap(0.95), cmap(0.65)]
    for ax, (panel, members) in zip(axes.flat, by_panel.items()):
        for i, a in enumerate(members):
            form = a.name.replace("L(T_eval) ", "") if cls == "teval" else a.entry.get("form", a.name)
            _draw_law(ax, a, shades[i % len(shades)], styles[i % len(styles)], form, points=i == 0)
        ax.set_title(panel, fontsize=9)
        ax.set_ylabel(f"{kind} loss (nats/token)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    held = any(r["role"] == "held_out" for a in accs for r in a.rows)
    fig.suptitle(f"{family(fam).label} / {kind}: accepted {title} (filled: fitted points"
                 + (", hollow: held out)" if held else "; no point held out)"))
    return _figure(fig, out, f"law_{fam}_{kind}_{cls}", f"law_{safe(fam)}_{safe(kind)}_{cls}.png",
                   f"{family(fam).label} {kind}: accepted {title}, "
                   + ("fitted curves with 95 % bootstrap bands"
                      if any((a.entry.get("bootstrap") or {}).get("theta_samples") for a in accs)
                      else "point-estimate curves"),
                   sorted({r["run"] for a in accs for r in a.rows}), uses_scaling=True)


def _parity(fam: str, kind: str, cls: str, accs: list[Accepted], out: Path) -> FigureInfo:
    fig, axes = _new(1, 2, 5.4, 4.4)
    colors = colormaps["tab10"]
    xcol, xlabel = ("T_eval", "inference steps T_eval") if cls == "teval" else ("C", "training compute C (FLOPs)")
    lo, hi = math.inf, -math.inf
    where = sorted({subset_text(a.entry.get("subset")) for a in accs})
    forms = sorted({a.name for a in accs})
    markers = "os^Dv<>p"
    for a in accs:
        c = colors(where.index(subset_text(a.entry.get("subset"))) % 10)
        m = markers[forms.index(a.name) % len(markers)]
        for role, face in (("in_fit", c), ("held_out", "none")):
            pts = [r for r in a.rows if r["role"] == role]
            if not pts:
                continue
            obs = [r["observed"] for r in pts]
            pred = [r["predicted"] for r in pts]
            lab = f"{a.name.replace('L(T_eval) ', '')} · {subset_text(a.entry.get('subset'))}" \
                if role == "in_fit" else None
            axes[0, 0].scatter(obs, pred, s=26, marker=m, facecolors=face, edgecolors=c, label=lab)
            axes[0, 1].scatter([r[xcol] for r in pts], [r["residual"] for r in pts], s=26, marker=m,
                               facecolors=face, edgecolors=c)
            lo, hi = min(lo, *obs, *pred), max(hi, *obs, *pred)
    pad = 0.03 * (hi - lo if hi > lo else 1.0)
    axes[0, 0].plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    axes[0, 0].set_xlabel("observed loss (nats/token)")
    axes[0, 0].set_ylabel("predicted loss (nats/token)")
    held = any(r["role"] == "held_out" for a in accs for r in a.rows)
    axes[0, 0].set_title("parity (hollow: held-out predictions)" if held else "parity (no point held out)",
                         fontsize=10)
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].axhline(0.0, color="black", lw=1)
    _log_x(axes[0, 1])
    axes[0, 1].set_xlabel(xlabel)
    axes[0, 1].set_ylabel("log residual ln(pred / obs)")
    axes[0, 1].set_title("residuals", fontsize=10)
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.25)
    fig.suptitle(f"{family(fam).label} / {kind}: accepted {'T_eval' if cls == 'teval' else 'run-level'} laws")
    return _figure(fig, out, f"parity_{fam}_{kind}_{cls}", f"parity_{safe(fam)}_{safe(kind)}_{cls}.png",
                   f"{family(fam).label} {kind}: observed vs predicted and log residuals (residuals.csv)",
                   sorted({r["run"] for a in accs for r in a.rows}), uses_scaling=True)


def make_all(inp: Inputs, accepted: list[Accepted], out: Path) -> list[FigureInfo]:
    infos = [make_ppl_vs_teval(inp, out), make_loss_vs_flops(inp, out), make_train_curves(inp, out)]
    infos += make_law_figures(accepted, out)
    return [i for i in infos if i is not None]
