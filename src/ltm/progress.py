"""Progress that shows under any caller.

On a terminal it is a tqdm bar. Under DVC, Snakemake, CI or a pipe (stderr not a terminal) a redrawn bar
would be one endless line of carriage returns, or nothing at all, so the same object writes one plain
line when it starts, then every `EVERY_S` seconds, and a last one when it closes:

    evaluate ltm-tiny val:  40%| 4/10 [00:06<00:09,  1.51s/batch, T_eval=4]
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm

EVERY_S = 10.0
LINE_FORMAT = "{l_bar}{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


class LineProgress:
    """The part of tqdm's interface the stages use, printed as whole lines at most every `every` s."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", unit_scale: bool = False, initial: float = 0, every: float = EVERY_S,
                 file=None, **_ignored: Any):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.every, self.file, self.unit_scale = every, file, unit_scale
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False
        self._line()  # at once: the stage has started (its first real step may take a while)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        text = tqdm.format_meter(self.n, self.total, self.last - self.start, prefix=self.desc, unit=self.unit,
                                 unit_scale=self.unit_scale, postfix=self.postfix or None, initial=self.initial,
                                 bar_format=LINE_FORMAT if self.total else LINE_FORMAT_NO_TOTAL)
        out = self.file or sys.stderr
        out.write(text + "\n")
        out.flush()


def progress(iterable: Iterable | None = None, *, disable: bool = False, **kwargs: Any):
    """A tqdm bar on a terminal, a `LineProgress` elsewhere; `disable` (e.g. not the main rank) gives a
    silent tqdm. Accepts tqdm's keyword arguments (total, desc, unit, initial, ...)."""
    if disable:
        return tqdm(iterable, disable=True, **kwargs)
    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, dynamic_ncols=True, **kwargs)
    return LineProgress(iterable, **kwargs)
