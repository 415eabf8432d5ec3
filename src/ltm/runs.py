"""A training run: a params `runs:` entry resolved against its model preset, posterior and train settings."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ltm.config import params_hash, subset
from ltm.errors import LtmError
from ltm.model import ModelConfig
from ltm.posterior import PosteriorConfig


@dataclass(frozen=True)
class RunSpec:
    name: str
    family: str                      # "ltm" | "ar"
    model: dict                      # preset fields (d_model, n_layers, n_heads, n_latents, window)
    posterior: dict                  # effective posterior settings (inner_steps override applied)
    train: dict
    tokens: int                      # training budget in tokens
    seed: int
    params: dict = field(repr=False)  # the params subset this run depends on (hashed for resume checks)

    @property
    def is_ltm(self) -> bool:
        return self.family == "ltm"

    @property
    def inner_steps(self) -> int:
        return self.posterior["steps"] if self.is_ltm else 0

    def model_config(self, vocab_size: int, seq_len: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, seq_len=seq_len, **self.model)

    def posterior_config(self) -> PosteriorConfig:
        cfg = dict(self.posterior)
        cfg["betas"] = tuple(cfg["betas"])
        return PosteriorConfig(**cfg)

    def batch_rows(self, seq_len: int) -> int:
        rows, rest = divmod(self.train["batch_tokens"], seq_len)
        if rows < 1 or rest:
            raise LtmError(f"train.batch_tokens ({self.train['batch_tokens']}) must be a positive multiple "
                           f"of data.shards.seq_len ({seq_len})")
        return rows

    def total_steps(self, seq_len: int) -> int:
        return math.ceil(self.tokens / (self.batch_rows(seq_len) * seq_len))

    def hash(self, data_sha256: str) -> str:
        """Identity of the run's result: its params and the exact training data."""
        return params_hash({"params": self.params, "data": data_sha256})


def resolve_run(params: dict, name: str) -> RunSpec:
    from ltm.stages import stage_params

    runs = params["runs"]
    if name not in runs:
        raise LtmError(f"unknown run {name!r}; params runs: {', '.join(sorted(runs))}")
    run = runs[name]
    preset = dict(params["models"][run["model"]])
    family = preset.pop("family")
    if "n_latents" in run:
        preset["n_latents"] = run["n_latents"]
    if family == "ltm" and preset["n_latents"] < 1:
        raise LtmError(f"run {name}: an ltm model needs n_latents >= 1")
    if family == "ar" and (preset["n_latents"] or "inner_steps" in run):
        raise LtmError(f"run {name}: an ar model takes no latents and no inner_steps")
    posterior = dict(params["posterior"])
    if "inner_steps" in run:
        posterior["steps"] = run["inner_steps"]
    return RunSpec(name=name, family=family, model=preset, posterior=posterior, train=dict(params["train"]),
                   tokens=run["tokens"], seed=run.get("seed", params["train"]["seed"]),
                   params=subset(params, stage_params("train", params, name)))


def describe(spec: RunSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k != "params"}
