"""Few-shot arithmetic reasoning: problems, k-shot prompts and pass@n.

The offline default source is a seeded generator of one- and two-step word problems with integer
answers (`make_problems`); GSM8K through HuggingFace `datasets` is optional (`load_gsm8k`).

Protocol (Kong et al. 2025, section 5): k demonstrations "Question: q Answer: a" joined by newlines, then
"Question: q Answer:". For an LTM, z is fitted on the prompt and each of the n tries greedily decodes
with its own posterior fit (own initial noise and eps); the AR baseline draws n temperature samples
instead, since its greedy decode would repeat itself. A problem counts as solved if any try's first
number after the prompt equals the answer.
"""

import random
import re
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from ltm.config import FromParams
from ltm.errors import LtmError
from ltm.fast_loop import PosteriorConfig
from ltm.generate import fit_prompt_z, sample
from ltm.model import Decoder


@dataclass(frozen=True)
class FewshotConfig(FromParams):
    """The `fewshot:` params section (validated there)."""
    source: str  # arithmetic (seeded, offline) | gsm8k (HuggingFace datasets)
    problems: int  # problems scored per k
    pool: int  # problems the demonstrations are drawn from
    k: tuple[int, ...]  # demonstrations per prompt
    n: int  # tries per problem (pass@n)
    seed: int
    max_new_tokens: int
    temperature: float  # the AR baseline's tries are samples at this temperature


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # canonical integer string, e.g. "12"


NAMES = ("Tom", "Anna", "Ben", "Maria", "Sam", "Lucy", "Omar", "Mei", "Jack", "Nina")
ITEMS = ("apples", "books", "pencils", "stickers", "marbles", "cookies", "cards", "shells", "coins", "eggs")


def _problem(rng: random.Random) -> Problem:
    name, friend = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    kind = rng.randrange(6)
    if kind == 0:
        q, ans = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have?", a + b
    elif kind == 1:
        a, b = max(a, b), min(a, b)
        q, ans = f"{name} has {a} {item} and gives {b} to {friend}. How many {item} does {name} have left?", a - b
    elif kind == 2:
        a, b = a % 9 + 2, b % 9 + 2  # keep products small
        q, ans = f"{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy?", a * b
    elif kind == 3:
        a, b = a % 9 + 2, b % 9 + 2
        q, ans = f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?", a
    elif kind == 4:
        q = f"{name} has {a} {item}. {friend} has {b} more {item} than {name}. How many {item} do they have together?"
        ans = 2 * a + b
    else:
        c = rng.randint(1, a + b)
        q = f"{name} has {a} {item}, finds {b} more and then loses {c}. How many {item} does {name} have now?"
        ans = a + b - c
    return Problem(q, str(ans))


def _key(question: str) -> str:
    """Content identity of a question: case and whitespace do not make a different problem."""
    return " ".join(question.split()).lower()


