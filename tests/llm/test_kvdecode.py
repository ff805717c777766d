"""``llm.kvdecode.KVDecoder``: a decode step on a cache allocated once gives the model's own forward's logits
to the bit (against ``DynamicCache``), for Llama and Qwen2, shared key/value heads or not, padded prompts
or not; the sampler through it draws ``generate``'s tokens; models it does not mirror are named and sent
to the model's forward."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.kvdecode import KVDecoder, unsupported
from llm.rollout import decode, prefill, prompt_positions
from llm.tasks import get_task
from llm.tokenizer import CharTokenizer


def _model(arch: str = "llama", kv_heads: int = 4, seed: int = 0, **extra):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tok = CharTokenizer()
    cls = LlamaConfig if arch == "llama" else Qwen2Config
    cfg = cls(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=True, **extra,
    )  # fmt: skip
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval(), tok


def _prompts(tok, padded: bool, n: int = 4):
    ex = [*get_task("addition", n=2).sample(np.random.default_rng(1), n // 2),
          *get_task("copy", n=5).sample(np.random.default_rng(1), n - n // 2)]  # fmt: skip
    prompts = [e.prompt for e in ex] if padded else [ex[0].prompt] * n
    ids, attn = tok.batch([p for p in prompts for _ in range(2)])
    assert bool((attn == 0).any()) == padded
    return ids, attn


MODELS = [("llama", 4), ("llama", 2), ("qwen2", 4), ("qwen2", 1)]


def _forward_and_decoder(model, ids, attn, fed):
    """(the model's forward's logits (B, steps, V) against ``DynamicCache``, the decoder's, the decoder,
    the last position ids) for the same prompts and fed tokens (B, steps)."""
    B, steps = fed.shape
    with torch.no_grad():
        _, cache = prefill(model, ids, attn, False)
        want, a, pos = [], attn, prompt_positions(attn)
        for t in range(steps):
            a = torch.cat([a, a.new_ones((B, 1))], -1)
            pos = pos[:, -1:] + 1
            out = model(
                input_ids=fed[:, t : t + 1].clone(), attention_mask=a, position_ids=pos, cache=cache,
                use_cache=True, logits_to_keep=1,
            )  # fmt: skip
            want.append(out.logits)
        _, cache = prefill(model, ids, attn, False)
        dec = KVDecoder.build(model, cache, attn, steps)
        got, pos = [], prompt_positions(attn)
        for t in range(steps):
            pos = pos[:, -1:] + 1
            got.append(dec.step(fed[:, t], pos))
    return torch.cat(want, 1), torch.cat(got, 1), dec, pos


@pytest.mark.parametrize(("arch", "kv_heads"), MODELS)
@pytest.mark.parametrize("padded", [True, False])
def test_step_logits_equal_the_models_forward_to_the_bit(arch, kv_heads, padded):
    model, tok = _model(arch, kv_heads)
    assert unsupported(model) is None
    ids, attn = _prompts(tok, padded)
    B, steps = ids.shape[0], 6
    fed = torch.randint(3, tok.vocab_size, (B, steps), generator=torch.Generator().manual_seed(2))
    want, got, dec, pos = _forward_and_decoder(model, ids, attn, fed)
    assert got.shape == want.shape == (B, steps, tok.vocab_size)
    assert torch.equal(got, want)
    assert not torch.equal(got[:, 0], got[:, 1])  # the steps differ: the cache is read, not a constant
    with pytest.raises(ValueError, match=r"cache's \d+ positions are full"):
        dec.step(fed[:, 0], pos + 1)


@pytest.mark.parametrize(("arch", "kv_heads"), MODELS)
@pytest.mark.parametrize("padded", [True, False])
def test_sampler_through_the_static_cache_draws_generates_tokens(arch, kv_heads, padded):
    model, tok = _model(arch, kv_heads, seed=5)
    ids, attn = _prompts(tok, padded)
    torch.manual_seed(3)
    gen = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=10, pad_token_id=0, eos_token_id=2,
        do_sample=True, temperature=1.3, top_p=1.0, top_k=0,
    )[:, ids.shape[1] :]  # fmt: skip
    for static in (True, False):
        torch.manual_seed(3)
        own = decode(
            model, ids, attn, max_new_tokens=10, temperature=1.3, top_p=1.0, greedy=False, eos_token_id=2,
            pad_token_id=0, static_cache=static,
        )  # fmt: skip
        assert torch.equal(own, gen), static


@functools.cache
def _cached_model(arch: str, kv_heads: int):
    return _model(arch, kv_heads, seed=7)


@settings(max_examples=25)
@given(
    arch=st.sampled_from(["llama", "qwen2"]),
    kv_heads=st.sampled_from([1, 2, 4]),
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_step_logits_equal_the_forward_for_any_left_padding(arch, kv_heads, lengths, steps, seed):
    """Differential, over random prompt lengths (so random left padding, or none), batch sizes and
    numbers of steps: the decoder's logits are the model's forward's, to the bit."""
    model, tok = _cached_model(arch, kv_heads)
    g = torch.Generator().manual_seed(seed)
    L, B = max(lengths), len(lengths)
    ids = torch.randint(3, tok.vocab_size, (B, L), generator=g)
    attn = (torch.arange(L)[None, :] >= L - torch.tensor(lengths)[:, None]).long()
    ids = ids * attn  # padding id 0 on the left
    fed = torch.randint(3, tok.vocab_size, (B, steps), generator=g)
    want, got, _, _ = _forward_and_decoder(model, ids, attn, fed)
    assert torch.equal(got, want)


