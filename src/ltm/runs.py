"""A training run: a params `runs:` entry resolved against its model preset, posterior and train settings."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ltm.config import params_hash, subset
from ltm.errors import LtmError
from ltm.grid import run_entry, train_sections
from ltm.model import ModelConfig
from ltm.posterior import PosteriorConfig


@dataclass(frozen=True)
class RunSpec:
    name: str
    family: str                      # "ltm" | "ar" | "diffusion"
    model: dict                      # preset fields (d_model, n_layers, n_heads, n_latents, window)
    posterior: dict                  # effective posterior settings (inner_steps override applied)
    train: dict
    diffusion: dict                  # the forward process (diffusion family only, else empty)
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
        if self.family == "diffusion":
            from ltm.diffusion import denoiser_config

            return denoiser_config(vocab_size, seq_len, **self.model)
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
    run = run_entry(params, name)
    if run["tokens"] < 1:
        raise LtmError(f"run {name}: tokens must be >= 1")
    preset = dict(params["models"][run["model"]])
    family = preset.pop("family")
    if "n_latents" in run:
        preset["n_latents"] = run["n_latents"]
    if family == "ltm" and preset["n_latents"] < 1:
        raise LtmError(f"run {name}: an ltm model needs n_latents >= 1")
    if family != "ltm" and (preset["n_latents"] or "inner_steps" in run):
        raise LtmError(f"run {name}: a {family} model takes no latents and no inner_steps")
    posterior = dict(params["posterior"])
    if "inner_steps" in run:
        posterior["steps"] = run["inner_steps"]
    diffusion = dict(params["diffusion"]) if family == "diffusion" else {}
    return RunSpec(name=name, family=family, model=preset, posterior=posterior, train=dict(params["train"]),
                   diffusion=diffusion,
                   tokens=run["tokens"], seed=run.get("seed", params["train"]["seed"]),
                   params={**subset(params, train_sections(params, name)), "run": run})


def describe(spec: RunSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k != "params"}
