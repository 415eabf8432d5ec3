"""Every benchmark script still imports what it uses and parses its options (`--help`): a library change
that breaks a bench shows up here, not at the next `make bench`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "defaults.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts(script):
    run = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout.lower(), run.stdout[-500:]
