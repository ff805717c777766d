"""Penalties: KL-Cov, reference KL (and its reset hook), SENT."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from controllers import penalties
from controllers.select import count_frac
from tests.controllers.helpers import batches


def _adv(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return batch.replace(
        adv=2 * torch.randn(batch.logp.shape, generator=g, dtype=batch.logp.dtype) * batch.mask
    )


def _np_cov(b, sub=None):
    m = (b.mask.numpy() if sub is None else sub).astype(bool)
    lp, a = b.logp.detach().numpy(), b.adv.numpy()
    return (lp - lp[m].mean()) * (a - a[m].mean()), m


@given(batches(max_b=10, max_t=8, off_policy=True), st.floats(0.0, 1.0), st.floats(0.0, 3.0))
def test_kl_cov_equals_brute_force_topk(batch, frac, beta):
    b = _adv(batch)
    t = C.get("kl_cov", frac=frac, beta=beta).terms(b, {})
    cov, m = _np_cov(b)
    flat = np.flatnonzero(m.ravel())
    order = flat[np.argsort(-cov.ravel()[flat], kind="stable")][: count_frac(frac, len(flat))]
    sel = np.zeros(m.size, bool)
    sel[order] = True
    ref = beta * np.abs(b.logp.detach().numpy() - b.old_logp.numpy()) * sel.reshape(m.shape)
    np.testing.assert_allclose(t.penalty.detach().numpy(), ref, atol=1e-12)


@given(batches(max_b=8, max_t=6))
def test_kl_cov_is_inert_on_policy(batch):
    b = _adv(batch)
    c = C.get("kl_cov", frac=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a single call never warns: a PPO rollout's first is on-policy
        loss, m = C.policy_loss(b, [c])
    base, _ = C.policy_loss(b, [])
    assert loss.item() == pytest.approx(base.item(), abs=1e-15)
    (g1,) = torch.autograd.grad(loss, b.logp)
    (g0,) = torch.autograd.grad(base, b.logp)
    torch.testing.assert_close(g1, g0, rtol=0, atol=0)
    assert m["ctrl/kl_cov/inert"] == (1.0 if bool(b.mask.any()) else 0.0)


@pytest.mark.parametrize("name", ["kl_cov", "sent"])
def test_inert_penalties_warn_after_three_inert_optimizer_steps_in_a_row(name):
    c = C.get(name)
    penalties.reset_warnings()
    inert, active = {f"ctrl/{name}/inert": 1.0}, {f"ctrl/{name}/inert": 0.0}
    st = c.init()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for stats in (inert, inert, active, inert, inert, active, {f"ctrl/{name}/inert": 0.5}) * 3:
            st = c.step(st, stats)  # PPO: the first step of each rollout is on-policy, the next ones not
    with pytest.warns(UserWarning, match="on-policy"):
        for _ in range(penalties.INERT_STEPS_BEFORE_WARNING):
            st = c.step(st, inert)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.step(st, inert)  # once per process


@given(batches(max_b=8, max_t=6, off_policy=True))
def test_kl_cov_reports_off_policy_batches_as_active(batch):
    b = _adv(batch)
    _, m = C.policy_loss(b, [C.get("kl_cov", frac=1.0)])
    differs = bool(((b.logp.detach() != b.old_logp) & b.mask.bool()).any())
    assert m["ctrl/kl_cov/inert"] == (0.0 if differs else float(bool(b.mask.any())))


@given(batches(max_b=8, max_t=6, off_policy=True))
def test_kl_cov_penalty_gradient_off_policy(batch):
    """The penalty's gradient is β·sign(log π − log π_old) on the selected tokens, 0 elsewhere."""
    b = _adv(batch)
    c = C.get("kl_cov", frac=0.4, beta=0.7)
    t = c.terms(b, {})
    (g,) = torch.autograd.grad(t.penalty.sum(), b.logp)
    sel = c.select(b)
    ref = 0.7 * torch.sign(b.logp.detach() - b.old_logp) * sel
    torch.testing.assert_close(g, ref)


@given(batches(max_b=8, max_t=6, full=True))
def test_ref_kl_estimators(batch):
    d = batch.logp.detach() - batch.ref_logp
    k = {e: C.get("ref_kl", estimator=e, beta=1.0).kl(batch).detach() for e in ("k1", "k2", "k3")}
    torch.testing.assert_close(k["k1"], d)
    torch.testing.assert_close(k["k2"], 0.5 * d**2)
    torch.testing.assert_close(k["k3"], torch.exp(-d) + d - 1)
    assert bool((k["k3"] >= 0).all()) and bool((k["k2"] >= 0).all())
    # k3 ≥ its second-order expansion's leading term is not guaranteed; but k3 ≤ k2 when d ≥ 0
    assert bool((k["k3"][d >= 0] <= k["k2"][d >= 0] + 1e-15).all())


