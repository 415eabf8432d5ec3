"""Training checkpoints: atomic, pruned to keep_last, refused when they belong to other params or are damaged."""
from __future__ import annotations

import pytest
import torch

from ltm import checkpoint
from ltm.errors import LtmError


def state(step: int, run_hash: str = "abc") -> dict:
    return {"run_hash": run_hash, "step": step, "tokens": 10 * step, "log_rows": [], "model": {"w": torch.ones(2)},
            "optimizer": {}, "scheduler": {}, "loader": {}, "rng": {"torch": torch.get_rng_state()}}


def test_save_keeps_the_last_ones_and_auto_resume_takes_the_newest(tmp_path):
    folder = checkpoint.checkpoint_dir(tmp_path, "abc")
    for step in (5, 10, 15):
        checkpoint.save(folder, state(step), step, keep_last=2)
    assert [p.name for p in checkpoint.list_checkpoints(folder)] == ["step-00000010.pt", "step-00000015.pt"]
    assert not any(p.name.startswith(".") or p.suffix == ".tmp" for p in folder.iterdir())
    latest = checkpoint.find_resume(folder, "auto")
    assert checkpoint.load(latest, "abc")["step"] == 15
    assert checkpoint.find_resume(folder, "never") is None
    assert checkpoint.find_resume(tmp_path / "empty", "auto") is None


def test_other_params_damaged_or_incomplete_checkpoints_are_refused(tmp_path):
    folder = tmp_path / "c"
    path = checkpoint.save(folder, state(3), 3, keep_last=1)
    with pytest.raises(LtmError, match="params hash abc"):
        checkpoint.load(path, "other")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LtmError, match="unreadable"):
        checkpoint.load(path)
    partial = state(4)
    del partial["optimizer"]
    torch.save({"format": checkpoint.FORMAT, **partial}, folder / "step-00000004.pt")
    with pytest.raises(LtmError, match="lacks optimizer"):
        checkpoint.load(folder / "step-00000004.pt")
    torch.save({"step": 1}, folder / "plain.pt")
    with pytest.raises(LtmError, match="not an ltm training checkpoint"):
        checkpoint.load(folder / "plain.pt")
    with pytest.raises(LtmError, match="no checkpoint file"):
        checkpoint.find_resume(folder, str(folder / "missing.pt"))
