"""The interface every family module implements (checked for each registered family by a test).

    model_config(vocab_size, seq_len, preset) -> ModelConfig
    build(model_cfg, process) -> nn.Module          process: the family's typed process settings or None
    train_loss(trainer, net, x, y, step, first_row) -> (mean loss over tokens, posterior or None)
    val_loss(trainer, x, y, global_batch) -> summed per-token loss of the batch (the trainer's validation)
    train_flops(shape, spec) -> (paper-formula FLOPs per token, FLOPs actually executed per token)
    flops_model(model) -> the decoder whose matmuls a FLOP counter should see
    score_split(model, shards, ecfg, post_cfg, *, token_bytes, rows_per_pass, desc, cache) -> eval split record
    t_curve(model, shards, ecfg, post_cfg, splits, *, token_bytes, rows_per_pass, desc, cache) -> curve rows
        cache: an evaluate.ScoreCache the stage shares between the two (families without a fit ignore it)
    sample(model, prompts, max_new, post_cfg, how: generate.Sampling, generator, eos_id) -> (ids, a record of how)
    summary(run, split, record) -> one line for the terminal
"""
from __future__ import annotations


def flat_curve(ecfg, splits: dict, key: str, column: str, value: str) -> list[dict]:
    """A family without inference steps scores the same at every T_eval: its first split's number."""
    number = splits[ecfg.splits[0]][key][value]
    return [{"T_eval": t, column: number} for t in ecfg.t_curve]
