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
        # the gate p ≤ 1 − K read as decimals: 1 − 0.8 = 0.19999999999999996 < 0.2 = 1/5 in floats, which
        # once sent a 1-of-5 group at K = 0.8 to the wrong branch of this test (the code was right)
        if p <= 1 - k + 1e-12:  # hard prompt: wrong answers get no signal
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


@given(batches(binary=False, max_b=12), st.sampled_from([0.1, 0.25, 0.4, 0.5, 0.75, 0.9]))
def test_vectorised_group_quantile_matches_per_group_loop(batch, k):
    from controllers.groups import group_index, group_quantile

    idx, n = group_index(batch)
    got = group_quantile(batch.reward, idx, n, k)
    for gid in range(n):
        sel = (idx == gid).numpy()
        ref = theory.quantile_baseline(batch.reward.numpy()[sel], k)
        np.testing.assert_allclose(got.numpy()[sel], ref)


@given(batches(binary=True, max_b=10, off_policy=True), st.floats(0.0, 1.0))
def test_unlikeliness_matches_hand_rank(batch, beta):
    c = C.get("unlikeliness", rank_penalty=beta)
    r_tilde = c.shaped_rewards(batch).numpy()
    r, g = batch.reward.numpy(), batch.group.numpy()
    m = batch.mask.numpy()
    likelihood = (batch.old_logp.numpy() * m).sum(1) / np.maximum(m.sum(1), 1)
    for gid in np.unique(g):
        members = np.flatnonzero(g == gid)
        order = members[np.argsort(likelihood[members], kind="stable")]
        for rank, i in enumerate(order):
            assert r_tilde[i] == pytest.approx(r[i] * (1 - beta * rank / len(members)))
    assert np.all(r_tilde[r == 0] == 0)  # wrong answers are never changed
    adv = c.advantages(batch, {})
    ref = C.get("grpo").advantages(batch.replace(reward=torch.from_numpy(r_tilde)), {})
    torch.testing.assert_close(adv, ref)


@given(batches(binary=False, max_b=8), st.floats(0.0, 2.0), st.floats(1.01, 5.0))
def test_entropy_adv_never_flips_sign_and_bounds_psi(batch, alpha, kappa):
    g = torch.Generator().manual_seed(0)
    b = batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=torch.float64) * batch.mask)
    a = C.get("entropy_adv", alpha=alpha, kappa=kappa).advantages(b, {})
    psi = a - b.adv
    assert bool((psi >= 0).all())
    assert bool((psi <= alpha * b.entropy + 1e-12).all()) and bool((psi <= b.adv.abs() / kappa + 1e-12).all())
    assert bool((a[b.adv < 0] < 0).all())  # a negative advantage stays negative (κ > 1)
    assert bool((a[b.adv > 0] >= b.adv[b.adv > 0]).all())


@given(batches(binary=True, min_b=4, max_b=12, full=True), st.sampled_from(["linear", "exp", "focal"]))
def test_seed_grpo_semantic_entropy_and_modulation(batch, f):
    c = C.get("seed_grpo", f=f)
    se, se_max = c.semantic_entropy(batch)
    g, ans = batch.group.numpy(), batch.answer.numpy()
    for gid in np.unique(g):
        sel = g == gid
        _, counts = np.unique(ans[sel], return_counts=True)
        p = counts / counts.sum()
        np.testing.assert_allclose(se.numpy()[sel], -(p * np.log(p)).sum(), atol=1e-12)
        np.testing.assert_allclose(se_max.numpy()[sel], np.log(sel.sum()))
    adv = c.advantages(batch, {})
    base = C.get("grpo").advantages(batch, {})
    x = torch.where(se_max > 0, se / se_max.clamp_min(1e-12), torch.zeros_like(se))
    fx = {"linear": 1 - x, "exp": torch.exp(-x), "focal": (1 - x) ** 2}[f]
    torch.testing.assert_close(adv, base * fx[:, None])


def test_seed_grpo_extremes():
    """All answers equal → SE = 0 → plain GRPO; all distinct → SE = SE_max → linear f = 0."""
    logp = torch.zeros(4, 1, dtype=torch.float64)
    common = {"logp": logp, "old_logp": logp, "adv": logp, "entropy": logp, "mask": torch.ones_like(logp)}
    r = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    same = C.TokenBatch(**common, reward=r, answer=torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(C.get("seed_grpo").advantages(same, {}), C.get("grpo").advantages(same, {}))
    distinct = same.replace(answer=torch.arange(4))
    assert float(C.get("seed_grpo").advantages(distinct, {}).abs().max()) == 0.0
