"""Shared fixtures: a tiny params file and tiny data artifacts built once per test session."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Small enough that a training run takes seconds on 2 CPU cores.
TINY = {
    "data": {"corpus": {"synthetic": {"documents": 300, "words": 64, "words_per_doc": 30}},
             "tokenizer": {"vocab_size": 512}, "shards": {"seq_len": 32, "rows_per_shard": 2048}},
    "models": {
        "ltm-tiny": {"family": "ltm", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_latents": 4, "window": 16},
        "ar-tiny": {"family": "ar", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_latents": 0, "window": 16},
        "mdlm-tiny": {"family": "diffusion", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_latents": 0, "window": 64},
    },
    "posterior": {"inner_steps": 3},
    "train": {"batch_tokens": 512, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 3, "log_every": 5,
              "eval_every": 10, "eval_batches": 2, "save_every": 5, "keep_last": 2},
    "runs": {"ltm-tiny": {"model": "ltm-tiny", "tokens": 512 * 20}, "ar-tiny": {"model": "ar-tiny", "tokens": 512 * 20},
             "mdlm-tiny": {"model": "mdlm-tiny", "tokens": 512 * 20}},
    "eval": {"max_rows": 32, "batch_size": 16, "samples": 4, "t_curve": [0, 1, 3], "t_curve_max_rows": 16},
    "fewshot": {"problems": 20, "k": [0, 1], "n": 5},
    "generation": {"judge": "ar-tiny", "samples": 4, "prompt_tokens": 8, "max_new_tokens": 16, "diffusion_steps": 4},
    "demo": {"tokens": 512 * 4, "t_eval": [3]},
    "runtime": {"threads": 1},
}


# The longest files first: under `pytest -n 2 --dist loadfile` a worker takes whole files in collection
# order, so a long file collected last (test_pipeline.py, ~4.5 min) kept one worker busy while the other
# sat idle at the end.
LONGEST_FIRST = ("test_pipeline.py", "test_cluster_slurm.py", "test_pipeline_snakemake.py", "test_faults.py",
                 "test_scaling_coverage.py", "test_pipeline_table.py", "test_scaling_external.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("models", "runs"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_params(folder: Path, overrides: dict | None = None, tiny: bool = True) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if tiny:
        params = merge(params, TINY)
    params = merge(params, overrides or {})
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder with params.yaml and data/{corpus,tokenizer,shards} built from the builtin corpus."""
    from ltm.stages.corpus import corpus
    from ltm.stages.shards import shards
    from ltm.stages.tokenizer import tokenizer

    root = tmp_path_factory.mktemp("tiny")
    params = str(write_params(root))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        corpus(params, "data/corpus")
        tokenizer(params, "data/corpus", "data/tokenizer")
        shards(params, "data/corpus", "data/tokenizer", "data/shards")
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second torch thread; on a shared 2-core machine it only contends."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def flip_a_digit(path: Path) -> None:
    """Change one digit in the last two thirds of a text file: still valid JSON/TSV, one number different,
    what only a content hash catches."""
    text = path.read_text()
    i = next(i for i, ch in enumerate(text) if ch in "123456789" and i > len(text) // 3)
    path.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
