"""A training run: a params `runs:` entry resolved against its model preset, posterior and train settings."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from ltm.config import params_hash, subset
from ltm.errors import LtmError
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


# A sweep point is named by its grid values, so the name alone says what it is and adding a point
# never renames (or reruns) another: MODEL-D<tokens> for AR, MODEL-D<tokens>-T<T>-Z<N_z> for LTM.
SWEEP_NAME = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]*?)-D(?P<tokens>[0-9]+)(?:-T(?P<T>[0-9]+)-Z(?P<nz>[0-9]+))?$")


def sweep_name(model: str, tokens: int, inner_steps: int | None = None, n_latents: int | None = None) -> str:
    return f"{model}-D{tokens}" + (f"-T{inner_steps}-Z{n_latents}" if inner_steps is not None else "")


def sweep_points(params: dict) -> dict[str, dict]:
    """Every grid point of params `sweep:` as a run entry, keyed by its name."""
    sweep, points = params.get("sweep", {}), {}
    for family in ("ar", "diffusion"):
        for model in sweep.get(family, {}).get("models", []):
            for tokens in sweep[family]["tokens"]:
                points[sweep_name(model, tokens)] = {"model": model, "tokens": tokens}
    grid = sweep.get("ltm", {})
    for model in grid.get("models", []):
        for tokens in grid["tokens"]:
            for T in grid["inner_steps"]:
                for nz in grid["n_latents"]:
                    points[sweep_name(model, tokens, T, nz)] = {"model": model, "tokens": tokens,
                                                                "inner_steps": T, "n_latents": nz}
    return points


def all_runs(params: dict) -> dict[str, dict]:
    """The named runs of `runs:` followed by the sweep points."""
    points = sweep_points(params)
    clash = sorted(set(points) & set(params["runs"]))
    if clash:
        raise LtmError(f"run name {clash[0]!r} is both in runs: and a sweep point")
    return {**params["runs"], **points}


def run_entry(params: dict, name: str) -> dict:
    """A `runs:` entry, or the entry a sweep-point name encodes."""
    if name in params["runs"]:
        return params["runs"][name]
    m = SWEEP_NAME.match(name)
    if not m or m["model"] not in params["models"]:
        raise LtmError(f"unknown run {name!r}: not in params runs: ({', '.join(sorted(params['runs']))}) "
                       "and not a sweep-point name MODEL-D<tokens>[-T<T>-Z<N_z>]")
    entry = {"model": m["model"], "tokens": int(m["tokens"])}
    if m["T"] is not None:
        entry.update(inner_steps=int(m["T"]), n_latents=int(m["nz"]))
    return entry


def resolve_run(params: dict, name: str) -> RunSpec:
    from ltm.stages import stage_params

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
                   params={**subset(params, stage_params("train", params, name)), "run": run})


def describe(spec: RunSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k != "params"}
