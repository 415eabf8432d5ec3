"""Peak memory of the tokenizer and shards stages: one huge one-line document vs the same text as
ordinary documents (the reference, same run). Each stage runs in its own process; peak RSS from
getrusage. Usage: python bench/bench_long_document.py [--mb 50] [--vocab 2048]

Long documents are handed to the tokenizer in pieces of ltm.data.corpus.PIECE_CHARS characters
(cut before a word, so the tokens do not change): memory stays that of ordinary documents.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE = """
import json, resource, sys
from pathlib import Path
from ltm.config import REPO_ROOT, load_params
from ltm.data.corpus import build_corpus
from ltm.data.shards import build_shards
from ltm.data.tokenizer import build_tokenizer
root, stage, vocab = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
data = load_params(REPO_ROOT / "params.yaml")["data"]  # the library has no defaults: params' values
if stage == "corpus":
    build_corpus({**data["corpus"], "source": "files", "paths": [str(root / "docs.jsonl")]}, root / "corpus")
elif stage == "tokenizer":
    build_tokenizer({**data["tokenizer"], "kind": "bpe", "vocab_size": vocab}, root / "corpus", root / "tok")
else:
    build_shards(data["shards"], root / "corpus", root / "tok", root / "shards")
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_docs(path: Path, mb: float, one_line: bool, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = [f"w{rng.randrange(5000)}" for _ in range(200_000)]
    target = int(mb * (1 << 20))
    texts, size = [], 0
    while size < target:
        doc = " ".join(rng.choice(words) for _ in range(200))
        texts.append(doc)
        size += len(doc) + 1
    cut = max(40, len(texts) // 20)  # one-line case: 95% of the text in one document, the rest as usual
    docs = [" ".join(texts[cut:])] + texts[:cut] if one_line else texts
    with open(path, "w") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in docs)


def measure(mb: float, one_line: bool, vocab: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_docs(root / "docs.jsonl", mb, one_line)
        out = {}
        for stage in ("corpus", "tokenizer", "shards"):
            t0 = time.time()
            run = subprocess.run([sys.executable, "-c", STAGE, str(root), stage, str(vocab)], capture_output=True,
                                 text=True)
            if run.returncode != 0:
                raise SystemExit(f"{stage} failed: {run.stderr.strip().splitlines()[-1]}")
            out[stage] = json.loads(run.stdout.strip().splitlines()[-1])["peak_mib"]
            out[stage + "_s"] = time.time() - t0
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="text size in MiB")
    ap.add_argument("--vocab", type=int, default=2048)
    args = ap.parse_args()
    ref = measure(args.mb, one_line=False, vocab=args.vocab)
    long = measure(args.mb, one_line=True, vocab=args.vocab)
    print(f"{args.mb:g} MiB of text; peak RSS per stage process (MiB), one-line document vs ordinary documents")
    print(f"{'stage':<10} {'documents':>10} {'one line':>10} {'ratio':>7} {'seconds (docs / line)':>24}")
    for stage in ("corpus", "tokenizer", "shards"):
        print(f"{stage:<10} {ref[stage]:10.0f} {long[stage]:10.0f} {long[stage] / ref[stage]:7.2f} "
              f"{ref[stage + '_s']:11.1f} / {long[stage + '_s']:<10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
