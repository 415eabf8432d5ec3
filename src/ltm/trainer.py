"""The slow loop: dual-rate training of an LTM (or plain training of the AR baseline).

Per optimizer step and per micro-batch: the fast loop fits q(z|x) with the decoder frozen
(ltm.posterior), then the decoder takes the mean token cross-entropy at z = mu_T + sigma_T * eps
(detached). Gradients accumulate over micro-batches to the global batch, are clipped, and one AdamW
step follows. Everything that decides the next step lives in one checkpoint, and every source of
randomness is derived from (seed, step, rank, micro-batch), so a resumed run is bitwise identical
to an uninterrupted one on the same hardware.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from ltm import checkpoint, flops
from ltm.data.loader import BatchLoader, TokenShards, iter_eval_batches
from ltm.device import autocast_dtype, resolve_device
from ltm.distributed import barrier, init_distributed, mean_across, shutdown
from ltm.errors import LtmError
from ltm.families import family
from ltm.io import sha256_file
from ltm.optim import make_optimizer, make_scheduler
from ltm.posterior import eval_mode, kl_to_standard_normal
from ltm.progress import progress
from ltm.runs import RunSpec
from ltm.runtime import Runtime
from ltm.seeds import derive_seed
from ltm.tracking import Tracker, summary


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0
    log_rows: list = field(default_factory=list)


class Trainer:
    def __init__(self, spec: RunSpec, shards_dir: Path, run_dir: Path, runtime: Runtime, resume: str = "auto"):
        self.spec, self.run_dir, self.runtime = spec, Path(run_dir), runtime
        self.dist, self.device = init_distributed(resolve_device(runtime))
        self.autocast_dtype = autocast_dtype(runtime, self.device)
        self.train_data = TokenShards(shards_dir, "train")
        self.val_data = TokenShards(shards_dir, "val")
        manifest = self.train_data.manifest
        self.seq_len = manifest["seq_len"]
        self.family = family(spec.family)
        self.impl = self.family.impl
        self.model_cfg = self.impl.model_config(manifest["vocab_size"], self.seq_len, spec.model)
        self.run_hash = spec.hash(sha256_file(Path(shards_dir) / "manifest.json"))

        self.global_rows = spec.batch_rows(self.seq_len)
        if self.global_rows % self.dist.world_size:
            raise LtmError(f"the global batch ({self.global_rows} sequences) must divide evenly over "
                           f"{self.dist.world_size} ranks")
        self.rank_rows = self.global_rows // self.dist.world_size
        self.micro = runtime.micro_batch or self.rank_rows
        if self.rank_rows % self.micro:
            raise LtmError(f"runtime.micro_batch ({self.micro}) must divide the per-rank batch ({self.rank_rows})")
        self.total_steps = spec.total_steps(self.seq_len)

        torch.manual_seed(derive_seed(spec.seed, 0))
        self.model = self.impl.build(self.model_cfg, spec.diffusion).to(self.device)
        self.model.fused_loss = runtime.fused_loss
        if runtime.compile:
            self.model.compile()
        self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.dist.enabled else None
        self.opt = make_optimizer(self.model, spec.train, self.device)
        self.sched = make_scheduler(self.opt, self.total_steps, spec.train)
        self.loader = BatchLoader(self.train_data, self.global_rows, spec.seed, self.dist.rank, self.dist.world_size)
        self.state = TrainState()
        self.ckpt_dir = checkpoint.checkpoint_dir(self.run_dir, self.run_hash)
        self._stop_signal: int | None = None
        self._resume(resume)

        # C_train per token: the paper's accounting, (T + 1)(6P + 6LdS), used for all compute axes;
        # the latent-only inner loop really does less, recorded beside it.
        self.flops_formula, self.flops_latent_only = self.impl.train_flops(flops.flop_shape(self.model_cfg), spec)
        self.flops_measured: float | None = None
        self.peak = flops.peak_bf16_flops(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" \
            else None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"run_hash": self.run_hash, "step": self.state.step, "tokens": self.state.tokens,
                "log_rows": self.state.log_rows, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                # the fast optimizer starts fresh for every batch: at a step boundary it has no state
                "fast_optimizer": {}, "loader": self.loader.state_dict(), "rng": rng}

    def _resume(self, resume: str) -> None:
        path = checkpoint.find_resume(self.ckpt_dir, resume)
        if path is None:
            return
        state = checkpoint.load(path, self.run_hash, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        self.state = TrainState(state["step"], state["tokens"], list(state["log_rows"]))
        self._print(f"resumed from {path} at step {self.state.step}")

    def save(self) -> None:
        if self.dist.is_main:
            checkpoint.save(self.ckpt_dir, self.state_dict(), self.state.step, self.spec.train.keep_last)
        barrier(self.dist)

    def last_good(self) -> str:
        found = checkpoint.list_checkpoints(self.ckpt_dir)
        return str(found[-1]) if found else "none yet"

    # ---------------------------------------------------------------- math
    def autocast(self):
        if self.autocast_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def row_noise(self, stream: int, first_row: int, n: int) -> torch.Tensor:
        """Standard-normal draws (3, n, N_z, d) for the posterior init and eps, one seed per global row,
        so micro-batch size and world size (hardware knobs) never change the result."""
        shape = (3, self.model_cfg.n_latents, self.model_cfg.d_model)
        rows = [torch.randn(shape, generator=torch.Generator().manual_seed(
            derive_seed(self.spec.seed, stream, first_row + i))) for i in range(n)]
        return torch.stack(rows, dim=1).to(self.device, non_blocking=True)

    def train_step(self) -> dict:
        """One slow step. Returns the step's numbers still on the device (`log_row` reads them): the
        host waits for the device once per step, for the finiteness check that guards the update."""
        step, accum = self.state.step, self.rank_rows // self.micro
        x_all, y_all = (t.to(self.device, non_blocking=True) for t in next(self.loader))
        sums = torch.zeros(4, device=self.device)  # nll, kl, first-step nelbo, tokens
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for i in range(accum):
            x, y = x_all[i * self.micro:(i + 1) * self.micro], y_all[i * self.micro:(i + 1) * self.micro]
            first_row = self.dist.rank * self.rank_rows + i * self.micro  # position in the global batch
            sync = self.ddp is None or i == accum - 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self.autocast():
                # LTM: the fast loop fits q(z|x) first, the loss is the decoder's at that z (families.ltm)
                loss, post = self.impl.train_loss(self, self.ddp or self.model, x, y, step, first_row)
            finite &= torch.isfinite(loss.detach())
            (loss / accum).backward()
            n = y.numel()
            sums[0] += loss.detach() * n
            sums[3] += n
            if post is not None:
                sums[1] += kl_to_standard_normal(post.mu, post.logvar).sum()
                sums[2] += post.nelbo_trace[0] if len(post.nelbo_trace) else loss.detach() * n
        clip = self.spec.train.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        if not bool(finite & torch.isfinite(norm)):  # the one host sync of a step
            what = "loss" if not bool(finite) else "gradient norm"
            raise LtmError(f"non-finite {what} at step {step}: stopped before the optimizer step; "
                           f"last good checkpoint: {self.last_good()}")
        lr = self.sched.get_last_lr()[0]
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return {"sums": sums, "grad_norm": norm, "lr": lr}

    def log_row(self, stats: dict) -> dict:
        """A step's numbers as plain floats (a device sync and, under DDP, an all-reduce: log steps only)."""
        sums = mean_across(stats["sums"], self.dist)
        tok = sums[3].item()
        row = {"loss": sums[0].item() / tok, "lr": stats["lr"], "grad_norm": stats["grad_norm"].item()}
        if self.family.has_latents:
            post_cfg = self.spec.posterior
            row.update(nll=row["loss"], kl=sums[1].item() / tok, nelbo_first=sums[2].item() / tok,
                       nelbo_last=(sums[0] + sums[1]).item() / tok,
                       fast_lr_max=post_cfg.lr_max, fast_lr_min=post_cfg.lr_min)  # the inner cosine
        return row

    def validate(self) -> float:
        """Per-token validation loss: exact NLL for AR; for an LTM the NELBO bound after T inner steps
        (same T as training, fixed seeds, optimisation noise); for diffusion its NELBO bound with a few
        draws; on the first eval_batches global batches of the val split."""
        total = torch.zeros(2, device=self.device)
        rows = self.spec.train.eval_batches * self.global_rows  # independent of micro-batch and ranks
        batches = iter_eval_batches(self.val_data, self.micro, rows, self.dist.rank, self.dist.world_size)
        with eval_mode(self.model):
            for j, (x, y) in enumerate(batches):
                x, y = x.to(self.device), y.to(self.device)
                global_batch = j * self.dist.world_size + self.dist.rank
                total[0] += self.impl.val_loss(self, x, y, global_batch).to(total.dtype)
                total[1] += y.numel()
        total = mean_across(total, self.dist)
        return (total[0] / total[1]).item()

    # ---------------------------------------------------------------- loop
    def _print(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)

    def _on_signal(self, signum, _frame) -> None:
        self._stop_signal = signum

    def fit(self) -> dict:
        tcfg, spec = self.spec.train, self.spec
        tb_dir = self.run_dir / "tb"
        if self.dist.is_main and self.state.step == 0:  # one run, one history: a fresh start drops the old one
            shutil.rmtree(tb_dir, ignore_errors=True)
        tracker = Tracker(tb_dir if self.dist.is_main else None, self.state.log_rows)
        previous = signal.signal(signal.SIGTERM, self._on_signal)
        self.model.train()
        if self.dist.is_main:
            # one real training step on one sequence, counted by FlopCounterMode
            self.flops_measured = flops.measure_flops_per_token(self.impl.flops_model(self.model), self.spec.posterior)
        tokens_per_step = self.global_rows * self.seq_len
        bar = progress(total=self.total_steps, initial=self.state.step, disable=not self.dist.is_main,
                       desc=f"train {spec.name}", unit="step")
        started, tokens0, val = time.time(), self.state.tokens, None
        if self.state.step == 0:
            val = self.validate()
            tracker.log({"step": 0, "tokens": 0, "flops": 0, "loss": None, "val_loss": val, "lr": 0.0,
                         "grad_norm": 0.0, "tokens_per_s": 0.0})
        try:
            while self.state.step < self.total_steps:
                stats = self.train_step()
                self.state.step += 1
                self.state.tokens += tokens_per_step
                bar.update(1)
                step = self.state.step
                last = step == self.total_steps
                if step % tcfg.log_every == 0 or step % tcfg.eval_every == 0 or last:
                    row = self.log_row(stats)
                    rate = (self.state.tokens - tokens0) / max(1e-9, time.time() - started)
                    row.update(step=step, tokens=self.state.tokens, flops=self.state.tokens * self.flops_formula,
                               tokens_per_s=rate)
                    if step % tcfg.eval_every == 0 or last:
                        row["val_loss"] = val = self.validate()
                    tracker.log(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                    if step % tcfg.log_every == 0 or last:
                        self._print(summary(row, self.total_steps))
                self.state.log_rows = tracker.rows
                if step % tcfg.save_every == 0 or last or self._stop_signal is not None:
                    self.save()
                if self._stop_signal is not None and not last:
                    self._print(f"signal {self._stop_signal}: saved a checkpoint at step {step}; rerun to resume")
                    raise SystemExit(128 + self._stop_signal)
        finally:
            bar.close()
            tracker.close()
            signal.signal(signal.SIGTERM, previous)
        elapsed = time.time() - started
        rate = (self.state.tokens - tokens0) / elapsed if self.state.tokens > tokens0 else None
        final = self.state.log_rows[-1] if self.state.log_rows else {}
        if val is None:
            val = final.get("val_loss")
        return {
            "run": spec.name, "family": spec.family, "run_hash": self.run_hash,
            "steps": self.state.step, "tokens": self.state.tokens,
            "params": sum(p.numel() for p in self.model.parameters()),
            "n_latents": self.model_cfg.n_latents, "inner_steps": spec.inner_steps,
            "train_loss": final.get("loss"), "val_loss": val,
            "val_loss_kind": self.family.val_loss_kind,
            "flops_per_token_formula": self.flops_formula, "flops_per_token_latent_only": self.flops_latent_only,
            "flops_per_token_measured": self.flops_measured,
            "train_flops": self.state.tokens * self.flops_formula,
            "device": str(self.device), "world_size": self.dist.world_size,
            "autocast": None if self.autocast_dtype is None else str(self.autocast_dtype).removeprefix("torch."),
            "fused_loss": self.model.fused_loss,
            # measured speed differs on every run: the train stage keeps it apart (metrics.run.json)
            # MFU two ways: the paper's formula, and the FLOPs a counted step really executes (latent-only
            # inner loop, cross-attention keys/values on the latents), both over the part's dense bf16 peak
            "timing": {"seconds": elapsed, "tokens_per_s": rate,
                       "mfu_paper_formula": rate * self.flops_formula / self.peak if rate and self.peak else None,
                       "mfu_executed": rate * self.flops_measured / self.peak
                       if rate and self.peak and self.flops_measured else None},
        }

    def close(self) -> None:
        shutdown(self.dist)
