"""The `ltm` command line: one subcommand per pipeline stage, each a thin call into ltm.stages.

Both orchestrators (dvc.yaml and workflow/rules/*.smk) run exactly these command lines.
Bad input ends with one line on stderr (`ltm: error: ...`) and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ltm.dvc_child import stop_with_dvc
from ltm.errors import LtmError
from ltm.families import family

DATA = "data"


def _command(sub, name: str, func, help: str, params: bool = True) -> argparse.ArgumentParser:
    """One subcommand running `func`, with --params unless it reads none."""
    p = sub.add_parser(name, help=help)
    p.set_defaults(func=func)
    if params:
        p.add_argument("--params", default="params.yaml", metavar="PATH", help="params file (default: params.yaml)")
    return p


def _folders(p: argparse.ArgumentParser, *flags: str) -> None:
    """The data folders a command reads: --corpus, --tokenizer, --shards (default: data/FLAG)."""
    for flag in flags:
        p.add_argument(f"--{flag}", default=f"{DATA}/{flag}", help=f"{flag} folder (default: %(default)s)")


def _trained_run(p: argparse.ArgumentParser, *folders: str) -> None:
    """--run and --model of the commands that read a trained run's exported model, then their data folders."""
    p.add_argument("--run", required=True, help="name of a trained run")
    p.add_argument("--model", default=None, help="trained model folder (default: runs/RUN/model)")
    _folders(p, *folders)


def cmd_corpus(a: argparse.Namespace) -> None:
    from ltm.stages.corpus import corpus
    m = corpus(a.params, a.out)
    splits = ", ".join(f"{k} {v['documents']} docs" for k, v in m["splits"].items())
    print(f"corpus: {splits} -> {a.out}")


def cmd_tokenizer(a: argparse.Namespace) -> None:
    from ltm.stages.tokenizer import tokenizer
    m = tokenizer(a.params, a.corpus, a.out)
    print(f"tokenizer: {m['kind']}, {m['vocab_size']} ids -> {a.out}")


def cmd_shards(a: argparse.Namespace) -> None:
    from ltm.stages.shards import shards
    m = shards(a.params, a.corpus, a.tokenizer, a.out)
    splits = ", ".join(f"{k} {v['rows']} rows" for k, v in m["splits"].items())
    print(f"shards: {splits} ({m['dtype']}) -> {a.out}")


def cmd_train(a: argparse.Namespace) -> None:
    from ltm.stages.train import train
    out = a.out or f"runs/{a.run}"
    m = train(a.params, a.run, a.shards, out, a.resume)
    print(f"train {a.run}: {m['steps']} steps, {m['tokens']} tokens, val loss {m['val_loss']:.4f} "
          f"({m['val_loss_kind']}) -> {out}")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from ltm.stages.evaluate import evaluate
    out = a.out or f"results/eval/{a.run}"
    m = evaluate(a.params, a.run, a.model or f"runs/{a.run}/model", a.shards, a.tokenizer, out)
    for split, rec in m["splits"].items():
        print(family(m["family"]).impl.summary(a.run, split, rec))
    print(f"-> {out}")


def cmd_generate(a: argparse.Namespace) -> None:
    from ltm.stages.generate import generate
    texts = generate(a.params, a.run, a.model or f"runs/{a.run}/model", a.tokenizer, prompt=a.prompt, n=a.n,
                     max_new=a.max_new, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, greedy=a.greedy,
                     z_temperature=a.z_temperature, diffusion_steps=a.diffusion_steps, seed=a.seed, out=a.out)
    for i, text in enumerate(texts):
        print(f"--- sample {i}\n{(a.prompt or '') + text}")


def cmd_generation(a: argparse.Namespace) -> None:
    from ltm.config import load_params
    from ltm.stages.generation import generation
    judge = a.judge or f"runs/{load_params(a.params)['generation']['judge']}/model"
    out = a.out or f"results/generation/{a.run}"
    m = generation(a.params, a.run, a.model or f"runs/{a.run}/model", judge, a.shards, a.tokenizer, out)
    for mode, r in m["modes"].items():
        print(f"{a.run} {mode}: judge ({m['judge']}) ppl {r['gen_ppl']:.2f}, unigram entropy {r['unigram_entropy']:.3f}")
    print(f"-> {out}")


