"""Evaluate the masked-diffusion baseline on a split: its NELBO bound, token-weighted, with bits per byte."""
from __future__ import annotations

import numpy as np
import torch

from ltm.bounds import bits_per_byte
from ltm.data.loader import TokenShards, iter_eval_batches
from ltm.diffusion import MaskedDiffusionLM, diffusion_eval_flops_per_token, nelbo_bound
from ltm.errors import LtmError
from ltm.eval_bytes import target_bytes
from ltm.flops import flop_shape
from ltm.seeds import derive_seed


def evaluate_diffusion_split(model: MaskedDiffusionLM, shards: TokenShards, ecfg, samples: int,
                             token_bytes: np.ndarray) -> dict:
    """The continuous-time NELBO (a perplexity upper bound in expectation), `samples` stratified
    Monte-Carlo draws per sequence; the same block of rows as the other families score.

    The diffusion model scores a whole block x = row[:-1] (it is not autoregressive); its tokens and
    bytes are those of x, which cover the same text as the AR targets up to one token at each end.
    """
    device = next(model.parameters()).device
    total = n_tok = n_bytes = 0.0
    n_seq = 0
    for j, (x, _y) in enumerate(iter_eval_batches(shards, ecfg.batch_size, ecfg.max_rows or None)):
        x = x.to(device)
        gen = torch.Generator(device).manual_seed(derive_seed(ecfg.seed, j))
        with torch.no_grad():
            total += float(nelbo_bound(model, x, samples, gen).sum())
        n_tok += x.numel()
        n_bytes += target_bytes(x, token_bytes)
        n_seq += len(x)
    if n_seq == 0:
        raise LtmError(f"split {shards.split!r} has no rows to evaluate")
    per = total / n_tok
    return {
        "split": shards.split, "family": "diffusion",
        "protocol": {"T_eval": 0, "K": None, "diffusion_samples": samples, "estimator": "mask-count stratified",
                     "seed": ecfg.seed, "batch_size": ecfg.batch_size, "block_length": shards.seq_len,
                     "max_rows": ecfg.max_rows, "sequences": n_seq, "tokens": int(n_tok), "bytes": n_bytes,
                     "bytes_method": "tokenizer",
                     "flops_per_token": diffusion_eval_flops_per_token(*flop_shape(model.decoder.cfg), n_samples=samples)},
        "dataset": {"split_rows": len(shards), "tokenizer_sha256": shards.manifest.get("tokenizer_sha256")},
        "diffusion_bound": {"nelbo": per, "ppl": float(np.exp(per)), "bpb": bits_per_byte(total, n_bytes)},
    }
