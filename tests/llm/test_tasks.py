"""Synthetic tasks, their verifiers, the JSONL loader and the character tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.tasks import Example, get_task, load_jsonl
from llm.tokenizer import CharTokenizer


@pytest.mark.parametrize("name", ["copy", "addition", "countdown"])
def test_stored_answers_score_one_and_wrong_ones_zero(name):
    task = get_task(name)
    tok = CharTokenizer()
    for ex in task.sample(np.random.default_rng(0), 50):
        assert task.score(ex.answer, ex) == 1.0
        assert task.score(" " + ex.answer + " ", ex) == 1.0
        assert task.score(ex.answer + "9", ex) == 0.0
        assert tok.decode(tok.encode(ex.prompt + ex.answer)) == ex.prompt + ex.answer  # all in the alphabet


def test_countdown_accepts_any_valid_expression_and_checks_number_use():
    task = get_task("countdown")
    ex = Example("3,5,7:22=", "3*5+7")
    assert task.score("7+5*3", ex) == 1.0  # another order of the same numbers
    assert task.score("(7+5*3)", ex) == 1.0
    assert task.score("22", ex) == 0.0  # 22 is not one of the numbers
    assert task.score("5*5-3", ex) == 0.0  # 5 used twice
    assert task.score("3*5+7/1", ex) == 0.0  # division is not allowed
    assert task.score("__import__('os')", ex) == 0.0  # nothing but arithmetic is evaluated


@given(st.integers(0, 2**31 - 1))
def test_addition_answers_are_sums(seed):
    for ex in get_task("addition", n=3).sample(np.random.default_rng(seed), 5):
        a, b = ex.prompt.rstrip("=").split("+")
        assert int(ex.answer) == int(a) + int(b) and len(a) == len(b) == 3


def test_jsonl_loader_reports_file_and_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "1+1=", "answer": 2}) + "\n\n")
    assert load_jsonl(good) == [Example("1+1=", "2")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not JSON"):
        load_jsonl(bad)
    bad.write_text('{"question": "a"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: got"):
        load_jsonl(bad)
    with pytest.raises(ValueError, match="path: got"):
        get_task("jsonl", path=str(tmp_path / "missing.jsonl"))


def test_bad_task_arguments_name_the_argument():
    with pytest.raises(ValueError, match="task: got 'chess'"):
        get_task("chess")
    with pytest.raises(ValueError, match="n: got 0"):
        get_task("copy", n=0)


def test_tokenizer_round_trip_padding_and_errors():
    tok = CharTokenizer()
    ids, mask = tok.batch(["ab=", "abcd="])
    assert ids.shape == mask.shape == (2, 6)
    assert mask[0].tolist() == [0, 0, 1, 1, 1, 1]  # left padding, <bos> first
    assert tok.decode(ids[0]) == "ab="
    assert tok.decode([*tok.encode("12"), tok.eos_token_id, *tok.encode("3", bos=False)]) == "12"
    with pytest.raises(ValueError, match=r"characters \['A'\]"):
        tok.encode("A")
    with pytest.raises(ValueError, match="alphabet"):
        CharTokenizer("aa")


def test_last_number_scoring_reads_the_final_integer():
    from llm.tasks import LastNumber

    task = LastNumber(get_task("addition", n=2))
    ex = Example("17+38=", "55")
    assert task.score("17 + 38 = 55", ex) == 1.0
    assert task.score("The answer is 55.", ex) == 1.0
    assert task.score("55 is not 56", ex) == 0.0  # the last number counts
    assert task.score("1,055", Example("1000+55=", "1055")) == 1.0  # thousands separators
    assert task.score("no number", ex) == 0.0


@given(st.integers(0, 10_000), st.integers(0, 3))
def test_split_never_trains_on_held_out_prompts_and_is_a_function_of_step(step, rank):
    from llm.tasks import Split

    split = Split(get_task("copy", n=2), eval_prompts=20, seed=5)  # 64 distinct prompts in all
    held = {e.prompt for e in split.eval}
    assert len(held) == 20
    batch = split.train(step, rank, 16)
    assert len(batch) == 16 and not held & {e.prompt for e in batch}
    assert batch == split.train(step, rank, 16)  # resume draws the same prompts
    assert Split(get_task("copy", n=2), eval_prompts=20, seed=5).eval == split.eval


def test_split_refuses_more_held_out_prompts_than_exist():
    from llm.tasks import Split

    with pytest.raises(ValueError, match="eval_prompts: got 9; allowed: fewer than the distinct prompts"):
        Split(get_task("copy", n=1), eval_prompts=9, seed=0)  # 8 letters: 8 prompts


def test_chat_message_template():
    from llm.tokenizer import HFTokenizer

    class Stub:
        pad_token_id, eos_token_id, bos_token_id = 0, 1, None

    assert HFTokenizer(Stub(), chat="What is {prompt}?").message("12+34=") == "What is 12+34?"
    assert HFTokenizer(Stub(), chat="Add:").message("12+34=") == "Add: 12+34="


def test_reasoning_gym_task_uses_the_datasets_scorer():
    from llm.tasks import ReasoningGym, Split

    task = ReasoningGym("basic_arithmetic", seed=0)
    examples = task.sample(np.random.default_rng(0), 5)
    for ex in examples:
        assert task.score(ex.answer, ex) == 1.0
        assert task.score(ex.answer + "1", ex) < 1.0  # its scorer may give partial credit
    split = Split(task, eval_prompts=4, seed=0)
    assert not {e.prompt for e in split.eval} & {e.prompt for e in split.train(0, 0, 8)}
    with pytest.raises(ValueError, match="task: got 'rg:nope'; allowed: rg:<name>"):
        ReasoningGym("nope")


def test_math_verify_scoring_compares_values():
    from llm.tasks import MathVerify

    task = MathVerify(get_task("addition"))
    assert task.score("The answer is $\\frac{1}{2}$", Example("q", "0.5")) == 1.0
    assert task.score("17+38 = 55", Example("17+38=", "55")) == 1.0
    assert task.score("56", Example("17+38=", "55")) == 0.0


def test_reasoning_gym_settings_reach_the_dataset():
    """chain_sum with 2 one-digit terms: every prompt has two single digits."""
    import re

    from llm.tasks import ReasoningGym

    task = ReasoningGym(
        "chain_sum", seed=0, settings=("min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1")
    )
    assert task.settings == {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    for ex in task.sample(np.random.default_rng(0), 20):
        numbers = re.findall(r"\d+", ex.prompt.split("=")[0])
        assert len(numbers) == 2 and all(len(n) == 1 for n in numbers), ex.prompt
        assert task.score(ex.answer, ex) == 1.0
    default = ReasoningGym("chain_sum", seed=0)
    assert max(len(re.findall(r"\d+", e.prompt)) for e in default.sample(np.random.default_rng(0), 50)) > 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("max_terms",), r"^task_kw: got 'max_terms'; allowed: KEY=VALUE with KEY a field of rg:chain_sum \(min_terms=2"),
        (("colour=red",), r"^task_kw: got 'colour=red'; allowed: KEY=VALUE with KEY a field of rg:chain_sum"),
        (("min_terms=two",), r"^task_kw: got 'min_terms=two' \(.*\); allowed: min_terms=2-like values$"),
        (("min_terms=0",), r"^task_kw: got min_terms=0 \(rg:chain_sum says: min_terms must be positive\); allowed:"),
        (("seed=3",), r"^task_kw: got 'seed=3'; allowed: KEY=VALUE"),
        (("allow_negation=maybe",), r"^task_kw: got 'allow_negation=maybe' \(not true or false\)"),
    ],
)  # fmt: skip
def test_reasoning_gym_settings_are_checked_in_one_line(settings, message):
    from llm.tasks import ReasoningGym

    with pytest.raises(ValueError, match=message):
        ReasoningGym("chain_sum", seed=0, settings=settings)


def test_task_kw_needs_a_reasoning_gym_task(tmp_path, capsys):
    from llm.train import main

    assert main(["--task-kw", "max_terms=2", "--out-dir", str(tmp_path / "o"), "--sft-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: task_kw: got 'max_terms=2'; allowed: settings only with an rg:NAME task")
        and err.count("\n") == 1
    )
