"""The exported model folder (config.json + weights-only model.pt): written once when training ends, read
by every later stage. Each reader checks the weights against the sha256 in config.json and the config
against its lineage record, and refuses data made with another tokenizer or longer blocks."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ltm import lineage
from ltm.checkpoint import torch_load_problem
from ltm.data.loader import TokenShards
from ltm.diffusion import DiffusionConfig
from ltm.errors import LtmError
from ltm.families import family
from ltm.fast_loop import PosteriorConfig
from ltm.io import atomic_dir, read_json, sha256_file, write_json
from ltm.model import ModelConfig


def export_model(trainer, out: Path) -> None:
    """The small final artifact: fp32 weights and the config needed to rebuild the model."""
    with atomic_dir(out, owner="train") as tmp:
        state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
        torch.save(state, tmp / "model.pt")
        write_json(tmp / "config.json", {
            "weights_sha256": sha256_file(tmp / "model.pt"),  # checked by every reader (load_model)
            "run": trainer.spec.name, "family": trainer.spec.family, "run_hash": trainer.run_hash,
            "model": {**trainer.model_cfg.__dict__}, "posterior": _settings(trainer.spec.posterior),
            "diffusion": _settings(trainer.spec.diffusion),
            "train": asdict(trainer.spec.train), "tokens": trainer.state.tokens, "steps": trainer.state.step,
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "flops_per_token": trainer.flops_formula, "train_flops": trainer.state.tokens * trainer.flops_formula,
            "tokenizer_sha256": trainer.train_data.manifest.get("tokenizer_sha256"),
        })


def load_model(model_dir: Path, device: torch.device = torch.device("cpu")) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its exported folder (config.json + weights-only model.pt)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file() or not (model_dir / "model.pt").is_file():
        raise LtmError(f"{model_dir} is not a trained model folder (needs config.json and model.pt)")
    try:
        config = read_json(model_dir / "config.json")
    except (ValueError, UnicodeDecodeError):
        raise LtmError(f"{model_dir / 'config.json'} is not valid JSON; retrain the run (ltm train)") from None
    lineage.check_file(model_dir / "config.json")
    expected = config.get("weights_sha256")
    if expected and sha256_file(model_dir / "model.pt") != expected:
        raise LtmError(f"{model_dir / 'model.pt'} does not match the sha256 in its config.json: the weights were "
                       "altered or truncated; retrain the run (ltm train) or restore it (dvc checkout)")
    process = DiffusionConfig(**config["diffusion"]) if config.get("diffusion") else None
    model = family(config["family"]).impl.build(ModelConfig(**config["model"]), process)
    try:
        state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated archive, not a torch file, a pickle with code in it
        raise LtmError(f"{model_dir / 'model.pt'} {torch_load_problem(exc)}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise LtmError(f"{model_dir / 'model.pt'} does not match its config.json ({first[:160]})") from None
    return model.to(device).eval(), config


def fast_loop(config: dict) -> PosteriorConfig | None:
    """The fast-loop settings a model was trained with (None: a family without latents), for scoring
    and generation: never accumulating decoder gradients."""
    if not config.get("posterior"):
        return None
    return PosteriorConfig(**{**config["posterior"], "betas": tuple(config["posterior"]["betas"]),
                              "decoder_grads": False})


def _settings(cfg) -> dict | None:
    return asdict(cfg) if cfg is not None else None


def check_compatible(config: dict, shards: TokenShards) -> None:
    """A model only scores data made with its own tokenizer and at most its context length."""
    manifest = shards.manifest
    vocab = config["model"]["vocab_size"] - family(config["family"]).extra_tokens
    if vocab != manifest["vocab_size"]:
        raise LtmError(f"model vocabulary ({vocab}) differs from the data's "
                       f"({manifest['vocab_size']}): it was trained on other data")
    if config.get("tokenizer_sha256") and config["tokenizer_sha256"] != manifest.get("tokenizer_sha256"):
        raise LtmError("model and data were made with different tokenizers (tokenizer sha256 differs)")
    if manifest["seq_len"] > config["model"]["seq_len"]:
        raise LtmError(f"data blocks of {manifest['seq_len']} tokens exceed the model context "
                       f"({config['model']['seq_len']})")
