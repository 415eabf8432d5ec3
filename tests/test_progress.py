"""Progress shows under DVC, Snakemake and CI logs (stderr not a terminal) as whole periodic lines."""
from __future__ import annotations

import io

from tqdm import tqdm

from ltm.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gives_whole_lines_with_count_total_and_postfix():
    out = io.StringIO()
    bar = progress(total=4, desc="evaluate ltm-tiny val", unit="batch", file=out, every=0.0)
    assert isinstance(bar, LineProgress)  # every=0: a line at every update
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(T_eval=8)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 6  # the start, four updates and the closing line
    assert lines[0].startswith("evaluate ltm-tiny val:   0%|0/4 [")
    assert lines[1].startswith("evaluate ltm-tiny val:  25%|1/4 [") and "batch" in lines[1]
    assert lines[-1].startswith("evaluate ltm-tiny val: 100%|4/4") and "T_eval=8" in lines[-1]


def test_lines_are_rate_limited_and_the_last_one_always_comes():
    out = io.StringIO()
    with LineProgress(range(1000), desc="corpus", unit="doc", file=out, every=3600.0) as bar:
        for _ in bar:
            pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "|0/1000 " in lines[0] and "|1000/1000 " in lines[1]  # start and end only


def test_a_terminal_gets_a_tqdm_bar_and_disable_is_silent():
    assert isinstance(progress(total=3, file=Terminal()), tqdm)
    out = io.StringIO()
    bar = progress(total=3, file=out, disable=True)
    bar.update(3)
    bar.close()
    assert out.getvalue() == ""
