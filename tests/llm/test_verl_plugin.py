"""The verl plugin (llm.engines.verl_plugin), against verl 0.9.1's own functions.

Parity: verl's ``ppo_loss`` (vanilla with its dual clip, clip_cov with the same random stream, kl_cov,
the entropy bonus, the KL loss) and ``entrolab_loss`` with the equivalent pipeline give the same loss
and the same gradient on the same TensorDict, for all four aggregation modes and verl's global batch
normalisation; the ``entrolab`` advantage estimator with ``grpo`` equals verl's GRPO advantages.
Registration: importing verl loads the plugin through its entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import verl
from verl.trainer.ppo import core_algos
from verl.workers.utils import losses

import controllers as C
from llm.engines import verl_plugin as V
from tests.llm.verl_helpers import actor_config, inputs

MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def test_pinned_version():
    assert verl.__version__ == V.TESTED_VERL


def _both(loss_mode, agg, seed=0, pipeline=None, env=None, monkeypatch=None, **kw):
    """(verl's loss, ours, verl's gradient, ours) on the same inputs and the same torch random stream."""
    keys = ("ref", "is_weights", "n_tokens", "n_seqs", "dp_size", "full")
    cfg_kw = {k: v for k, v in kw.items() if k not in keys}
    in_kw = {k: v for k, v in kw.items() if k in keys}
    cfg = actor_config(loss_mode, agg, **cfg_kw)
    out, data, leaves = inputs(seed, **in_kw)
    torch.manual_seed(123)
    theirs, _ = losses.ppo_loss.__wrapped__(cfg, out, data)
    g_theirs = torch.autograd.grad(theirs, leaves, allow_unused=True)
    pipe = pipeline if pipeline is not None else V.pipeline_from_verl_config(cfg)
    monkeypatch.setenv(V.ENV, json.dumps([[c.name, c.hyperparameters()] for c in pipe.controllers]))
    # the entrolab loss reads none of verl's clip and KL options: they stay at verl's defaults
    ours_kw = {k: v for k, v in cfg_kw.items() if k not in V.UNUSED_ACTOR}
    ours_cfg = actor_config(
        "entrolab", agg, **{**ours_kw, "entropy_coeff": 0.0, "use_kl_loss": cfg.use_kl_loss}
    )
    ours_cfg.policy_loss.loss_mode = "entrolab"
    out, data, leaves = inputs(seed, **in_kw)
    torch.manual_seed(123)
    ours, metrics = losses.ppo_loss(ours_cfg, out, data)
    g_ours = torch.autograd.grad(ours, leaves, allow_unused=True)
    return theirs, ours, g_theirs, g_ours, metrics


def _close(a, b):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                          rtol=1e-9, atol=1e-12)  # fmt: skip


def _grads_equal(ga, gb):
    for x, y in zip(ga, gb, strict=True):
        x = torch.zeros(1, dtype=torch.float64) if x is None else x
        y = torch.zeros(1, dtype=torch.float64) if y is None else y
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12), (x, y)


@pytest.mark.parametrize("agg", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vanilla_with_dual_clip(agg, seed, monkeypatch):
    t, o, gt, go, _ = _both("vanilla", agg, seed, monkeypatch=monkeypatch)
    assert _close(t, o) and float(t) != 0
    _grads_equal(gt, go)


def test_vanilla_without_dual_clip(monkeypatch):
    """verl always applies its dual clip; with clip_ratio_c far above any ratio it never binds, and the
    equivalent pipeline is a plain ppo_clip (dual_clip=None)."""
    pipe = C.Pipeline([C.get("ppo_clip")])
    for agg in MODES:
        t, o, gt, go, _ = _both("vanilla", agg, 6, pipeline=pipe, monkeypatch=monkeypatch, clip_ratio_c=1e9)
        assert _close(t, o), agg
        _grads_equal(gt, go)
    # a dual clip that binds (c = 1.5 on these inputs) separates the two, so the test above can fail
    t, o, _, _, _ = _both(
        "vanilla", "token-mean", 6, pipeline=pipe, monkeypatch=monkeypatch, clip_ratio_c=1.5
    )
    assert not _close(t, o)


@pytest.mark.parametrize("agg", MODES)
def test_global_batch_normalisation_and_rollout_weights(agg, monkeypatch):
    """A micro-batch of a larger mini-batch: verl divides by the mini-batch's token (or sequence) count,
    not the micro-batch's; so does the plugin. Rollout importance weights multiply the policy-gradient
    term in both. (The gather over data-parallel ranks: tests/llm/dist_check.py.)"""
    t, o, gt, go, _ = _both(
        "vanilla",
        agg,
        3,
        monkeypatch=monkeypatch,
        n_tokens=41,
        n_seqs=13,
        is_weights=True,
        clip_ratio_high=0.28,
    )
    assert _close(t, o)
    _grads_equal(gt, go)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clip_cov_same_random_stream(seed, monkeypatch):
    """frac·N is an integer here (0.1 · 30 tokens = 3, B = 5 × T = 6, every response full): verl's
    max(⌊frac·N⌋, 1) and entrolab's ⌈frac·N⌉ agree, and both draw torch.randperm from the global stream."""
    cfg_kw = dict(policy_loss=dict(loss_mode="clip_cov", clip_cov_ratio=0.1, clip_cov_lb=-1.0, clip_cov_ub=5.0,
                                   kl_cov_ratio=0.1, ppo_kl_coef=0.5))  # fmt: skip
    t, o, gt, go, m = _both("clip_cov", "token-mean", seed, monkeypatch=monkeypatch, full=True, **cfg_kw)
    assert _close(t, o)
    _grads_equal(gt, go)
    assert m["ctrl/clip_cov/frac_detached"].values[0] > 0