def _lora_like(model):
    class Adapter(torch.nn.Linear):
        pass

    q = model.model.layers[0].self_attn.q_proj
    ad = Adapter(q.in_features, q.out_features, bias=False)
    ad.weight.data.copy_(q.weight)
    model.model.layers[0].self_attn.q_proj = ad
    return model


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _model(attn_implementation="eager")[0], "attention implementation 'eager'"),
        (lambda: _model(rope_scaling={"rope_type": "linear", "factor": 2.0})[0], "rotary type 'linear'"),
        (lambda: _model(hidden_act="gelu")[0], "activation"),
        (
            lambda: _model("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)[0],
            "sliding-window",
        ),
        (lambda: _lora_like(_model()[0]), "not a plain nn.Linear"),
        (lambda: _gpt2(), "is not LlamaForCausalLM"),
    ],
)
def test_models_it_does_not_mirror_are_named_and_use_their_forward(make, reason):
    model = make().eval()
    why = unsupported(model)
    assert why is not None and reason in why
    tok = CharTokenizer()
    ids, attn = _prompts(tok, padded=True)
    _, cache = prefill(model, ids, attn, False)
    assert KVDecoder.build(model, cache, attn, 4) is None
    torch.manual_seed(1)  # the sampler still reproduces generate, through the model's forward
    gen = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=4, pad_token_id=0, eos_token_id=2, do_sample=True,
        top_k=0,
    )[:, ids.shape[1] :]  # fmt: skip
    torch.manual_seed(1)
    own = decode(
        model,
        ids,
        attn,
        max_new_tokens=4,
        temperature=1.0,
        top_p=1.0,
        greedy=False,
        eos_token_id=2,
        pad_token_id=0,
    )
    assert torch.equal(own, gen)


def _gpt2():
    from transformers import AutoModelForCausalLM, GPT2Config

    cfg = GPT2Config(
        vocab_size=CharTokenizer().vocab_size, n_embd=32, n_layer=1, n_head=2, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_static_cache_under_bf16_autocast_draws_the_forwards_tokens(arch):
    """Under accelerate's CPU autocast (``--mixed-precision bf16``) the step casts where the forward casts:
    the same tokens with the static cache on and off."""
    model, tok = _model(arch, kv_heads=2, seed=4)
    ids, attn = _prompts(tok, padded=True)
    out = []
    for static in (True, False):
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(decode(
                model, ids, attn, max_new_tokens=12, temperature=1.0, top_p=1.0, greedy=False, eos_token_id=2,
                pad_token_id=0, static_cache=static,
            ))  # fmt: skip
    assert torch.equal(out[0], out[1])
