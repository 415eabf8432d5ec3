"""Read token shards: memory-mapped, zero-copy rows, a resumable shuffled loader, sequential eval batches.

`TokenShards` maps every shard of a split and exposes it as numpy views of shape (rows, row_len); only
the rows of a batch are ever copied. `BatchLoader` walks a fresh permutation of all rows each epoch,
drawn from (seed, epoch) alone, so its order does not depend on the number of ranks: `batch_size` is the
GLOBAL batch, and rank r of world_size takes rows [r * b, (r + 1) * b) of it, b = batch_size // world_size.
Its state is (epoch, step), so a restored loader continues with exactly the next batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch

from ltm.errors import LtmError
from ltm.io import read_json, sha256_file

Batch = tuple[torch.Tensor, torch.Tensor]


class TokenShards:
    """One split of a shards directory as a (rows, row_len) table of token ids, memory-mapped."""

    def __init__(self, shards_dir: Path, split: str, verify: bool = True):
        shards_dir = Path(shards_dir)
        if not (shards_dir / "manifest.json").is_file():
            raise LtmError(f"no shards manifest at {shards_dir / 'manifest.json'}; build the shards first")
        try:
            self.manifest: dict[str, Any] = read_json(shards_dir / "manifest.json")
            if not all(k in self.manifest for k in ("splits", "row_len", "seq_len", "dtype")):
                raise ValueError("missing keys")
        except (ValueError, UnicodeDecodeError):
            raise LtmError(f"{shards_dir / 'manifest.json'} is corrupt (not the JSON the shards stage writes); "
                           "rebuild the shards") from None
        if split not in self.manifest["splits"]:
            raise LtmError(f"no split {split!r} in {shards_dir} (splits: {', '.join(sorted(self.manifest['splits']))})")
        self.shards_dir, self.split = shards_dir, split
        self.info: dict[str, Any] = self.manifest["splits"][split]
        self.row_len: int = self.manifest["row_len"]
        self.seq_len: int = self.manifest["seq_len"]
        self.dtype = np.dtype(self.manifest["dtype"])
        self.views: list[np.ndarray] = [self._open(shards_dir / s["file"], s, verify) for s in self.info["shards"]]
        # offsets[k] = first global row of shard k; offsets[-1] = rows
        self.offsets = np.cumsum([0] + [len(v) for v in self.views])
        self.rows = int(self.offsets[-1])

    def _open(self, path: Path, entry: dict[str, Any], verify: bool) -> np.ndarray:
        if not path.is_file():
            raise LtmError(f"shard {path} is missing")
        if path.stat().st_size != entry["bytes"]:
            raise LtmError(f"shard {path} has {path.stat().st_size} bytes, the manifest says {entry['bytes']} "
                           "(truncated or altered); rebuild the shards")
        if verify and sha256_file(path) != entry["sha256"]:
            raise LtmError(f"shard {path} does not match its manifest sha256 (altered); rebuild the shards")
        try:
            source = pa.memory_map(str(path))
            reader = pa.ipc.open_file(source)
            if reader.num_record_batches != 1:
                raise ValueError(f"{reader.num_record_batches} record batches, expected 1")
            column = reader.get_batch(0).column(0)
            flat = column.to_numpy(zero_copy_only=True)  # the view keeps the mapping alive
        except (pa.ArrowException, ValueError) as err:
            raise LtmError(f"shard {path} is unreadable: {str(err).splitlines()[0]}") from None
        if flat.dtype != self.dtype or len(flat) != entry["rows"] * self.row_len:
            raise LtmError(f"shard {path} holds {len(flat)} {flat.dtype} values, the manifest says "
                           f"{entry['rows']} rows of {self.row_len} {self.dtype}")
        return flat.reshape(entry["rows"], self.row_len)

    def __len__(self) -> int:
        return self.rows

    def __reduce__(self):
        # Memory maps cannot be pickled: a worker process reopens the split (already verified here).
        return TokenShards, (self.shards_dir, self.split, False)

    def _locate(self, index: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, index, side="right") - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Row `i` as a read-only view into the mapped shard (no copy)."""
        if not -self.rows <= i < self.rows:
            raise IndexError(f"row {i} out of range for {self.rows} rows")
        i %= self.rows
        k = int(self._locate(np.asarray(i)))
        return self.views[k][i - self.offsets[k]]

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Rows `index` (any order) copied into one (len(index), row_len) array, one fancy-index per shard."""
        index = np.asarray(index, dtype=np.int64)
        if len(self.views) == 1:
            return self.views[0][index]
        out = np.empty((len(index), self.row_len), dtype=self.dtype)
        shard = self._locate(index)
        for k in np.unique(shard):
            mask = shard == k
            out[mask] = self.views[k][index[mask] - self.offsets[k]]
        return out


def to_xy(rows: np.ndarray) -> Batch:
    """(n, row_len) token rows -> int64 inputs x = row[:-1] and targets y = row[1:]."""
    x = np.empty((len(rows), rows.shape[1] - 1), dtype=np.int64)
    y = np.empty_like(x)
    x[...] = rows[:, :-1]  # widening copies straight into the output arrays
    y[...] = rows[:, 1:]
    return torch.from_numpy(x), torch.from_numpy(y)


class BatchLoader:
    """Infinite, shuffled, resumable (x, y) batches; each rank gets its disjoint slice of the global batch."""

    def __init__(self, shards: TokenShards, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise LtmError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size < 1 or batch_size % world_size:
            raise LtmError(f"batch_size {batch_size} must be a positive multiple of world_size {world_size}")
        if batch_size > len(shards):
            raise LtmError(f"batch_size {batch_size} is larger than split {shards.split!r} ({len(shards)} rows)")
        self.shards, self.batch_size, self.seed = shards, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self.steps_per_epoch = len(shards) // batch_size  # the incomplete last batch of an epoch is skipped
        self.epoch, self.step = 0, 0
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
            self._order_epoch = self.epoch
        return self._order

    def __iter__(self) -> "BatchLoader":
        return self

    def indices(self) -> np.ndarray:
        """Row numbers of this rank's part of the next batch."""
        start = self.step * self.batch_size + self.rank * self.local_batch
        return self._epoch_order()[start:start + self.local_batch]

    def __next__(self) -> Batch:
        rows = self.shards.gather(self.indices())
        self.step += 1
        if self.step == self.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
        return to_xy(rows)

    def state_dict(self) -> dict[str, int]:
        """Position of the NEXT batch, plus what must match for that position to mean the same rows."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "batch_size": self.batch_size,
                "rows": len(self.shards)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key, mine in (("seed", self.seed), ("batch_size", self.batch_size), ("rows", len(self.shards))):
            if state[key] != mine:
                raise LtmError(f"loader state has {key}={state[key]}, this loader has {key}={mine}; cannot resume")
        if not 0 <= state["step"] < self.steps_per_epoch or state["epoch"] < 0:
            raise LtmError(f"loader state epoch={state['epoch']} step={state['step']} is out of range")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


def iter_eval_batches(shards: TokenShards, batch_size: int, max_rows: int | None = None,
                      rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """Rows in stored order, batch_size at a time, the last batch possibly smaller; for evaluation.

    With several ranks, rank r takes batches r, r + world_size, ...; together they cover each row once.
    """
    total = len(shards) if max_rows is None else min(max_rows, len(shards))
    for start in range(rank * batch_size, total, batch_size * world_size):
        yield to_xy(shards.gather(np.arange(start, min(start + batch_size, total))))
