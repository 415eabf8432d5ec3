import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ltm.errors import LtmError
from ltm.fewshot import (
    Problem,
    build_prompt,
    fewshot_prompts,
    load_gsm8k,
    make_problems,
    parse_answer,
    pass_at_n,
    select_demonstrations,
)
from ltm.model import Decoder, ModelConfig

from settings import fast_loop

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """A small byte-level BPE trained on the problems themselves (BOS = id 0, EOS = id 1)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|bos|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = fewshot_prompts(make_problems(200, seed=5), k=2, seed=5)
    tok.train_from_iterator(texts, trainer)
    return tok


def tiny(tok: Tokenizer, n_latents: int, seq_len: int = 160) -> Decoder:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), seq_len=seq_len, d_model=32, n_layers=2, n_heads=2,
                      n_latents=n_latents, window=64, init_std=0.3)  # 0.3: varied greedy output
    return Decoder(cfg).eval()


def test_problems_are_deterministic_distinct_and_well_formed():
    a, b = make_problems(50, seed=3), make_problems(50, seed=3)
    assert a == b
    assert a != make_problems(50, seed=4)
    assert len({p.question for p in a}) == 50
    for p in a:
        assert p.answer.isdigit() and p.question.endswith("?")
        assert "Answer" not in p.question and "\n" not in p.question


def test_problem_answers_follow_their_templates():
    for p in make_problems(300, seed=1):
        nums = [int(w.rstrip(".,")) for w in p.question.split() if w.rstrip(".,").isdigit()]
        if " buys " in p.question and " more." in p.question:
            assert int(p.answer) == nums[0] + nums[1]
        elif " gives " in p.question:
            assert int(p.answer) == nums[0] - nums[1]
        elif " bags with " in p.question:
            assert int(p.answer) == nums[0] * nums[1]
        elif " equally among " in p.question:
            assert int(p.answer) * nums[1] == nums[0]
        elif " more " in p.question and "together" in p.question:
            assert int(p.answer) == 2 * nums[0] + nums[1]
        else:
            assert int(p.answer) == nums[0] + nums[1] - nums[2]


def test_prompt_format():
    demos = [Problem("What is 1 and 2?", "3"), Problem("What is 2 and 2?", "4")]
    prompt = build_prompt(demos, Problem("What is 5 and 1?", "6"))
    assert prompt == ("Question: What is 1 and 2? Answer: 3\nQuestion: What is 2 and 2? Answer: 4\n"
                      "Question: What is 5 and 1? Answer:")


def test_demonstrations_never_contain_the_test_question_even_as_a_copy():
    problems = make_problems(6, seed=0)
    test = problems[0]
    # copies of the test question under other objects, case and spacing, with a different answer
    pool = problems + [Problem(test.question, "999"), Problem("  " + test.question.upper() + " ", "1")]
    for seed in range(50):
        demos = select_demonstrations(pool, test, 5, random.Random(seed))
        assert len({d.question for d in demos}) == 5
        assert all(" ".join(d.question.split()).lower() != test.question.lower() for d in demos)
    with pytest.raises(LtmError, match="k must be"):
        select_demonstrations(pool, test, 6, random.Random(0))  # only 5 other distinct problems exist


def test_fewshot_prompts_are_seeded_and_hold_the_test_question_once():
    problems = make_problems(20, seed=2)
    prompts = fewshot_prompts(problems, k=4, seed=7)
    assert prompts == fewshot_prompts(problems, k=4, seed=7)
    assert prompts != fewshot_prompts(problems, k=4, seed=8)
    for p, text in zip(problems, prompts):
        lines = text.split("\n")
        assert len(lines) == 5 and lines[-1] == f"Question: {p.question} Answer:"
        assert text.count(p.question) == 1


def test_parse_answer_reads_the_first_number_of_the_first_line():
    assert parse_answer(" 12 apples") == "12"
    assert parse_answer(" about -3, or 4") == "-3"
    assert parse_answer(" 1,250.") == "1250"
    assert parse_answer(" 007") == "7"
    assert parse_answer(" none\nQuestion: Tom has 3 apples") is None
    assert parse_answer("") is None


@pytest.mark.parametrize("n_latents", [4, 0])
def test_pass_at_n_runs_end_to_end_and_is_deterministic(tokenizer, n_latents):
    model = tiny(tokenizer, n_latents)
    problems = make_problems(3, seed=11)
    pool = make_problems(10, seed=12)
    kw = dict(pool=pool, bos_id=0, eos_id=1, max_new_tokens=4, seed=3)
    cfg = fast_loop(steps=2)
    result = pass_at_n(model, tokenizer, problems, 1, 2, cfg, **kw)
    assert result["family"] == ("ltm" if n_latents else "ar")
    assert (result["k"], result["n"], result["problems"]) == (1, 2, 3)
    assert 0 <= result["solved"] <= 3 and result["pass_at_n"] == result["solved"] / 3
    for problem, record in zip(problems, result["records"]):
        assert record["question"] == problem.question and record["answer"] == problem.answer
        assert len(record["completions"]) == len(record["predictions"]) == 2
        assert record["correct"] == (problem.answer in record["predictions"])
    # the n tries are independent: separate posterior fits (LTM) or separate samples (AR)
    assert any(len(set(r["completions"])) > 1 for r in result["records"])
    assert pass_at_n(model, tokenizer, problems, 1, 2, cfg, **kw) == result
    # a different seed draws other demonstrations (and noise), so the completions move
    other = pass_at_n(model, tokenizer, problems, 1, 2, cfg, **{**kw, "seed": 4})
    assert [r["completions"] for r in other["records"]] != [r["completions"] for r in result["records"]]


def test_pass_at_n_counts_a_planted_answer():
    class Echo:
        """Decodes every id sequence to a fixed completion, so the scoring can be checked exactly."""

        def __init__(self, tok: Tokenizer, text: str) -> None:
            self.tok, self.text = tok, text

        def encode(self, text: str):
            return self.tok.encode(text)

        def decode(self, ids: list[int]) -> str:
            return self.text

    problems = [Problem("Tom has 2 eggs and buys 3 more. How many eggs does Tom have?", "5")]
    pool = make_problems(4, seed=0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(["Question: Answer:"], trainer)
    model = tiny(tok, 0)
    hit = pass_at_n(model, Echo(tok, " 5 eggs\n"), problems, 1, 2, pool=pool, max_new_tokens=2)
    miss = pass_at_n(model, Echo(tok, " 6\n5"), problems, 1, 2, pool=pool, max_new_tokens=2)
    assert hit["solved"] == 1 and hit["records"][0]["predictions"] == ["5", "5"]
    assert miss["solved"] == 0 and miss["records"][0]["predictions"] == ["6", "6"]


def test_a_prompt_longer_than_the_context_raises(tokenizer):
    model = tiny(tokenizer, 4, seq_len=64)
    with pytest.raises(LtmError, match="lower k"):
        pass_at_n(model, tokenizer, make_problems(1, seed=0), 3, 2, fast_loop(steps=1),
                  pool=make_problems(10, seed=1))


def test_gsm8k_without_datasets_is_a_clear_error():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(LtmError, match="datasets"):
            load_gsm8k()
    else:
        pytest.skip("datasets is installed; the loader would go to the network")