def make_problems(n: int, seed: int = 0) -> list[Problem]:
    """n distinct arithmetic word problems; the same seed gives the same list."""
    if not isinstance(n, int) or n < 0:
        raise LtmError(f"number of problems must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    problems: dict[str, Problem] = {}
    for _ in range(100 * n + 100):
        if len(problems) == n:
            break
        p = _problem(rng)
        problems.setdefault(_key(p.question), p)
    if len(problems) < n:
        raise LtmError(f"could not generate {n} distinct problems")
    return list(problems.values())


def build_prompt(demos: list[Problem], test: Problem) -> str:
    lines = [f"Question: {d.question} Answer: {d.answer}" for d in demos]
    return "\n".join([*lines, f"Question: {test.question} Answer:"])


def select_demonstrations(pool: list[Problem], test: Problem, k: int, rng: random.Random) -> list[Problem]:
    """k distinct demonstrations from pool, none with the test's question (compared by content)."""
    candidates: dict[str, Problem] = {}
    for p in pool:
        if _key(p.question) != _key(test.question):
            candidates.setdefault(_key(p.question), p)
    if not isinstance(k, int) or not 0 <= k <= len(candidates):
        raise LtmError(f"k must be between 0 and {len(candidates)} (distinct other problems), got {k!r}")
    return rng.sample(list(candidates.values()), k)


def fewshot_prompts(problems: list[Problem], k: int, seed: int = 0,
                    pool: list[Problem] | None = None) -> list[str]:
    """One k-shot prompt per test problem; demonstrations come from pool (default: the other problems)."""
    rng = random.Random(seed)
    pool = problems if pool is None else pool
    return [build_prompt(select_demonstrations(pool, p, k, rng), p) for p in problems]


_NUMBER = re.compile(r"-?\d[\d,]*")


def parse_answer(completion: str) -> str | None:
    """The first integer of the completion's first line (commas dropped), or None."""
    match = _NUMBER.search(completion.split("\n", 1)[0])
    return None if match is None else str(int(match.group().replace(",", "")))


def pass_at_n(model: Decoder, tokenizer: Tokenizer, problems: list[Problem], k: int, n: int,
              posterior_cfg: PosteriorConfig | None = None, *, pool: list[Problem] | None = None,
              bos_id: int | None = None, eos_id: int | None = None, max_new_tokens: int = 8,
              temperature: float = 0.7, seed: int = 0) -> dict:
    """Fraction of problems solved by at least one of n tries, with per-problem records.

    LTM (n_latents > 0): n independent posterior fits on the prompt, each decoded greedily.
    AR baseline: n samples at `temperature`. bos_id, if given, starts every prompt (as in training).
    """
    if not isinstance(n, int) or n < 1:
        raise LtmError(f"n must be a positive integer, got {n!r}")
    device = model.embed.weight.device
    prompts = fewshot_prompts(problems, k, seed, pool)
    records = []
    for index, (problem, text) in enumerate(zip(problems, prompts)):
        ids = ([bos_id] if bos_id is not None else []) + tokenizer.encode(text).ids
        if len(ids) >= model.cfg.seq_len:
            raise LtmError(f"{k}-shot prompt of {len(ids)} tokens leaves no room in the context "
                           f"(seq_len {model.cfg.seq_len}); lower k")
        prompt = torch.tensor([ids] * n, dtype=torch.long, device=device)
        generator = torch.Generator(device=device).manual_seed((seed * 1_000_003 + index) % 2**63)
        if model.cfg.n_latents:
            z = fit_prompt_z(model, prompt, posterior_cfg, generator=generator).z
            out = sample(model, prompt, max_new_tokens, z, greedy=True, eos_id=eos_id)
        else:
            out = sample(model, prompt, max_new_tokens, temperature=temperature, generator=generator,
                         eos_id=eos_id)
        completions = [tokenizer.decode(row[len(ids):].tolist()) for row in out]
        predictions = [parse_answer(c) for c in completions]
        records.append({"question": problem.question, "answer": problem.answer, "completions": completions,
                        "predictions": predictions, "correct": problem.answer in predictions})
    solved = sum(r["correct"] for r in records)
    return {"family": "ltm" if model.cfg.n_latents else "ar", "k": k, "n": n, "problems": len(records),
            "solved": solved, "pass_at_n": solved / len(records) if records else 0.0, "records": records}


def load_gsm8k(split: str = "test", limit: int | None = None) -> list[Problem]:
    """GSM8K problems (answer = the number after '####'); needs the optional `datasets` package."""
    try:
        import datasets
    except ImportError:
        raise LtmError("GSM8K needs the optional 'datasets' package (pip install 'ltm[hf]'); "
                       "the builtin problems (make_problems) need nothing") from None
    rows = datasets.load_dataset("openai/gsm8k", "main", split=split)
    problems = []
    for row in rows:
        answer = parse_answer(row["answer"].rsplit("####", 1)[-1].strip())
        if answer is not None:
            problems.append(Problem(row["question"].strip(), answer))
        if limit is not None and len(problems) >= limit:
            break
    return problems
