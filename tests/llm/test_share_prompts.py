"""``share_prompts``: each group's prompt computed once (``llm.rollout.prefill``) and its keys and values
repeated to the group's rows. The log-probs, entropies, gradients and sampler logits agree with the
unshared pass up to float32 rounding; runs of adjacent equal prompts are found from the rows themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm.models import tiny_model
from llm.rollout import prefill, prompt_runs, sample, token_stats
from llm.tasks import get_task
from llm.tokenizer import CharTokenizer


def _rollout(arch: str, G: int = 4, T: int = 8, seed: int = 0):
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, arch=arch, seed=3)
    task = get_task("addition", n=2)  # and copy prompts, of another length: left padding
    ex = [
        *task.sample(np.random.default_rng(seed), 2),
        *get_task("copy", n=5).sample(np.random.default_rng(seed), 2),
    ]
    roll = sample(model, tok, task, ex, G, max_new_tokens=T, temperature=1.0, top_p=1.0, seed=5)
    assert len({int(m.sum()) for m in roll.prompt_mask}) > 1  # left padding of different lengths
    return model, roll


def test_prompt_runs_finds_adjacent_equal_prompts():
    ids = torch.tensor([[0, 1, 2], [0, 1, 2], [3, 4, 5], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    attn = torch.ones_like(ids)
    attn[4, 0] = 0  # the same ids with another mask: another prompt
    assert prompt_runs(ids, attn).tolist() == [0, 0, 2, 3, 4, 5]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("T", [1, 8])
def test_shared_prompts_give_the_same_logprobs_entropies_and_gradients(arch, T):
    model, roll = _rollout(arch, T=T)
    model.train()
    out = {}
    for share in (False, True):
        model.zero_grad()
        logp, ent = token_stats(model, roll, temperature=0.8, chunk_tokens=16, entropy_grad=True,
                                share_prompts=share)  # fmt: skip
        m = roll.completion_mask
        ((logp * m).sum() + 0.1 * (ent * m).sum()).backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[share] = (logp.detach(), ent.detach(), grad)
    for a, b in zip(out[False], out[True], strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert out[False][2].abs().max() > 1e-3  # a gradient to compare, and it reaches the prompt's layers


def test_prefill_shares_the_cache_and_the_logits():
    model, roll = _rollout("llama")
    model.eval()
    with torch.no_grad():
        a, ca = prefill(model, roll.prompt_ids, roll.prompt_mask, False)
        b, cb = prefill(model, roll.prompt_ids, roll.prompt_mask, True)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for la, lb in zip(ca.layers, cb.layers, strict=True):
        torch.testing.assert_close(lb.keys, la.keys, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(lb.values, la.values, rtol=1e-4, atol=1e-5)


def test_sampling_with_shared_prompts_keeps_the_rollouts_shape_and_mostly_its_tokens():
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=3)
    task = get_task("addition", n=2)
    ex = task.sample(np.random.default_rng(1), 4)
    kw = dict(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=2)
    a = sample(model, tok, task, ex, 4, **kw)
    b = sample(model, tok, task, ex, 4, share_prompts=True, **kw)
    assert a.completion_ids.shape == b.completion_ids.shape
    # the same RNG draws from logits equal up to rounding: a token differs only where a draw sits on a
    # CDF boundary, which rounding of 1e-6 moves with probability about 1e-6 per draw
    assert (a.completion_ids == b.completion_ids).float().mean() > 0.99
