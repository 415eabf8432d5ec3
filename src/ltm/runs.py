"""A training run: a params `runs:` entry resolved against its model preset, posterior and train settings."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ltm.config import FromParams, params_hash, subset
from ltm.diffusion import DiffusionConfig
from ltm.errors import LtmError
from ltm.families import family
from ltm.fast_loop import PosteriorConfig
from ltm.grid import run_entry, train_sections


@dataclass(frozen=True)
class TrainConfig(FromParams):
    """The `train:` params section (validated there): the slow loop."""
    batch_tokens: int  # global batch in tokens
    lr: float
    min_lr: float
    warmup_steps: int
    betas: tuple[float, float]
    weight_decay: float  # matrices only
    grad_clip: float  # 0 = no clipping
    seed: int
    log_every: int
    eval_every: int
    eval_batches: int
    save_every: int
    keep_last: int
    val_diffusion_samples: int  # draws of the diffusion bound per validation batch


@dataclass(frozen=True)
class RunSpec:
    name: str
    family: str                      # a registered model family (ltm.families)
    model: dict                      # preset fields (d_model, n_layers, n_heads, n_latents, window)
    posterior: PosteriorConfig | None  # the fast loop, inner_steps override applied (LTM only)
    train: TrainConfig
    diffusion: DiffusionConfig | None  # the forward process (diffusion only)
    tokens: int                      # training budget in tokens
    seed: int
    params: dict = field(repr=False)  # the params subset this run depends on (hashed for resume checks)

    @property
    def inner_steps(self) -> int:
        return self.posterior.steps if self.posterior is not None else 0

    def batch_rows(self, seq_len: int) -> int:
        rows, rest = divmod(self.train.batch_tokens, seq_len)
        if rows < 1 or rest:
            raise LtmError(f"train.batch_tokens ({self.train.batch_tokens}) must be a positive multiple "
                           f"of data.shards.seq_len ({seq_len})")
        return rows

    def total_steps(self, seq_len: int) -> int:
        return math.ceil(self.tokens / (self.batch_rows(seq_len) * seq_len))

    def hash(self, data_sha256: str) -> str:
        """Identity of the run's result: its params and the exact training data."""
        return params_hash({"params": self.params, "data": data_sha256})


PROCESSES = {"posterior": PosteriorConfig, "diffusion": DiffusionConfig}  # params section -> typed settings


def resolve_run(params: dict, name: str) -> RunSpec:
    run = run_entry(params, name)
    if run["tokens"] < 1:  # a sweep-point name given on the command line bypasses the schema
        raise LtmError(f"run {name}: tokens must be >= 1")
    preset = dict(params["models"][run["model"]])
    fam = family(preset.pop("family"))
    if "n_latents" in run:
        preset["n_latents"] = run["n_latents"]
    if fam.has_latents and preset["n_latents"] < 1:
        raise LtmError(f"run {name}: an {fam.name} model needs n_latents >= 1")
    if not fam.has_latents and (preset["n_latents"] or "inner_steps" in run):
        raise LtmError(f"run {name}: a {fam.name} model takes no latents and no inner_steps")
    process = None
    if fam.process:  # the family's own process section, a run's inner_steps applied (an LTM's T)
        section = dict(params[fam.process])
        if fam.has_latents and "inner_steps" in run:
            section["inner_steps"] = run["inner_steps"]
        process = PROCESSES[fam.process].from_params(section)
    return RunSpec(name=name, family=fam.name, model=preset, posterior=process if fam.has_latents else None,
                   train=TrainConfig.from_params(params["train"]), diffusion=None if fam.has_latents else process,
                   tokens=run["tokens"], seed=run.get("seed", params["train"]["seed"]),
                   params={**subset(params, train_sections(params, name)), "run": run})


def describe(spec: RunSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k != "params"}
