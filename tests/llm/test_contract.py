"""The LLM trainer as a host of the controller contract: every registered controller it accepts runs a
rollout of the tiny model (through the micro-batched backward, off-policy), and every one it cannot feed is
refused in one line before any work. Nothing here names a controller: the list is the registry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import controllers as C
from llm import train as T
from llm.config import PRESETS, Unchecked
from llm.rollout import token_stats
from llm.sft import run_sft

# how this trainer is configured to provide a field it provides only on request (the host's ``how``)
ENABLE = {"step_correct": {"step_signal": "prefix"}, "guide": {"guide_per_group": 1}}


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("warm")
    c = dataclasses.replace(PRESETS["tiny-copy"], name="warm", out_dir=str(root))
    return str(run_sft(c, progress=False))


def _controllers(name: str) -> tuple[str, ...]:
    if name == "grpo":
        return (name,)
    return (name, "grpo") if "rewards" in C.get(name).acts_on() else ("grpo", name)


def _config(name, warm, out):
    extra: dict = {}
    for f in C.get(name).needs():
        extra.update(ENABLE.get(f, {}))
    return dict(
        name="c", out_dir=str(out), model=warm, sft_steps=0, steps=1, prompts_per_step=4, group_size=4,
        max_new_tokens=5, eval_every=0, checkpoint_every=0, tracker="none", micro_batch_size=8, epochs=2,
        controllers=_controllers(name), **extra,
    )  # fmt: skip


@pytest.mark.parametrize("name", C.names())
def test_every_controller_runs_in_the_trainer_or_is_refused_before_work(name, warm, tmp_path, capsys):
    kw = _config(name, warm, tmp_path)
    # the host of this configuration, before validation refuses it
    host = Unchecked(**{**dataclasses.asdict(PRESETS["tiny-copy"]), **kw}).host()
    pipe = C.Pipeline([C.get(n) for n in kw["controllers"]])
    refused = [m for m in (C.contract.problem(c, host) for c in pipe.controllers) if m]
    if refused:
        args = ["--model", warm, "--sft-steps", "0", "--out-dir", str(tmp_path), "--controllers",
                *kw["controllers"]]  # fmt: skip
        assert T.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {refused[0]}" and "\n" not in err
        assert not any(tmp_path.iterdir())  # nothing was written
        return
    cfg = dataclasses.replace(PRESETS["tiny-copy"], **kw)
    T.train(cfg, progress=False)
    (row,) = T.read_metrics(cfg.run_dir)
    assert row["train/optimizer_steps_done"] == 2.0  # both epochs stepped (none was skipped)
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))


def test_the_trainer_refuses_a_critic_and_names_the_simulator(warm, tmp_path, capsys):
    assert T.main(["--controllers", "vapo", "--out-dir", str(tmp_path)]) == 2
    assert "the simulator does" in capsys.readouterr().err


def test_seed_grpo_reads_the_tasks_answer_clusters(warm, tmp_path, monkeypatch):
    """SEED-GRPO's answer ids come from the task's answer normalisation: equal ids, equal answers."""
    seen = []
    real = C.policy_loss
    monkeypatch.setattr(T.C, "policy_loss", lambda b, *a, **k: (seen.append(b), real(b, *a, **k))[1])
    kw = {**_config("seed_grpo", warm, tmp_path), "epochs": 1}
    tr = T.Trainer(dataclasses.replace(PRESETS["tiny-copy"], **kw), progress=False)
    texts = []
    sample = T.sample
    monkeypatch.setattr(
        T, "sample", lambda *a, **k: (lambda r: (texts.extend(r.texts), r)[1])(sample(*a, **k))
    )
    tr.run()
    (b,) = seen
    keys = [t.strip() for t in texts]
    for i in range(len(keys)):
        for j in range(len(keys)):
            assert (int(b.answer[i]) == int(b.answer[j])) == (keys[i] == keys[j])


def test_siren_nucleus_entropy_comes_from_the_log_prob_pass_with_its_gradient(warm):
    """token_stats(with_topp=True) gives controllers.nucleus_entropy of the same logits, chunked, with the
    same gradient."""
    from llm.models import load_model
    from llm.rollout import sample
    from llm.tasks import get_task
    from llm.tokenizer import load_tokenizer

    model, tok = load_model(warm).double(), load_tokenizer(warm)
    task = get_task("copy", n=3)
    import numpy as np

    roll = sample(model, tok, task, task.sample(np.random.default_rng(0), 2), 3, max_new_tokens=5,
                  temperature=0.8, top_p=1.0, seed=0)  # fmt: skip
    _, _, topp = token_stats(model, roll, temperature=0.8, chunk_tokens=3, entropy_grad=True, with_topp=True)
    T_ = roll.completion_ids.shape[1]
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    attn = torch.cat([roll.prompt_mask, torch.ones_like(roll.completion_ids)], 1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -T_ - 1 : -1]
    ref = C.nucleus_entropy(logits, temperature=0.8)
    torch.testing.assert_close(topp, ref, rtol=1e-12, atol=1e-12)
    w = torch.rand(topp.shape, dtype=topp.dtype, generator=torch.Generator().manual_seed(0))
    params = [p for p in model.parameters() if p.requires_grad]
    g1 = torch.autograd.grad((topp * w).sum(), params, allow_unused=True)
    g2 = torch.autograd.grad((ref * w).sum(), params, allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_siren_trains_the_same_with_and_without_micro_batches(warm, tmp_path):
    """The nucleus entropy is a third autograd leaf of the whole-batch loss; its gradient reaches the model
    micro-batch by micro-batch. Two rollouts: SIREN's extra term is 0 on the first (its anchor)."""
    grads = []
    for mb in (0, 4):
        kw = {**_config("siren", warm, tmp_path), "name": f"mb{mb}", "micro_batch_size": mb, "epochs": 1,
              "steps": 2, "hp": ("siren.coef=50.0",)}  # fmt: skip
        tr = T.Trainer(dataclasses.replace(PRESETS["tiny-copy"], **kw), progress=False)
        step, mine = tr.opt.step, []

        def record(*a, _tr=tr, _step=step, _mine=mine, **k):
            _mine.append(torch.cat([p.grad.flatten() for p in _tr.model.parameters() if p.grad is not None]))
            return _step(*a, **k)

        tr.opt.step = record
        tr.run()
        grads.append(mine)
    (a0, a1), (b0, b1) = grads
    assert torch.allclose(a0, b0, rtol=1e-4, atol=1e-7)
    assert torch.allclose(a1, b1, rtol=1e-4, atol=1e-7), (a1 - b1).abs().max()
    rs = T.read_metrics(tmp_path / "mb0")
    assert rs[1]["ctrl/siren/h_masked"] > 0 and rs[1]["loss/extra"] != 0.0