def cmd_fewshot(a: argparse.Namespace) -> None:
    from ltm.stages.fewshot import fewshot
    out = a.out or f"results/fewshot/{a.run}"
    m = fewshot(a.params, a.run, a.model or f"runs/{a.run}/model", a.tokenizer, out)
    for k, r in m["by_k"].items():
        if "skipped" in r:
            print(f"{a.run} {k}-shot: skipped ({r['skipped']})")
        else:
            print(f"{a.run} {k}-shot: pass@{m['protocol']['n']} = {r['pass_at_n']:.3f} ({r['solved']}/{r['problems']})")
    print(m.get("note", f"-> {out}"))


def cmd_scaling(a: argparse.Namespace) -> None:
    from ltm.scaling import format_summary
    from ltm.stages.scaling import scaling
    print(format_summary(scaling(a.params, a.eval, a.out)))
    print(f"-> {a.out}")


def cmd_report(a: argparse.Namespace) -> None:
    from ltm.stages.report import report
    print(f"report -> {report(a.params, a.runs, a.eval, a.scaling, a.out)}")


def cmd_lineage(a: argparse.Namespace) -> None:
    from ltm.lineage import format_chain, read_record
    print(json.dumps(read_record(a.path), indent=2) if a.json else format_chain(a.path))


def cmd_restore(a: argparse.Namespace) -> None:
    from ltm.previous import STORE, restore
    try:
        restored = restore(a.paths)
    except ValueError as exc:
        raise LtmError(str(exc)) from None
    for path in restored:
        print(f"restored the previous {path} from {STORE} (marked out of date: Snakemake reruns its job)")
    missing = [p for p in a.paths if Path(p) not in restored and not Path(p).exists()]
    if missing:
        raise LtmError(f"no previous copy of {', '.join(missing)} in {STORE}")


def cmd_params(a: argparse.Namespace) -> None:
    from ltm.config import load_params, params_hash
    params = load_params(a.params)
    tracked = {k: v for k, v in params.items() if k != "runtime"}
    print(f"{a.params}: valid, params hash {params_hash(tracked)}")
    if a.show:
        print(json.dumps(params, indent=2))


def cmd_pipeline(a: argparse.Namespace) -> None:
    from ltm.config import load_params
    from ltm.io import write_text
    from ltm.pipeline import dvc_yaml
    text = dvc_yaml(load_params(a.params))
    if a.check:
        if not Path(a.dvc_yaml).is_file() or Path(a.dvc_yaml).read_text(encoding="utf-8") != text:
            raise LtmError(f"{a.dvc_yaml} differs from the pipeline table (ltm/pipeline.py): run `ltm pipeline --write`")
        print(f"{a.dvc_yaml}: as generated from ltm/pipeline.py")
    elif a.write:
        write_text(a.dvc_yaml, text)
        print(f"wrote {a.dvc_yaml} from ltm/pipeline.py")
    else:
        sys.stdout.write(text)