def test_ref_kl_needs_ref_logp():
    x = torch.zeros(2, 3, dtype=torch.float64)
    b = C.TokenBatch(logp=x, old_logp=x, adv=x, entropy=x, mask=torch.ones_like(x))
    with pytest.raises(ValueError, match=r"^ref_logp: None"):
        C.policy_loss(b, [C.get("ref_kl")])


def test_ref_kl_reset_hook_every_n_steps_and_on_large_kl():
    pipe = C.Pipeline([C.get("grpo"), C.get("ref_kl", reset_every=3)])
    state = pipe.init()
    due = []
    for _ in range(7):
        state = pipe.step(state, {"policy/entropy": 0.5})
        due.append(pipe.reference_reset_due(state))
        if due[-1]:
            state = pipe.reference_was_reset(state)
    assert due == [False, False, True, False, False, True, False]
    assert state["1:ref_kl"]["n_resets"] == 2
    c = C.get("ref_kl", reset_kl=0.1)
    assert not c.reset_due(c.step(c.init(), {"ctrl/ref_kl/kl": 0.05}))
    assert c.reset_due(c.step(c.init(), {"ctrl/ref_kl/kl": 0.2}))


@given(batches(min_b=4, max_b=10, max_t=8, off_policy=True), st.floats(0.05, 0.5), st.floats(0.3, 1.0))
def test_sent_selects_within_low_entropy_tokens(batch, frac, low_frac):
    b = _adv(batch)
    c = C.get("sent", frac=frac, low_entropy_frac=low_frac, beta=1.0)
    low, top, bottom = c.select(b)
    m = b.mask.bool()
    n = int(m.sum())
    k_low = count_frac(low_frac, n)
    assert int(low.sum()) == k_low
    if k_low:
        assert float(b.entropy[low].max()) <= float(b.entropy[m & ~low].min()) if (m & ~low).any() else True
    assert not bool(((top | bottom) & ~low).any())
    assert not bool((top & bottom).any())
    k = count_frac(frac, k_low)
    assert int(top.sum()) == k
    cov, _ = _np_cov(b, low.numpy())
    cov = torch.from_numpy(cov)
    if k and bool((low & ~top).any()):
        assert float(cov[top].min()) >= float(cov[low & ~top].max()) - 1e-12
    t = c.terms(b, {})
    lr = (b.logp.detach() - b.old_logp).abs()
    torch.testing.assert_close(t.penalty.detach(), 2.0 * lr * top + 0.5 * lr * bottom)


@given(st.integers(2, 8), st.integers(0, 2**31 - 1), st.booleans())
def test_importance_weighted_k3_has_the_exact_forward_kl_gradient(V, seed, off_policy):
    """Enumerate every token a ~ π_old: E[∇ β·(π_θ/π_old)·k3] = β·∇KL(π_θ ‖ π_ref), on- and off-policy
    (DeepSeek-V3.2's estimator). Plain k3 on-policy gives the reverse KL's gradient instead."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(V, generator=g, dtype=torch.float64)
    z_ref = torch.randn(V, generator=g, dtype=torch.float64)
    z_old = z + (0.5 * torch.randn(V, generator=g, dtype=torch.float64) if off_policy else 0.0)
    p_old = torch.softmax(z_old, -1)

    def expected_grad(importance: bool) -> torch.Tensor:
        zz = z.clone().requires_grad_()
        logp = torch.log_softmax(zz, -1)[:, None]  # (V, 1): one sampled token per row, a = row
        batch = C.TokenBatch(
            logp=logp, old_logp=torch.log_softmax(z_old, -1)[:, None], adv=torch.zeros(V, 1, dtype=torch.float64),
            entropy=torch.zeros(V, 1, dtype=torch.float64), mask=torch.ones(V, 1, dtype=torch.float64),
            ref_logp=torch.log_softmax(z_ref, -1)[:, None],
        )  # fmt: skip
        pen = (
            C.get("ref_kl", beta=1.0, importance=importance)
            .terms(batch, {"since_reset": 0, "n_resets": 0, "due": False})
            .penalty
        )
        (grad,) = torch.autograd.grad((p_old[:, None] * pen).sum(), zz)
        return grad

    def kl_grad(forward: bool) -> torch.Tensor:
        zz = z.clone().requires_grad_()
        lp, lr = torch.log_softmax(zz, -1), torch.log_softmax(z_ref, -1)
        kl = (lp.exp() * (lp - lr)).sum() if forward else (lr.exp() * (lr - lp)).sum()
        (grad,) = torch.autograd.grad(kl, zz)
        return grad

    torch.testing.assert_close(expected_grad(True), kl_grad(forward=True), atol=1e-12, rtol=1e-10)
    if not off_policy:
        torch.testing.assert_close(expected_grad(False), kl_grad(forward=False), atol=1e-12, rtol=1e-10)
