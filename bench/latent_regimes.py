"""Which fast-loop settings make the latents carry information within the CPU budget?

Trains the tiny LTM and the same-size AR baseline on one corpus (builtin or synthetic) for each
setting, evaluates the val split at T_eval = T_train, and prints one row per setting: the AR exact NLL,
the LTM's NLL at z ~ q, the information the latents carry (NLL with another sequence's z, or with
prior z, minus NLL at q, nats/token, with its standard error), the KL per token and the IWAE bound. Usage:

    python bench/latent_regimes.py --source synthetic --tokens 200000 [--settings paper,prior-T8,...]

A setting is a name in SETTINGS: posterior overrides (the paper's fast loop is `paper`).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import yaml

from ltm.latent_usage import paired_gap
from ltm.runtime import Runtime, configure_threads
from ltm.stages.demo import build_data, train_and_score

SETTINGS = {
    "paper-T4": {"inner_steps": 4},
    "paper-T16": {"inner_steps": 16},
    "prior-T4": {"inner_steps": 4, "init_logvar_mean": 0.0},
    "prior-T8": {"inner_steps": 8, "init_logvar_mean": 0.0},
    "prior-T8-lr0.1": {"inner_steps": 8, "init_logvar_mean": 0.0, "lr_max": 0.1, "lr_min": 0.01},
    "mid-T4": {"inner_steps": 4, "init_logvar_mean": -2.0},
    "mid-T8": {"inner_steps": 8, "init_logvar_mean": -2.0},
    # small steps for mu (little mean-part KL), large ones for log sigma^2 (no variance-part floor)
    "split-T4": {"inner_steps": 4, "lr_max": 0.05, "lr_min": 0.005, "lr_logvar_scale": 40.0},
    "split-T4-mu01": {"inner_steps": 4, "lr_max": 0.1, "lr_min": 0.01, "lr_logvar_scale": 20.0},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--source", default="builtin", choices=["builtin", "synthetic"])
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--window", type=int, default=None, help="attention window of both models (tokens)")
    ap.add_argument("--n-latents", type=int, default=None, help="latent vectors of the LTM (N_z, all layers)")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--eval-rows", type=int, default=64)
    ap.add_argument("--t-eval", default="train", help="comma-separated T_eval values; 'train' = the training T")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, dotted key and YAML value (e.g. data.corpus.synthetic.topic_weight=0.9)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    params = yaml.safe_load(Path(args.params).read_text())
    params["data"]["corpus"]["source"] = args.source
    params["runtime"] = {"device": "cpu", "threads": 0, "micro_batch": 0, "compile": False, "precision": "fp32", "fused_loss": False}
    params["eval"].update(max_rows=args.eval_rows, splits=["val"], t_eval=None)
    for item in args.set:
        key, _, value = item.partition("=")
        *path, leaf = key.split(".")
        node = params
        for part in path:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    runtime = Runtime.from_params(params["runtime"])
    configure_threads(runtime)
    for name in ("ltm-tiny", "ar-tiny"):
        if args.window:
            params["models"][name]["window"] = args.window
    if args.n_latents:
        params["models"]["ltm-tiny"]["n_latents"] = args.n_latents
    params["runs"] = {"ar": {"model": "ar-tiny", "tokens": args.tokens}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_data(params, root)
        ar = train_and_score(params, runtime, "ar", root, [0])
        ar_rec = next(iter(ar["by_T_eval"].values()))
        ar_nll = ar_rec["exact"]["nll"]
        print(f"corpus {args.source}, {args.tokens} training tokens, window {params['models']['ltm-tiny']['window']}; "
              f"AR exact NLL {ar_nll:.4f} nats/token", flush=True)
        print("| setting | T | init logvar | T_eval | NLL at z | info vs shuffled | info vs prior | KL/tok | IWAE | "
              "IWAE - AR (paired) |")
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for name in args.settings.split(","):
            p = copy.deepcopy(params)
            p["posterior"].update(SETTINGS[name])
            p["runs"] = {name: {"model": "ltm-tiny", "tokens": args.tokens}}
            t_evals = [p["posterior"]["inner_steps"] if t == "train" else int(t) for t in args.t_eval.split(",")]
            out = train_and_score(p, runtime, name, root, t_evals)
            for rec in out["by_T_eval"].values():
                use = rec["latent_usage"]
                info, shuf = use["information_vs_prior"], use["information_vs_shuffled"]
                row = {"setting": name, **SETTINGS[name], "T_eval": rec["protocol"]["T_eval"], "ar_nll": ar_nll,
                       "nll_fit": use["nll_fit"], "info": info["nats_per_token"], "info_se": info["stderr"],
                       "info_shuffled": shuf["nats_per_token"], "info_shuffled_se": shuf["stderr"],
                       "kl": use["kl_per_token"], "iwae": rec["iwae"]["nelbo"],
                       "gap": paired_gap(rec["per_sequence"], ar_rec["per_sequence"])}
                rows.append(row)
                print(f"| {name} | {p['posterior']['steps']} | {p['posterior']['init_logvar_mean']} | {row['T_eval']} | "
                      f"{row['nll_fit']:.4f} | {row['info_shuffled']:.4f} ± {row['info_shuffled_se']:.4f} | "
                      f"{row['info']:.4f} ± {row['info_se']:.4f} | {row['kl']:.3f} | "
                      f"{row['iwae']:.4f} | {row['gap']['nats_per_token']:+.4f} ± {row['gap']['stderr']:.4f} |",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
