"""Training throughput and MFU of LTM-M (paper config) on one GPU: bf16, eager vs torch.compile.

Usage (device run, < 5 min):  python bench/gpu_train_throughput.py
CPU smoke test of the script:  python bench/gpu_train_throughput.py --tiny
One training step = T inner latent-only steps + the slow step, on random tokens; tokens/s counts the
sequence tokens of the batch; MFU = tokens/s x the paper's (T + 1)(6P + 6LdS) / dense bf16 peak.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from defaults import fast_loop

from ltm.flops import flop_shape, train_flops_per_token
from ltm.model import Decoder, ModelConfig
from ltm.posterior import fit_posterior
from ltm.trainer import peak_flops


def run(cfg: ModelConfig, T: int, batch: int, steps: int, compile_model: bool, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = Decoder(cfg).to(device)
    if compile_model:
        model.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    pcfg = fast_loop(steps=T)
    x, y = torch.randint(0, cfg.vocab_size, (2, batch, cfg.seq_len), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with amp:
            z = fit_posterior(model, x, y, pcfg, score=False).z
            loss = F.cross_entropy(model(x, z).flatten(0, 1).float(), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (and compilation)
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    tok_s = batch * cfg.seq_len / dt
    fpt = train_flops_per_token(*flop_shape(cfg), steps=T)
    peak = peak_flops(device)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"compile": compile_model, "step_s": dt, "tokens_per_s": tok_s,
            "mfu": tok_s * fpt / peak if peak else float("nan"), "mem_gib": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny config (CPU smoke test)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--T", type=int, default=16)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        cfg = ModelConfig(vocab_size=512, seq_len=64, d_model=64, n_layers=2, n_heads=4, n_latents=8, window=32)
        args.batch, args.steps, args.T = 2, 2, 2
    else:  # LTM-M of the paper
        cfg = ModelConfig(vocab_size=50258, seq_len=1024, d_model=512, n_layers=6, n_heads=8, n_latents=24, window=256)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "cpu"
    print(f"device: {name}; model: d={cfg.d_model} L={cfg.n_layers} N_z={cfg.n_latents} S={cfg.seq_len} "
          f"V={cfg.vocab_size}; T={args.T}; batch={args.batch}")
    print(f"{'compile':>8} {'step s':>8} {'tokens/s':>10} {'MFU':>6} {'mem GiB':>8}")
    for compiled in (False, True) if device.type == "cuda" or args.tiny else (False,):
        r = run(cfg, args.T, args.batch, args.steps, compiled, device)
        print(f"{str(r['compile']):>8} {r['step_s']:8.3f} {r['tokens_per_s']:10.0f} {r['mfu']:6.3f} {r['mem_gib']:8.2f}")


if __name__ == "__main__":
    main()
