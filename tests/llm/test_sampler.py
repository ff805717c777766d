"""The trainer's own sampler (``llm.rollout.decode``) draws the same tokens as ``model.generate`` from the
same global RNG state, to the bit, and leaves the RNG where ``generate`` leaves it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm.models import tiny_model
from llm.rollout import decode, own_sampler_ok, sample
from llm.tasks import get_task
from llm.tokenizer import CharTokenizer


def _prompts(tok, n: int = 6, seed: int = 0):
    task = get_task("addition", n=2)
    ex = [*task.sample(np.random.default_rng(seed), n // 2), *get_task("copy", n=5).sample(
        np.random.default_rng(seed), n - n // 2)]  # fmt: skip
    ids, attn = tok.batch([e.prompt for e in ex for _ in range(3)])
    assert len({int(m.sum()) for m in attn}) > 1  # left padding of different lengths
    return ids, attn


def _generate(model, ids, attn, T, temperature, top_p, greedy, seed):
    torch.manual_seed(seed)
    kw = {"do_sample": False} if greedy else {
        "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}  # fmt: skip
    out = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=T, pad_token_id=0, eos_token_id=2, **kw
    )
    return out[:, ids.shape[1] :], torch.get_rng_state()


def _own(model, ids, attn, T, temperature, top_p, greedy, seed):
    torch.manual_seed(seed)
    out = decode(
        model, ids, attn, max_new_tokens=T, temperature=temperature, top_p=top_p, greedy=greedy,
        eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    return out, torch.get_rng_state()


CASES = [
    # arch, T, temperature, top_p, greedy, suppress
    ("llama", 8, 1.0, 1.0, False, None),
    ("llama", 8, 0.7, 1.0, False, None),
    ("qwen2", 8, 1.5, 1.0, False, None),
    ("llama", 8, 0.8, 0.6, False, None),
    ("qwen2", 6, 1.0, 0.9, False, None),
    ("llama", 8, 1.0, 1.0, True, None),
    ("llama", 1, 1.0, 1.0, False, None),
    ("llama", 20, 5.0, 1.0, False, "all_but_eos_and_5"),  # every row stops early
    ("llama", 8, 1.0, 1.0, False, "eos"),  # no row can stop: exactly T tokens (the bench's setting)
]


@pytest.mark.parametrize(("arch", "T", "temperature", "top_p", "greedy", "suppress"), CASES)
def test_own_sampler_draws_generates_tokens(arch, T, temperature, top_p, greedy, suppress):
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, arch=arch, seed=3).eval()
    if suppress == "eos":
        model.generation_config.suppress_tokens = [2]
    elif suppress == "all_but_eos_and_5":
        model.generation_config.suppress_tokens = [i for i in range(tok.vocab_size) if i not in (2, 5)]
    assert own_sampler_ok(model)
    ids, attn = _prompts(tok)
    want, rng_want = _generate(model, ids, attn, T, temperature, top_p, greedy, seed=7)
    got, rng_got = _own(model, ids, attn, T, temperature, top_p, greedy, seed=7)
    assert got.shape == want.shape
    assert torch.equal(got, want)
    assert torch.equal(rng_got, rng_want)  # the same number of draws: later users of the RNG see no change
    if suppress == "all_but_eos_and_5":
        assert got.shape[1] < T  # the early stop was exercised
    if suppress == "eos":
        assert got.shape[1] == T and not (got == 2).any()


def test_generation_configs_it_does_not_reproduce_go_to_generate():
    """A processor ``decode`` does not apply (here a repetition penalty) sends ``sample`` to ``generate``:
    the rollout equals ``generate``'s with that processor, not ``decode``'s without it."""
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=3)
    assert own_sampler_ok(model)
    model.generation_config.repetition_penalty = 5.0
    assert not own_sampler_ok(model)
    task = get_task("copy", n=5)
    ex = task.sample(np.random.default_rng(2), 3)
    own = sample(model, tok, task, ex, 4, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=3)
    gen = sample(
        model, tok, task, ex, 4, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=3, sampler="generate"
    )
    assert torch.equal(own.completion_ids, gen.completion_ids)
    ids, attn = tok.batch([e.prompt for e in ex for _ in range(4)])
    plain, _ = _own(model.eval(), ids, attn, 8, 1.0, 1.0, False, seed=3)
    assert not torch.equal(plain, own.completion_ids[:, : plain.shape[1]])  # the penalty mattered


def test_sample_is_the_same_rollout_with_either_sampler():
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=1)
    task = get_task("addition", n=2)
    ex = task.sample(np.random.default_rng(4), 4)
    a = sample(model, tok, task, ex, 4, max_new_tokens=6, temperature=0.9, top_p=0.95, seed=2)
    b = sample(
        model, tok, task, ex, 4, max_new_tokens=6, temperature=0.9, top_p=0.95, seed=2, sampler="generate"
    )
    for f in ("completion_ids", "completion_mask", "reward", "truncated"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.texts == b.texts
