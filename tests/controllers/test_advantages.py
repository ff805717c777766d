"""Advantage transforms: differential against textbook forms, metamorphic shift invariance."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
import theory
from tests.controllers.helpers import batches


def _seq(adv, batch):
    """Recover the per-sequence advantage from its broadcast (first valid token)."""
    return adv[:, 0].detach().numpy()


@given(batches(binary=False))
def test_grpo_matches_numpy(batch):
    adv = C.Pipeline([C.get("grpo")]).advantages(batch)
    r, g = batch.reward.numpy(), batch.group.numpy()
    for gid in np.unique(g):
        sel = g == gid
        if sel.sum() < 2:
            np.testing.assert_allclose(_seq(adv, batch)[sel], 0.0)
            continue
        ref = (r[sel] - r[sel].mean()) / (r[sel].std(ddof=1) + 1e-6)
        np.testing.assert_allclose(_seq(adv, batch)[sel], ref, atol=1e-10)


@given(batches(binary=False), st.floats(-5, 5), st.sampled_from(["grpo", "dr_grpo", "qae", "rloo", "opo"]))
def test_reward_shift_leaves_advantages_unchanged(batch, c, name):
    if name == "rloo" and int(torch.bincount(batch.group).min()) < 2:
        return
    pipe = C.Pipeline([C.get(name)])
    a = pipe.advantages(batch)
    b = pipe.advantages(batch.replace(reward=batch.reward + c))
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


@given(batches(binary=True), st.sampled_from([0.2, 0.4, 0.6, 0.8]))
def test_qae_baseline_is_theory_quantile(batch, k):
    adv = C.Pipeline([C.get("qae", k=k, scale="none")]).advantages(batch)
    r, g = batch.reward.numpy(), batch.group.numpy()
    for gid in np.unique(g):
        sel = g == gid
        b = theory.quantile_baseline(r[sel], k)
        np.testing.assert_allclose(_seq(adv, batch)[sel], r[sel] - b, atol=1e-12)
        p = r[sel].mean()
        if p <= 1 - k:  # hard prompt: wrong answers get no signal
            assert np.all(_seq(adv, batch)[sel][r[sel] == 0] == 0)
        else:  # easy prompt: correct answers get no signal
            assert np.all(_seq(adv, batch)[sel][r[sel] == 1] == 0)


@given(batches(binary=False, n_groups=2, min_b=4))
def test_rloo_leave_one_out(batch):
    adv = _seq(C.Pipeline([C.get("rloo")]).advantages(batch), batch)
    r, g = batch.reward.numpy(), batch.group.numpy()
    for i in range(len(r)):
        others = r[(g == g[i]) & (np.arange(len(r)) != i)]
        assert adv[i] == pytest.approx(r[i] - others.mean(), abs=1e-10)


def test_rloo_singleton_rejected():
    b = C.TokenBatch.from_sequences(
        torch.zeros(3, 2), torch.ones(3, 2), reward=torch.ones(3), group=torch.tensor([0, 0, 1])
    )
    with pytest.raises(ValueError, match="group: 1 sequence\\(s\\) are alone"):
        C.Pipeline([C.get("rloo")]).advantages(b)


@given(batches(binary=False))
def test_opo_equal_lengths_is_dr_grpo(batch):
    full = batch.replace(mask=torch.ones_like(batch.mask))
    torch.testing.assert_close(
        C.Pipeline([C.get("opo")]).advantages(full), C.Pipeline([C.get("dr_grpo")]).advantages(full)
    )


@given(batches(binary=True))
def test_psr_nsr_w_reinforce(batch):
    def a(name, **hp):
        return C.Pipeline([C.get(name, **hp)]).advantages(batch)

    torch.testing.assert_close(a("psr") + a("nsr"), a("w_reinforce", lam=1.0))
    r2 = (2 * batch.reward - 1)[:, None] * batch.mask
    torch.testing.assert_close(a("w_reinforce", lam=1.0), r2)
    assert torch.all(a("w_reinforce")[batch.reward == 1][:, 0] == 0.1)


@given(batches(), st.sampled_from(["grpo", "dr_grpo", "qae", "opo", "psr", "nsr", "w_reinforce"]))
def test_padding_tokens_get_zero_advantage(batch, name):
    adv = C.Pipeline([C.get(name)]).advantages(batch)
    assert torch.all(adv[batch.mask == 0] == 0)


def test_missing_reward_named():
    b = C.TokenBatch.from_sequences(torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"reward: None; allowed: .*'grpo'"):
        C.Pipeline([C.get("grpo")]).advantages(b)
