"""The scaling fits run with one BLAS thread (threadpoolctl), and the previous counts come back after."""
from __future__ import annotations

import numpy  # noqa: F401  (loads the BLAS libraries threadpoolctl inspects)
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_info, threadpool_limits

from ltm.scaling.fit import one_blas_thread


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_inside_and_the_previous_counts_after():
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        with one_blas_thread():
            assert set(blas_threads()) == {1}

        @one_blas_thread()
        def inside() -> list[int]:
            return blas_threads()

        assert set(inside()) == {1}
        assert set(blas_threads()) == {2}
