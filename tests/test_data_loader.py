"""Loader: zero-copy mapped rows, integrity checks, shuffled resumable batches, rank slices, eval order."""
from __future__ import annotations

import itertools
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ltm.data.corpus import build_corpus
from ltm.data.loader import BatchLoader, TokenShards, iter_eval_batches
from ltm.data.shards import build_shards
from ltm.data.tokenizer import build_tokenizer
from ltm.errors import LtmError

from settings import data_settings

WORDS = "red green blue latent thought loader batch epoch rank shuffle resume".split()


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loader")
    rng = random.Random(11)
    with open(root / "docs.jsonl", "w") as fh:
        for _ in range(80):
            fh.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))}) + "\n")
    build_corpus({**data_settings("corpus"), "source": "files", "paths": [str(root / "docs.jsonl")], "val_fraction": 0.2, "seed": 0},
                 root / "corpus")
    build_tokenizer({**data_settings("tokenizer"), "kind": "bpe", "vocab_size": 300, "min_frequency": 2}, root / "corpus", root / "tok")
    build_shards({"seq_len": 8, "rows_per_shard": 13, "dtype": "auto"}, root / "corpus", root / "tok", root / "shards")
    return root / "shards"


@pytest.fixture(scope="module")
def train(shards_dir) -> TokenShards:
    return TokenShards(shards_dir, "train")


def test_rows_are_zero_copy_views_matching_the_manifest(train, shards_dir):
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    assert len(train) == train.rows == manifest["splits"]["train"]["rows"]
    assert len(train.views) > 2 and train.row_len == 9
    row = train[0]
    assert row.shape == (9,) and not row.flags.owndata and not row.flags.writeable  # a view into the map
    everything = np.concatenate(train.views)
    assert all(np.array_equal(train[i], everything[i]) for i in range(len(train)))
    assert np.array_equal(train[-1], everything[-1])
    index = np.array([len(train) - 1, 0, 14, 13, 12, 5, 14])  # across shard boundaries, repeats, any order
    assert np.array_equal(train.gather(index), everything[index])
    with pytest.raises(IndexError):
        train[len(train)]
    clone = pickle.loads(pickle.dumps(train))  # e.g. for DataLoader worker processes
    assert clone.rows == train.rows and np.array_equal(clone.gather(index), train.gather(index))


def test_batches_are_shifted_pairs_and_epochs_are_permutations(train):
    loader = BatchLoader(train, batch_size=4, seed=3)
    index = loader.indices()
    x, y = next(loader)
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(torch.cat([x, y[:, -1:]], 1), torch.from_numpy(train.gather(index).astype(np.int64)))
    seen = list(index)
    for _ in range(loader.steps_per_epoch - 1):
        seen.extend(loader.indices())
        next(loader)
    assert len(set(seen)) == len(seen) == loader.steps_per_epoch * 4  # no row twice in one epoch
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["step"] == 0
    epoch1 = loader.indices()
    assert not np.array_equal(epoch1, BatchLoader(train, 4, seed=3).indices())  # a new order each epoch
    assert not np.array_equal(BatchLoader(train, 4, seed=4).indices(), BatchLoader(train, 4, seed=3).indices())


def test_resume_continues_exactly_where_it_stopped(train):
    reference = BatchLoader(train, batch_size=3, seed=9)
    total = 2 * reference.steps_per_epoch + 3  # crosses epoch boundaries
    expected = [next(reference) for _ in range(total)]
    for k in (0, 1, 7, reference.steps_per_epoch - 1, reference.steps_per_epoch, total - 2):
        first = BatchLoader(train, batch_size=3, seed=9)
        for _ in range(k):
            next(first)
        state = json.loads(json.dumps(first.state_dict()))  # survives serialisation
        resumed = BatchLoader(train, batch_size=3, seed=9)
        resumed.load_state_dict(state)
        got = list(itertools.islice(resumed, total - k))
        assert len(got) == total - k
        for (want_x, want_y), (x, y) in zip(expected[k:], got, strict=True):
            assert torch.equal(want_x, x) and torch.equal(want_y, y)


def test_rank_slices_are_disjoint_and_make_the_global_batch(train):
    world = 3
    single = BatchLoader(train, batch_size=6, seed=1)
    ranks = [BatchLoader(train, batch_size=6, seed=1, rank=r, world_size=world) for r in range(world)]
    for _ in range(2 * single.steps_per_epoch + 1):  # across epochs
        slices = [r.indices() for r in ranks]
        assert len(set(np.concatenate(slices).tolist())) == 6  # disjoint
        assert np.array_equal(np.concatenate(slices), single.indices())
        whole_x, whole_y = next(single)
        parts = [next(r) for r in ranks]
        assert all(p[0].shape == (2, 8) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), whole_x)
        assert torch.equal(torch.cat([p[1] for p in parts]), whole_y)


def test_loader_errors(train):
    with pytest.raises(LtmError, match="multiple of world_size"):
        BatchLoader(train, batch_size=5, seed=0, world_size=2)
    with pytest.raises(LtmError, match="larger than split"):
        BatchLoader(train, batch_size=len(train) + 1, seed=0)
    with pytest.raises(LtmError, match="rank 2"):
        BatchLoader(train, batch_size=4, seed=0, rank=2, world_size=2)
    state = BatchLoader(train, batch_size=4, seed=0).state_dict()
    with pytest.raises(LtmError, match="seed"):
        BatchLoader(train, batch_size=4, seed=1).load_state_dict(state)


def test_eval_batches_cover_rows_in_order(train):
    batches = list(iter_eval_batches(train, batch_size=5))
    assert [len(x) for x, _ in batches] == [5] * (len(train) // 5) + ([len(train) % 5] if len(train) % 5 else [])
    x_all = torch.cat([x for x, _ in batches])
    assert torch.equal(x_all, torch.from_numpy(np.concatenate(train.views)[:, :-1].astype(np.int64)))
    assert sum(len(x) for x, _ in iter_eval_batches(train, 4, max_rows=10)) == 10
    shares = [torch.cat([x for x, _ in iter_eval_batches(train, 4, rank=r, world_size=2)]) for r in range(2)]
    assert sum(len(s) for s in shares) == len(train)


def test_truncated_altered_or_missing_shards_are_refused(shards_dir, tmp_path):
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    victim = manifest["splits"]["train"]["shards"][1]["file"]
    for damage, expected in [("truncate", "truncated"), ("alter", "sha256"), ("delete", "missing")]:
        copy = tmp_path / damage
        shutil.copytree(shards_dir, copy)
        path = copy / victim
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            path.write_bytes(bytes(data[:-100]))
        elif damage == "alter":
            data[len(data) // 2] ^= 0xFF  # same size, different content
            path.write_bytes(bytes(data))
        else:
            path.unlink()
        with pytest.raises(LtmError) as err:
            TokenShards(copy, "train")
        assert expected in str(err.value) and victim in str(err.value) and "\n" not in str(err.value)
        TokenShards(copy, "val")  # the other split is unaffected
    with pytest.raises(LtmError, match="no split 'test'"):
        TokenShards(shards_dir, "test")
