"""A stage run by `dvc repro` stops when DVC dies.

DVC runs a stage's command through a shell and does not pass a SIGTERM on: killing `dvc repro`
would leave the stage running, orphaned, while a rerun starts a second writer. Under DVC (DVC_STAGE
set), a daemon thread therefore watches the DVC process (an ancestor: DVC -> [shell] -> ltm) and sends
this process SIGTERM once it is gone: training then saves a checkpoint and exits (its own handler); any
other stage stops before its atomic replacement, so the previous artifact stays.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

POLL_S = 0.5


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None when it is gone (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def dvc_ancestor(depth: int = 3) -> int | None:
    """The nearest ancestor whose command is `dvc ...` (within `depth` generations)."""
    pid = os.getppid()
    for _ in range(depth):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(os.path.basename(a).decode(errors="replace") == "dvc" for a in argv[:2]):
            return pid
        stat = _stat(pid)
        if stat is None or stat[0] <= 1:
            return None
        pid = stat[0]
    return None


def stop_with_dvc() -> int | None:
    """Start the watch when running under DVC; returns the watched pid (None: not under DVC)."""
    if "DVC_STAGE" not in os.environ or not Path("/proc/self/stat").exists():
        return None
    pid = dvc_ancestor()
    stat = _stat(pid) if pid else None
    if stat is None:
        return None
    started = stat[1]

    def watch() -> None:
        while True:
            time.sleep(POLL_S)
            now = _stat(pid)
            if now is None or now[1] != started:  # gone (or its pid reused by another process)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="ltm-dvc-watch", daemon=True).start()
    return pid
