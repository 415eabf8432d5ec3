"""Training throughput and MFU of LTM-M (paper config) on one GPU: bf16, eager vs torch.compile, each with
and without runtime.fused_loss (the fast loop's output layer + loss in one pass: at V 50,258 its
log-softmax passes are a larger share of a step than in the CPU bench's V 4096).

Usage (device run, < 5 min):  python bench/gpu_train_throughput.py [--steps 20] [--peak-tflops X]
CPU smoke test of the script:  python bench/gpu_train_throughput.py --tiny

One training step = T latent-only inner steps + the slow step, on random tokens; tokens/s counts the
sequence tokens of the batch. Two MFUs, both over the part's dense bf16 peak (ltm.flops.PEAK_BF16_TFLOPS,
looked up per exact part, or --peak-tflops):
  * `MFU paper`: tokens/s x the paper's (T + 1)(6P + 6LdS) per token, the figure papers quote;
  * `MFU exec`: tokens/s x the FLOPs one step really executes, counted by FlopCounterMode on the model
    (latent-only inner backward, cross-attention keys/values on the latents, attention as the kernel
    is charged: the full S x S score matrix under a sliding-window mask).
The memory peak is reset before each configuration; the compiled variant reports the graphs compiled
and the graph breaks seen after its warm-up (a recompile or a fallback to eager would show there).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ltm.flops import flop_shape, measure_flops_per_token, peak_bf16_flops, train_flops_per_token
from ltm.model import Decoder, ModelConfig
from ltm.posterior import fit_posterior

from defaults import fast_loop


def dynamo_counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far in this process."""
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def run(cfg: ModelConfig, T: int, batch: int, steps: int, compile_model: bool, fused: bool, device: torch.device,
        peak: float | None) -> dict:
    torch.manual_seed(0)
    model = Decoder(cfg).to(device)
    model.fused_loss = fused
    executed = measure_flops_per_token(model, fast_loop(steps=T), train=True)  # eager, before compiling
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

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):  # warm-up (and compilation)
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    graphs0, breaks0 = dynamo_counts()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    graphs1, breaks1 = dynamo_counts()
    tok_s = batch * cfg.seq_len / dt
    formula = train_flops_per_token(*flop_shape(cfg), steps=T)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    nan = float("nan")
    return {"compile": compile_model, "fused": fused, "step_s": dt, "tokens_per_s": tok_s, "mem_gib": mem,
            "mfu_paper": tok_s * formula / peak if peak else nan, "mfu_exec": tok_s * executed / peak if peak else nan,
            "exec_over_formula": executed / formula, "graphs": graphs0, "new_graphs": graphs1 - graphs0,
            "breaks": breaks1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny config (CPU smoke test)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, if the part is not known")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        cfg = ModelConfig(vocab_size=512, seq_len=64, d_model=64, n_layers=2, n_heads=4, n_latents=8, window=32)
        args.batch, args.steps, args.T = 2, 2, 2
    else:  # LTM-M of the paper
        cfg = ModelConfig(vocab_size=50258, seq_len=1024, d_model=512, n_layers=6, n_heads=8, n_latents=24, window=256)
    name = "cpu"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_bf16_flops(name)
    print(f"device: {name} (dense bf16 peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s); model: "
          f"d={cfg.d_model} L={cfg.n_layers} N_z={cfg.n_latents} S={cfg.seq_len} V={cfg.vocab_size}; T={args.T}; "
          f"batch={args.batch}; {args.steps} timed steps")
    print(f"{'compile':>8} {'fused':>6} {'step s':>8} {'tokens/s':>10} {'MFU paper':>10} {'MFU exec':>9} {'exec/paper':>10} "
          f"{'mem GiB':>8} {'graphs':>7} {'recompiles':>10} {'breaks':>7}")
    for compiled in (False, True) if device.type == "cuda" or args.tiny else (False,):
        for fused in (False, True):
            r = run(cfg, args.T, args.batch, args.steps, compiled, fused, device, peak)
            print(f"{str(r['compile']):>8} {str(r['fused']):>6} {r['step_s']:8.3f} {r['tokens_per_s']:10.0f} {r['mfu_paper']:10.3f} "
                  f"{r['mfu_exec']:9.3f} {r['exec_over_formula']:10.3f} {r['mem_gib']:8.2f} {r['graphs']:7d} "
                  f"{r['new_graphs']:10d} {r['breaks']:7d}")


if __name__ == "__main__":
    main()
