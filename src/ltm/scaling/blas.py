"""Run the fits with numpy's and scipy's bundled OpenBLAS pinned to one thread.

L-BFGS-B (C code since scipy 1.15) makes thousands of BLAS calls on 5×10 matrices. With a threaded
OpenBLAS each call hands work to helper threads; when the cores are busy (other stages, the bootstrap
workers) every call waits for a descheduled thread and a fit ran ~10× slower on a loaded 2-core machine.
One thread is always faster for problems this small. No-op where the libraries are not found.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
from pathlib import Path
from typing import Iterator

# (set, get) symbol pairs exported by the scipy-openblas builds that numpy and scipy wheels bundle
_SYMBOLS = (("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"))
_handles: list[tuple[object, object]] | None = None


def _find() -> list[tuple[object, object]]:
    global _handles
    if _handles is None:
        _handles = []
        for pkg in ("numpy", "scipy"):
            spec = importlib.util.find_spec(pkg)
            if spec is None or spec.origin is None:
                continue
            for path in sorted((Path(spec.origin).parent.parent / f"{pkg}.libs").glob("libscipy_openblas*.so*")):
                try:
                    lib = ctypes.CDLL(str(path))  # already loaded by numpy/scipy: same library instance
                except OSError:
                    continue
                for set_name, get_name in _SYMBOLS:
                    setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
                    if setter is not None and getter is not None:
                        getter.restype = ctypes.c_int
                        _handles.append((setter, getter))
                        break
    return _handles


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Pin the bundled OpenBLAS libraries to one thread; restore the previous counts on exit."""
    handles = _find()
    before = [int(get()) for _, get in handles]
    for setter, _ in handles:
        setter(1)
    try:
        yield
    finally:
        for (setter, _), n in zip(handles, before):
            setter(n)
