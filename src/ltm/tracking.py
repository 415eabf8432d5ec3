"""Training logs: TensorBoard scalars, a step-indexed TSV for `dvc plots`, and a one-line summary."""
from __future__ import annotations

import math
from pathlib import Path

from ltm.io import write_text

# The TSV holds what a rerun reproduces exactly; the measured tokens/s goes to TensorBoard and the console.
COLUMNS = ["step", "tokens", "flops", "loss", "nll", "kl", "nelbo_first", "nelbo_last", "val_loss", "lr",
           "fast_lr_max", "fast_lr_min", "grad_norm"]


class Tracker:
    """Collects log rows (kept in the checkpoint, so a resumed run writes the same TSV) and mirrors
    them to TensorBoard on the main rank."""

    def __init__(self, tb_dir: Path | None, rows: list[dict] | None = None):
        self.rows: list[dict] = list(rows or [])
        self.writer = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tb_dir))

    def log(self, row: dict) -> None:
        row = {k: (float(v) if v is not None else None) for k, v in row.items()}
        self.rows.append(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, int(row["step"]))

    def write_tsv(self, path: Path) -> None:
        write_rows_tsv(path, [{c: row.get(c) for c in COLUMNS} for row in self.rows])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_rows_tsv(path: Path, rows: list[dict]) -> None:
    """A TSV of dict rows (columns in first-seen order), atomically; for `dvc plots`."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["\t".join(columns)] + ["\t".join(_fmt(row.get(c)) for c in columns) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def summary(row: dict, total_steps: int) -> str:
    parts = [f"step {int(row['step'])}/{total_steps}", f"loss {row['loss']:.4f}"]
    if row.get("kl") is not None:
        parts.append(f"kl/tok {row['kl']:.4f}")
    if row.get("val_loss") is not None:
        parts.append(f"val {row['val_loss']:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"gnorm {row['grad_norm']:.3f}", f"{row['tokens_per_s']:.0f} tok/s"]
    return " | ".join(parts)