@pytest.mark.parametrize("agg", MODES)
def test_kl_cov(agg, monkeypatch):
    """Full responses again (3 of 30 tokens penalised by both); verl applies no PPO clip here either."""
    t, o, gt, go, m = _both("kl_cov", agg, 4, monkeypatch=monkeypatch, full=True)
    assert m["ctrl/kl_cov/frac_penalised"].values[0] == pytest.approx(0.1)
    assert _close(t, o)
    _grads_equal(gt, go)


def test_entropy_bonus_and_kl_loss(monkeypatch):
    for agg in MODES:
        t, o, gt, go, _ = _both(
            "vanilla", agg, 5, monkeypatch=monkeypatch, ref=True, entropy_coeff=0.01, use_kl_loss=True,
            kl_loss_coef=0.1, kl_loss_type="low_var_kl",
        )  # fmt: skip
        assert _close(t, o), agg
        _grads_equal(gt, go)


def test_grpo_advantages_equal_verls():
    g = torch.Generator().manual_seed(0)
    B, T = 12, 5
    mask = (torch.rand(B, T, generator=g) > 0.2).float()
    mask[:, 0] = 1
    scores = torch.randint(0, 2, (B,), generator=g).float()
    rewards = torch.zeros(B, T)
    last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)
    rewards[last] = scores
    index = [f"uid{i // 4}" for i in range(B)]
    index[-1] = "lonely"  # a group of one: verl gives it mean 0, std 1
    theirs, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, index)
    V._CACHE.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(V.ENV, json.dumps([["grpo", {"singleton": "verl"}]]))
        ours, returns = core_algos.get_adv_estimator_fn("entrolab")(
            token_level_rewards=rewards, response_mask=mask, index=index, config=None
        )
    assert torch.allclose(ours, theirs.float(), atol=1e-6)
    assert torch.equal(ours, returns)


# -- what verl cannot feed, refused in one line ----------------------------------------------------------


@pytest.mark.parametrize("trainer", [False, True])
@pytest.mark.parametrize("name", C.names())
def test_every_controller_is_accepted_or_refused_in_one_line(name, trainer):
    why = C.contract.problem(C.get(name), V.verl_host(trainer=trainer))
    if why is None:
        V.parse_pipeline(json.dumps([name]))
    else:
        assert "\n" not in why and name in why


def test_the_refused_set_follows_the_declarations():
    """Who the plugin refuses follows from the declarations, with no list of names to keep in step: a field
    verl cannot give, whole groups inside the loss (verl's micro-batches come from a shuffled mini-batch), or
    per-token values read while shaping rewards (the estimator gets none). With verl's own trainer modes,
    state is refused too; the entrolab trainer mode keeps it."""
    host = V.verl_host(trainer=True)
    lacks = set(C.contract.FIELDS) - host.provides
    refused = set()
    for n in C.names():
        c = C.get(n)
        expect = (
            bool(c.needs() & lacks)
            or (c.whole_groups() and c.stage() == "loss")
            or (c.stage() == "sampling" and bool(c.sampling_reads() & {"logp", "old_logp", "entropy"}))
        )
        why = C.contract.problem(c, host)
        assert (why is not None) == expect, (n, why)
        if why is not None:
            refused.add(n)
    assert refused and "grpo" not in refused and "clip_cov" not in refused  # the rule is exercised both ways
    stateless = {n for n in C.names() if C.contract.problem(C.get(n), V.verl_host(trainer=False))}
    assert stateless - refused == {n for n in C.names() if C.get(n).stateful()} - refused
    assert stateless - refused  # some stateful controller runs only in the entrolab trainer mode
    assert C.contract.problem(C.get("ref_kl", reset_every=4), V.verl_host(trainer=True)).startswith(
        "controllers: 'ref_kl' asks for the reference model to be reset"
    )