def cmd_demo(a: argparse.Namespace) -> None:
    from ltm.stages.demo import demo
    m = demo(a.params, a.out)
    truth = m["ground_truth"]
    print(f"demo: synthetic corpus, ground truth {truth['bpb']:.4f} ± {truth['bpb_stderr']:.4f} bits/byte on val")
    for name, run in m["runs"].items():
        for t, rec in run["by_T_eval"].items():
            if not family(run["family"]).has_latents:
                print(f"  {name} (window {run['window']}): exact {rec['exact']['bpb']:.4f} bits/byte")
            else:
                u = rec["latent_usage"]
                info = u["information_vs_shuffled"] or u["information_vs_prior"]
                print(f"  {name} (window {run['window']}, T_eval={t}): IWAE {rec['iwae']['bpb']:.4f} bits/byte, "
                      f"latents carry {info['nats_per_token']:.4f} ± {info['stderr']:.4f} nats/token")
    print(f"-> {a.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "corpus", cmd_corpus, "collect documents into Arrow with a train/val split")
    p.add_argument("--out", default=f"{DATA}/corpus", help="output folder (default: %(default)s)")

    p = _command(sub, "tokenizer", cmd_tokenizer, "train a byte-level BPE or load the exact GPT-2 BPE")
    _folders(p, "corpus")
    p.add_argument("--out", default=f"{DATA}/tokenizer", help="output folder (default: %(default)s)")

    p = _command(sub, "shards", cmd_shards, "encode the corpus into packed Arrow token shards")
    _folders(p, "corpus", "tokenizer")
    p.add_argument("--out", default=f"{DATA}/shards", help="output folder (default: %(default)s)")

    p = _command(sub, "train", cmd_train, "train one run of params `runs:` (resumes automatically)")
    p.add_argument("--run", required=True, help="name of an entry under params `runs:`")
    _folders(p, "shards")
    p.add_argument("--out", default=None, help="run folder (default: runs/RUN)")
    p.add_argument("--resume", default="auto", metavar="auto|never|PATH",
                   help="auto: continue from the latest checkpoint made with the same params and data "
                        "(default); never: start over; PATH: that checkpoint, refused if its params differ")

    p = _command(sub, "evaluate", cmd_evaluate, "score a trained run: bounds per split and a T_eval curve")
    _trained_run(p, "shards", "tokenizer")
    p.add_argument("--out", default=None, help="output folder (default: results/eval/RUN)")

    p = _command(sub, "generate", cmd_generate, "sample text from a trained run (conditional when --prompt is given)")
    _trained_run(p, "tokenizer")
    p.add_argument("--prompt", default=None, help="text to continue; LTM: z is fitted on it, then fixed")
    p.add_argument("--n", type=int, default=4, help="number of samples (default: %(default)s)")
    p.add_argument("--max-new", type=int, default=64, help="new tokens per sample (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--z-temperature", type=float, default=1.0, help="LTM without prompt: z ~ N(0, t^2 I)")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="diffusion sampler steps (default: params generation.diffusion_steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the samples and settings to this JSON file")

    p = _command(sub, "generation", cmd_generation, "sample from a run and score the samples with the AR judge")
    _trained_run(p)
    p.add_argument("--judge", default=None, help="judge model folder (default: runs/<generation.judge>/model)")
    _folders(p, "shards", "tokenizer")
    p.add_argument("--out", default=None, help="output folder (default: results/generation/RUN)")

    p = _command(sub, "fewshot", cmd_fewshot, "k-shot word problems, pass@n, for a trained run")
    _trained_run(p, "tokenizer")
    p.add_argument("--out", default=None, help="output folder (default: results/fewshot/RUN)")

    p = _command(sub, "scaling", cmd_scaling, "fit scaling laws to every run's evaluation (or say why not)")
    p.add_argument("--eval", default="results/eval", help="evaluation folder (default: %(default)s)")
    p.add_argument("--out", default="results/scaling", help="output folder (default: %(default)s)")

    p = _command(sub, "demo", cmd_demo, "the mechanism on the synthetic corpus: LTM vs AR next to the ground truth")
    p.add_argument("--out", default="results/demo", help="output folder (default: %(default)s)")

    p = _command(sub, "report", cmd_report, "write the Markdown report with figures from every result")
    p.add_argument("--runs", default="runs", help="runs folder (default: %(default)s)")
    p.add_argument("--eval", default="results/eval", help="evaluation folder (default: %(default)s)")
    p.add_argument("--scaling", default="results/scaling", help="scaling folder (default: %(default)s)")
    p.add_argument("--out", default="reports", help="report folder (default: %(default)s)")

    p = _command(sub, "lineage", cmd_lineage, "print the chain of artifacts, params and code that made PATH",
                 params=False)
    p.add_argument("path", help="an artifact folder or a file inside one")
    p.add_argument("--json", action="store_true", help="print the artifact's own record as JSON")

    p = _command(sub, "restore", cmd_restore, "put back outputs a failed or killed Snakemake run deleted",
                 params=False)
    p.add_argument("paths", nargs="+", help="declared outputs, e.g. runs/ltm-tiny/model results/eval/ltm-tiny/metrics.json")

    p = _command(sub, "pipeline", cmd_pipeline, "generate dvc.yaml from the pipeline table (print, --write or --check)")
    p.add_argument("--dvc-yaml", default="dvc.yaml", help="the file to write or check (default dvc.yaml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write it")
    mode.add_argument("--check", action="store_true", help="fail unless the file equals the generated text")

    p = _command(sub, "params", cmd_params, "validate a params file and print its hash")
    p.add_argument("--show", action="store_true", help="also print the resolved params")
    return parser


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as params.yaml's run names: never a path


def check_run_name(args: argparse.Namespace) -> None:
    """A --run value names an output folder (runs/RUN, results/*/RUN): it may not climb out of them."""
    run = getattr(args, "run", None)
    if run is not None and (not RUN_NAME.match(run) or ".." in run):
        raise LtmError(f"--run {run!r} is not a run name (letters, digits, '_', '.', '-'; no '/' or '..')")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop_with_dvc()  # under `dvc repro`: a SIGTERM to DVC stops this stage too
    try:
        check_run_name(args)
        args.func(args)
    except LtmError as exc:
        print(f"ltm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user named: a bug, keep its traceback
            raise
        # an --out that is a file, an unwritable folder, a full disk: the user's to fix, in one line
        print(f"ltm: error: {exc.strerror or type(exc).__name__}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
