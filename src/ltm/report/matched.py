"""Matched comparisons: each LTM against the AR baseline at the same data and at the same compute.

An LTM of a given width has more parameters than its AR twin (cross-attention to the latents) and pays
T + 1 forward/backward passes per token, so "LTM beats AR" means little unless the match is stated.
Two matches are shown per LTM run, with what each leaves unmatched:

- same data: the AR run trained on the same token budget (nearest in parameters), with the parameter
  and compute ratios LTM / AR;
- same compute: the AR loss at the LTM's training FLOPs, interpolated linearly in log FLOPs between the
  two AR runs around it (only inside the range the AR runs cover; never extrapolated).

Losses: the LTM's IWAE bound (an upper bound on its NLL) against AR's exact NLL, nats/token on the
headline split; a positive AR - LTM favours the LTM.
"""
from __future__ import annotations

import math

from ltm.families import family
from ltm.report.claims import run_loss
from ltm.report.inputs import Inputs, RunArtifacts
from ltm.report.tables import num, table


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "—"


def same_data(run: RunArtifacts, ar: list[RunArtifacts], split: str) -> list[str]:
    tokens = run.train.get("tokens")
    twins = [a for a in ar if a.train.get("tokens") == tokens]
    if not twins:
        return ["no AR run at this budget", "—", "—", "—"]
    twin = min(twins, key=lambda a: abs(math.log(float(a.train["params"]) / float(run.train["params"]))))
    gap = run_loss(twin, split)[0] - run_loss(run, split)[0]
    return [twin.name, _ratio(float(run.train["params"]), float(twin.train["params"])),
            _ratio(float(run.train["train_flops"]), float(twin.train["train_flops"])), f"{gap:+.4f}"]


def ar_at_flops(ar: list[RunArtifacts], flops: float, split: str) -> tuple[float | None, str]:
    """AR loss at `flops` by log-linear interpolation between the AR runs around it, and how it was got."""
    pts = sorted((float(a.train["train_flops"]), run_loss(a, split)[0], a.name) for a in ar if a.train.get("train_flops"))
    if not pts:
        return None, "no AR run"
    if not pts[0][0] <= flops <= pts[-1][0]:
        side = "above" if flops > pts[-1][0] else "below"
        edge = pts[-1] if side == "above" else pts[0]
        return None, f"{side} every AR run ({_ratio(flops, edge[0])} of {edge[2]}); not extrapolated"
    for (x0, y0, n0), (x1, y1, n1) in zip(pts, pts[1:]):
        if x0 <= flops <= x1:
            w = 0.0 if x1 == x0 else (math.log(flops) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + w * (y1 - y0), f"between {n0} and {n1}" if n0 != n1 else n0
    return pts[-1][1], pts[-1][2]


def matched_rows(inp: Inputs) -> list[list[str]]:
    split = inp.split
    ar = [r for r in inp.runs if family(r.family).exact_likelihood and run_loss(r, split)]
    rows = []
    for run in inp.runs:
        if not family(run.family).has_latents or not run_loss(run, split) or not run.train.get("train_flops"):
            continue
        loss = run_loss(run, split)[0]
        at_c, how = ar_at_flops(ar, float(run.train["train_flops"]), split)
        rows.append([run.name, num(run.train.get("params")), num(run.train.get("tokens")),
                     num(run.train.get("train_flops")), f"{loss:.4f}", *same_data(run, ar, split),
                     f"{at_c - loss:+.4f}" if at_c is not None else "—", how])
    return rows


def matched_section(inp: Inputs) -> str:
    rows = matched_rows(inp)
    head = ["LTM run", "params", "tokens", "train FLOPs", "IWAE (nats/token)", "same data: AR run",
            "params LTM/AR", "FLOPs LTM/AR", "AR - LTM", "same compute: AR - LTM", "AR at that compute"]
    text = ["## 2c. Matched comparisons\n",
            f"Split `{inp.split}`: the LTM's IWAE bound against AR's exact NLL (nats/token; positive AR - LTM "
            "favours the LTM, and the bound only understates the LTM). *Same data*: the AR run with the same "
            "token budget; its parameter and FLOP ratios say what is not matched. *Same compute*: AR's loss at "
            "the LTM's training FLOPs, interpolated in log FLOPs between the AR runs around it; an LTM outside "
            "the AR runs' compute range gets no number (train AR on more tokens to match it)."]
    if not rows:
        return "\n".join(text + ["", "No LTM run with an AR baseline to compare."])
    return "\n".join(text + ["", table(head, rows)])
