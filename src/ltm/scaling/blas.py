"""Run the fits with the BLAS libraries numpy and scipy bundle pinned to one thread (threadpoolctl).

L-BFGS-B (C code since scipy 1.15) makes thousands of BLAS calls on 5x10 matrices. With a threaded
OpenBLAS each call hands work to helper threads; when the cores are busy (other stages, the bootstrap
workers) every call waits for a descheduled thread and a fit ran ~10x slower on a loaded 2-core machine.
One thread is always faster for problems this small.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread inside (a context manager or a decorator); the previous counts come back after."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
