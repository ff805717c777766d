"""policy_loss, Pipeline, PPO clip, entropy bonus, registry."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from tests.controllers.helpers import batches, pad


def _with_adv(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=batch.logp.dtype) * batch.mask)


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


@given(batches(off_policy=True))
def test_empty_pipeline_is_vanilla_pg(batch):
    b = _with_adv(batch)
    loss, _ = C.policy_loss(b, C.Pipeline([]))
    ratio = torch.exp(b.logp - b.old_logp)
    ref = (-b.adv * ratio * b.mask).sum() / b.mask.sum()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    torch.testing.assert_close(_grad(loss, b.logp), _grad(ref, b.logp))


@given(batches(off_policy=True), st.floats(0.05, 0.4), st.floats(0.05, 0.5))
def test_ppo_clip_equals_textbook_autograd(batch, eps_lo, eps_hi):
    b = _with_adv(batch)
    loss, _ = C.policy_loss(b, [C.get("ppo_clip", eps_lo=eps_lo, eps_hi=eps_hi)])
    r = torch.exp(b.logp - b.old_logp)
    obj = torch.minimum(r * b.adv, torch.clamp(r, 1 - eps_lo, 1 + eps_hi) * b.adv)
    ref = -(obj * b.mask).sum() / b.mask.sum()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    torch.testing.assert_close(_grad(loss, b.logp), _grad(ref, b.logp))


@given(batches(off_policy=True))
def test_dual_clip_equals_textbook(batch):
    b = _with_adv(batch)
    loss, _ = C.policy_loss(b, [C.get("ppo_clip", dual_clip=1.5)])
    r = torch.exp(b.logp - b.old_logp)
    clipped = torch.maximum(-b.adv * r, -b.adv * torch.clamp(r, 0.8, 1.2))
    per = torch.where(b.adv < 0, torch.minimum(clipped, -b.adv * 1.5), clipped)
    ref = (per * b.mask).sum() / b.mask.sum()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    torch.testing.assert_close(_grad(loss, b.logp), _grad(ref, b.logp))


@given(batches())
def test_on_policy_ppo_is_vanilla_pg(batch):
    b = _with_adv(batch)
    l1, m = C.policy_loss(b, [C.get("ppo_clip")])
    l2, _ = C.policy_loss(b, [])
    torch.testing.assert_close(_grad(l1, b.logp), _grad(l2, b.logp))
    assert m["policy/ratio_mean"] == pytest.approx(1.0)
    assert m["ctrl/ppo_clip/frac_clipped"] == 0.0


@given(batches(off_policy=True), st.sampled_from(C.AGG_MODES))
def test_masked_tokens_get_zero_gradient(batch, agg):
    b = _with_adv(batch)
    loss, _ = C.policy_loss(b, [C.get("grpo"), C.get("ppo_clip")], agg=agg)
    g = _grad(loss, b.logp)
    assert torch.all(g[b.mask == 0] == 0)


@given(batches(off_policy=True), st.integers(1, 3))
def test_appending_padding_changes_nothing(batch, extra):
    pipe = C.Pipeline([C.get("grpo"), C.get("ppo_clip", eps_hi=0.28), C.get("entropy_bonus")])
    l1, m1 = C.policy_loss(batch, pipe)
    l2, m2 = C.policy_loss(pad(batch, extra), pipe)
    assert l1.item() == pytest.approx(l2.item(), abs=1e-12)
    for k in m1:
        assert m1[k] == pytest.approx(m2[k], abs=1e-12), k


@given(batches(off_policy=True), st.randoms())
def test_sequence_order_does_not_matter(batch, rnd):
    perm = list(range(batch.logp.shape[0]))
    rnd.shuffle(perm)
    p = torch.tensor(perm)
    shuffled = C.TokenBatch(
        logp=batch.logp[p],
        old_logp=batch.old_logp[p],
        adv=batch.adv[p],
        entropy=batch.entropy[p],
        mask=batch.mask[p],
        group=batch.group[p],
        reward=batch.reward[p],
    )
    pipe = [C.get("qae"), C.get("ppo_clip")]
    l1, m1 = C.policy_loss(batch, pipe)
    l2, m2 = C.policy_loss(shuffled, pipe)
    assert l1.item() == pytest.approx(l2.item(), abs=1e-12)
    assert m1["policy/cov_logp_adv"] == pytest.approx(m2["policy/cov_logp_adv"], abs=1e-12)


@given(batches(), st.floats(0.0, 0.1))
def test_entropy_bonus_gradient_flows(batch, coef):
    ent = batch.entropy.clone().requires_grad_()
    b = batch.replace(entropy=ent)
    loss, m = C.policy_loss(b, [C.get("entropy_bonus", coef=coef)])
    g = _grad(loss, ent)
    expect = -coef * b.mask / b.mask.sum()
    torch.testing.assert_close(g, expect)
    assert m["ctrl/entropy_bonus/coef"] == coef


def test_two_surrogates_rejected():
    b = C.TokenBatch.from_sequences(torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="'ppo_clip' and 'ppo_clip' each define the PG surrogate"):
        C.policy_loss(b, [C.get("ppo_clip"), C.get("ppo_clip")])


def test_all_masked_batch_gives_zero_and_finite_metrics():
    logp = torch.zeros(3, 4, requires_grad=True)
    b = C.TokenBatch.from_sequences(
        logp, torch.zeros(3, 4), reward=torch.tensor([1.0, 0.0, 1.0]), group=torch.tensor([0, 0, 0])
    )
    loss, m = C.policy_loss(b, [C.get("grpo"), C.get("ppo_clip"), C.get("entropy_bonus")])
    assert loss.item() == 0.0
    assert all(v == v for v in m.values())


def test_telemetry_quadrants_sum_to_nonzero_share():
    batch = C.TokenBatch.from_sequences(
        torch.log(torch.tensor([[0.9, 0.05], [0.5, 0.2]])),
        torch.ones(2, 2),
        entropy=torch.tensor([[0.4, 0.4], [1.0, 1.0]]),
    )
    batch = batch.replace(adv=torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
    _, m = C.policy_loss(batch, [])
    # π > e^{−H}: 0.9 > e^{-0.4}=0.67 (hi, +), 0.05 (lo, +), 0.5 > e^{-1}=0.37 (hi, −), 0.2 (lo, A=0)
    assert (m["policy/frac_hip_posadv"], m["policy/frac_lop_posadv"], m["policy/frac_hip_negadv"]) == (
        0.25,
        0.25,
        0.25,
    )
    assert m["policy/frac_lop_negadv"] == 0.0 and m["adv/frac_zero"] == 0.25


def test_registry_errors_list_valid_names():
    with pytest.raises(ValueError, match=r"name: unknown controller 'clipcov'; allowed: .*grpo"):
        C.get("clipcov")
    with pytest.raises(
        ValueError,
        match=r"ppo_clip: unknown hyperparameter\(s\) \['eps'\]; allowed: eps_lo, eps_hi, dual_clip",
    ):
        C.get("ppo_clip", eps=0.2)


@pytest.mark.parametrize(
    "name, hp, needle",
    [
        ("ppo_clip", {"eps_lo": -0.1}, r"ppo_clip.eps_lo: got -0.1; allowed: \[0.0, 1.0\]"),
        ("ppo_clip", {"dual_clip": 1.0}, r"ppo_clip.dual_clip: got 1.0"),
        ("qae", {"k": 0.0}, r"qae.k: got 0.0; allowed: \(0.0, 1.0\)"),
        ("grpo", {"scale": "std"}, r"grpo.scale: got 'std'"),
        ("entropy_bonus", {"coef": float("nan")}, r"entropy_bonus.coef: got nan"),
        ("w_reinforce", {"lam": -1}, r"w_reinforce.lam: got -1"),
    ],
)
def test_bad_hyperparameters(name, hp, needle):
    with pytest.raises(ValueError, match=needle):
        C.get(name, **hp)


def test_state_round_trips_through_json():
    pipe = C.Pipeline([C.get("grpo"), C.get("ppo_clip"), C.get("entropy_bonus")])
    st = pipe.step(pipe.init(), {"entropy": 0.3})
    assert C.Pipeline.state_from_json(C.Pipeline.state_to_json(st)) == st
    assert json.loads(json.dumps(st)) == st


@given(batches(off_policy=True), st.floats(0.0, 3.0))
def test_is_weight_scales_the_pg_term_only(batch, c):
    """The inference engine's correction multiplies c·w·s per token; penalties and extras are untouched,
    and a weight of one is no weight."""
    adv = torch.randn(batch.logp.shape, dtype=batch.logp.dtype, generator=torch.Generator().manual_seed(1))
    b = batch.replace(adv=adv * batch.mask)
    pipe = [C.get("ppo_clip"), C.get("kl_cov", frac=0.3), C.get("entropy_bonus", coef=0.1)]
    plain, _ = C.policy_loss(b, pipe)
    one, _ = C.policy_loss(b.replace(is_weight=torch.ones_like(b.logp)), pipe)
    assert torch.allclose(one, plain, rtol=0, atol=1e-12)
    w = torch.full_like(b.logp, c)
    scaled, m = C.policy_loss(b.replace(is_weight=w), pipe)
    _, m0 = C.policy_loss(b, pipe)
    expect = c * m0["loss/pg"] + m0.get("loss/penalty", 0.0) + m0.get("loss/extra", 0.0)
    assert float(scaled) == pytest.approx(expect, rel=1e-9, abs=1e-12)
    assert m["loss/pg"] == pytest.approx(c * m0["loss/pg"], rel=1e-9, abs=1e-12)


def test_is_weight_must_be_non_negative():
    b = C.TokenBatch.from_sequences(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"^is_weight: contains -1.0; allowed: values >= 0"):
        b.replace(is_weight=-torch.ones(2, 3))


def test_offpolicy_mask_reads_the_sampler_when_given():
    """KL to the sampling policy: with sampler_logp far from logp and a negative advantage, the sequence
    is dropped although old_logp equals logp."""
    logp = torch.full((2, 3), -1.0)
    b = C.TokenBatch(
        logp=logp, old_logp=logp, adv=-torch.ones(2, 3), entropy=torch.ones(2, 3), mask=torch.ones(2, 3)
    )
    ctrl = C.get("offpolicy_mask", delta=0.5)
    assert torch.equal(ctrl.terms(b, {}).weight, torch.ones(2, 3))
    far = b.replace(sampler_logp=torch.tensor([[0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]))
    assert torch.equal(ctrl.terms(far, {}).weight, torch.tensor([[0.0] * 3, [1.0] * 3]))
