"""Evaluate stage: a trained run's final model -> bounds on every eval split and a T_eval curve."""
from __future__ import annotations

from pathlib import Path

import torch

from ltm import lineage
from ltm.config import load_params, subset
from ltm.data.loader import TokenShards
from ltm.diffusion import DiffusionConfig, MaskedDiffusionLM
from ltm.errors import LtmError
from ltm.eval_diffusion import evaluate_diffusion_split
from ltm.eval_bytes import load_token_byte_lengths
from ltm.evaluate import EvalConfig, evaluate_split, t_eval_curve
from ltm.checkpoint import torch_load_problem
from ltm.io import read_json, sha256_file, write_json
from ltm.model import Decoder, ModelConfig
from ltm.posterior import PosteriorConfig
from ltm.runtime import configure_threads, resolve_device
from ltm.stages import stage_params
from ltm.tracking import write_rows_tsv


def load_model(model_dir: Path, device: torch.device = torch.device("cpu")) -> tuple[Decoder, dict]:
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
    if config["family"] == "diffusion":
        model = MaskedDiffusionLM(ModelConfig(**config["model"]), DiffusionConfig(**config["diffusion"]))
    else:
        model = Decoder(ModelConfig(**config["model"]))
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


def check_compatible(config: dict, shards: TokenShards) -> None:
    """A model only scores data made with its own tokenizer and at most its context length."""
    manifest = shards.manifest
    vocab = config["model"]["vocab_size"] - (1 if config["family"] == "diffusion" else 0)  # minus [MASK]
    if vocab != manifest["vocab_size"]:
        raise LtmError(f"model vocabulary ({vocab}) differs from the data's "
                       f"({manifest['vocab_size']}): it was trained on other data")
    if config.get("tokenizer_sha256") and config["tokenizer_sha256"] != manifest.get("tokenizer_sha256"):
        raise LtmError("model and data were made with different tokenizers (tokenizer sha256 differs)")
    if manifest["seq_len"] > config["model"]["seq_len"]:
        raise LtmError(f"data blocks of {manifest['seq_len']} tokens exceed the model context "
                       f"({config['model']['seq_len']})")


def evaluate(params_path: str, run: str, model_dir: str, shards_dir: str, tokenizer_dir: str, out: str) -> dict:
    params = load_params(params_path)
    configure_threads(params["runtime"])
    ecfg = EvalConfig.from_dict(params["eval"])
    started = lineage.now()
    device = resolve_device(params["runtime"])
    model, config = load_model(Path(model_dir), device)
    is_ltm = config["family"] == "ltm"
    post = dict(config["posterior"], betas=tuple(config["posterior"]["betas"]), decoder_grads=False)
    post_cfg = PosteriorConfig(**post) if is_ltm else None
    token_bytes = load_token_byte_lengths(Path(tokenizer_dir))
    micro = params["runtime"].get("micro_batch") or None

    splits = {}
    for split in ecfg.splits:
        shards = TokenShards(Path(shards_dir), split)
        check_compatible(config, shards)
        if config["family"] == "diffusion":
            splits[split] = evaluate_diffusion_split(model, shards, ecfg, ecfg.diffusion_samples, token_bytes)
        else:
            splits[split] = evaluate_split(model, shards, ecfg, post_cfg=post_cfg, token_bytes=token_bytes,
                                           rows_per_pass=micro, desc=f"evaluate {run} {split}")
    if is_ltm:
        curve = t_eval_curve(model, TokenShards(Path(shards_dir), "val"), None, ecfg, post_cfg=post_cfg,
                             token_bytes=token_bytes, rows_per_pass=micro, desc=f"evaluate {run} curve")
    else:  # no inference steps: the AR / diffusion number is the same at every T_eval
        key, name = ("diffusion_bound", "diffusion_nelbo") if config["family"] == "diffusion" else ("exact", "exact_nll")
        curve = [{"T_eval": t, name: splits[ecfg.splits[0]][key]["nelbo" if key != "exact" else "nll"]}
                 for t in ecfg.t_curve]
    for row in curve:  # one column every family has, for `dvc plots`: the honest headline bound
        row["bound"] = row.get("iwae_nelbo", row.get("exact_nll", row.get("diffusion_nelbo")))
    metrics = {"run": run, "family": config["family"], "T_train": config["posterior"]["steps"] if is_ltm else 0,
               "n_latents": config["model"]["n_latents"], "tokens": config["tokens"],
               "params": config.get("params"), "train_flops": config.get("train_flops"), "splits": splits}
    out_dir = Path(out)
    write_json(out_dir / "metrics.json", metrics)
    write_rows_tsv(out_dir / "t_curve.tsv", curve)
    lineage.write_record(out_dir / "metrics.json", stage="evaluate", params=subset(params, stage_params("evaluate", params)),
                         inputs={"model": model_dir, "shards": shards_dir, "tokenizer": tokenizer_dir},
                         started=started, record=out_dir / "lineage.json",
                         files=[out_dir / "metrics.json", out_dir / "t_curve.tsv"])
    return metrics