def test_refusals(monkeypatch):
    for spec, match in (
        ('["fork_bonus"]', "'fork_bonus' reads entropy when it shapes rewards"),
        ('[["ref_kl", {"reset_kl": 0.1}]]', "'ref_kl' asks for the reference model to be reset"),
        ('["dynamic_sampling"]', "inside the loss, but verl"),
        ('["siren"]', "needs entropy_topp"),
        ("grpo nosuch", "^ENTROLAB_PIPELINE: unknown controller 'nosuch'; allowed: acc_filter"),
        ('["grpo", "nosuch"]', "^ENTROLAB_PIPELINE: unknown controller 'nosuch'; allowed: acc_filter"),
        ("eps=1 grpo", "^ENTROLAB_PIPELINE: got 'eps=1' before any controller name"),
        ("[grpo", "^ENTROLAB_PIPELINE: got '\\[grpo'; allowed: a spec"),
        ('[["grpo", 3]]', "^ENTROLAB_PIPELINE: item"),
    ):
        V._CACHE.clear()
        monkeypatch.setenv(V.ENV, spec)
        with pytest.raises(ValueError, match=match):
            V.pipeline()
    monkeypatch.delenv(V.ENV)
    with pytest.raises(ValueError, match=r"^ENTROLAB_PIPELINE: not set"):
        V.pipeline()


def test_a_spec_and_its_json_name_the_same_pipeline(monkeypatch):
    """ENTROLAB_PIPELINE takes the spec every command line takes (controllers.spec), or the JSON list."""
    got = []
    for text in ("grpo ppo_clip eps_hi=0.28 clip_cov frac=0.0002",
                 '["grpo", ["ppo_clip", {"eps_hi": 0.28}], ["clip_cov", {"frac": 0.0002}]]'):  # fmt: skip
        V._CACHE.clear()
        monkeypatch.setenv(V.ENV, text)
        got.append(V.pipeline().controllers)
    assert got[0] == got[1] and got[0][1].eps_hi == 0.28 and got[0][2].frac == 0.0002


def test_options_the_loss_would_drop_are_refused(monkeypatch):
    monkeypatch.setenv(V.ENV, '["ppo_clip"]')
    out, data, _ = inputs()
    with pytest.raises(ValueError, match=r"^actor.entropy_coeff: got 0.01"):
        losses.ppo_loss(actor_config("entrolab", entropy_coeff=0.01), out, data)
    with pytest.raises(ValueError, match=r"^actor.use_kl_loss: got True, but no controller"):
        losses.ppo_loss(actor_config("entrolab", use_kl_loss=True), out, data)
    with pytest.raises(ValueError, match=r"^actor.calculate_entropy: got False"):
        losses.ppo_loss(actor_config("entrolab"), {"log_probs": out["log_probs"]}, data)
    with pytest.raises(ValueError, match=r"runs at verl's loss_fn level"):
        core_algos.get_policy_loss_fn("entrolab")(None, None, None, None)
    # another loss mode still reaches verl's own loss
    loss, _ = losses.ppo_loss(actor_config("vanilla"), out, data)
    assert torch.isfinite(loss)


def test_the_estimator_refuses_a_pipeline_that_makes_no_advantages(monkeypatch):
    """Reached without verl's validate_config (which refuses it first): zero advantages are not returned."""
    monkeypatch.setenv(V.ENV, '["ppo_clip"]')
    V._CACHE.clear()
    V.pipeline()  # loss-only pipelines parse: verl's own estimator may make the advantages
    mask = torch.ones(4, 3)
    with pytest.raises(ValueError, match=r"^controllers: got \['ppo_clip'\], none of which makes advantages"):
        core_algos.get_adv_estimator_fn("entrolab")(torch.rand(4, 3), mask, index=["a", "a", "b", "b"])


def test_importing_verl_loads_the_plugin_through_its_entry_point():
    code = (
        "import verl\nfrom verl.trainer.ppo import core_algos\nfrom verl.workers.utils import losses\n"
        "print(core_algos.get_adv_estimator_fn('entrolab').__module__, losses.ppo_loss._entrolab)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["llm.engines.verl_plugin", "True"]
