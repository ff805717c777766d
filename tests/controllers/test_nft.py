"""NFT: the on-policy identity with GRPO (exact, property-tested), its off-policy drift, the paper/code
options, masking and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import controllers as C
from controllers.nft import grpo_identity_advantage, maxv


@st.composite
def groups(draw, min_k: int = 2, max_k: int = 12):
    """A batch of P groups of K binary rewards, (B, T) log-probs and a padding mask, float64."""
    P, K, T = draw(st.integers(1, 5)), draw(st.integers(min_k, max_k)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    reward = (torch.rand(P * K, generator=g, dtype=torch.float64) < draw(st.floats(0.05, 0.95))).double()
    logp = -torch.rand(P * K, T, generator=g, dtype=torch.float64) * 4
    lengths = torch.randint(1, T + 1, (P * K,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).double()
    group = torch.arange(P).repeat_interleave(K)
    return logp, mask, reward, group, K


def _grad(pipe, logp, mask, reward, group, old=None, adv=None, agg="token-mean"):
    leaf = logp.clone().requires_grad_()
    batch = C.TokenBatch(
        logp=leaf, old_logp=leaf.detach() if old is None else old,
        adv=torch.zeros_like(logp) if adv is None else adv * mask, entropy=torch.zeros_like(logp),
        mask=mask, group=group, reward=reward,
    )  # fmt: skip
    loss, _ = C.policy_loss(batch, pipe, agg=agg)
    (g,) = torch.autograd.grad(loss, leaf)
    return g


@given(groups(), st.sampled_from(C.AGG_MODES))
def test_on_policy_nft_gradient_equals_grpo_with_the_identity_advantages(batch, agg):
    logp, mask, reward, group, _ = batch
    g_nft = _grad(C.Pipeline([C.get("nft")]), logp, mask, reward, group, agg=agg)
    adv = grpo_identity_advantage(reward, group)[:, None].expand_as(logp)
    g_pg = _grad(C.Pipeline([]), logp, mask, reward, group, adv=adv, agg=agg)
    assert torch.allclose(g_nft, g_pg, atol=1e-12, rtol=1e-12)


@given(groups())
@example(  # pins a grpo bug this test found: eps = 0 gave 0/0 = nan on an all-equal group
    (torch.tensor([[-1.8], [-3.7]], dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64),
     torch.zeros(2, dtype=torch.float64), torch.tensor([0, 0]), 2)
)  # fmt: skip
def test_our_grpo_differs_by_the_n_minus_1_factor(batch):
    """grpo divides by the unbiased (K − 1) deviation: its gradient is NFT's times √((K − 1)/K)."""
    logp, mask, reward, group, K = batch
    g_nft = _grad(C.Pipeline([C.get("nft")]), logp, mask, reward, group)
    g_grpo = _grad(C.Pipeline([C.get("grpo", eps=0.0)]), logp, mask, reward, group)
    assert torch.allclose(g_grpo, g_nft * math.sqrt((K - 1) / K), atol=1e-12, rtol=1e-10)


@given(groups(), st.floats(0.05, 0.5))
def test_off_policy_the_identity_breaks(batch, shift):
    """Away from R = 1 the gradients differ: positives get 1/R, negatives 1/maxv(...)."""
    logp, mask, reward, group, _ = batch
    old = logp - shift  # R = e^shift > 1 on every token
    g_nft = _grad(C.Pipeline([C.get("nft")]), logp, mask, reward, group, old=old)
    adv = grpo_identity_advantage(reward, group)[:, None].expand_as(logp)
    g_pg = _grad(C.Pipeline([]), logp, mask, reward, group, old=old, adv=adv)
    informative = adv.abs().sum() > 0
    if informative:
        assert not torch.allclose(g_nft, g_pg, atol=1e-9)
    pos = (reward[:, None] == 1) & (mask > 0) & (adv > 0)
    # positives: the NFT coefficient is A⁺·(1/R)·R = A⁺, GRPO's is A⁺·R: their ratio is 1/R
    assert torch.allclose(g_nft[pos], g_pg[pos] * math.exp(-shift), atol=1e-12, rtol=1e-9)


def test_all_equal_groups_carry_no_signal_unless_rates_are_clipped():
    logp = -torch.rand(4, 3, dtype=torch.float64)
    mask, group = torch.ones(4, 3, dtype=torch.float64), torch.tensor([0, 0, 1, 1])
    reward = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert _grad(C.Pipeline([C.get("nft")]), logp, mask, reward, group).abs().max() == 0
    clipped = _grad(C.Pipeline([C.get("nft", rate_clip=0.02)]), logp, mask, reward, group)
    assert clipped[:2].abs().max() > 0  # the code's clip gives all-correct groups a (small) push


def test_code_weight_is_one_minus_the_solve_rate():
    logp = -torch.rand(4, 2, dtype=torch.float64)
    mask, group = torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    reward = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # r̂ = 1/4
    paper = _grad(C.Pipeline([C.get("nft")]), logp, mask, reward, group)
    code = _grad(C.Pipeline([C.get("nft", weight="code")]), logp, mask, reward, group)
    assert torch.allclose(code, paper * (1 - 0.25) / math.sqrt(0.75 / 0.25), atol=1e-14)


def test_maxv_floors_the_value_and_keeps_the_gradient():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = maxv(x, 1.0)
    assert y.tolist() == [1.0, 2.0]
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.tolist() == [1.0, 1.0]


def test_bad_input():
    batch = C.TokenBatch.from_sequences(
        torch.zeros(2, 2), torch.ones(2, 2), reward=torch.tensor([0.5, 1.0]), group=torch.tensor([0, 0])
    )
    with pytest.raises(ValueError, match=r"reward: contains 0\.5; allowed: binary rewards"):
        C.policy_loss(batch, [C.get("nft")])
    for kw, msg in (
        ({"eps": 0.0}, "nft.eps"),
        ({"weight": "x"}, "nft.weight"),
        ({"rate_clip": 0.5}, "nft.rate_clip"),
    ):
        with pytest.raises(ValueError, match=msg):
            C.get("nft", **kw)
    with pytest.raises(ValueError, match="'nft' and 'ppo_clip' each define the PG surrogate"):
        C.policy_loss(batch.replace(reward=torch.tensor([0.0, 1.0])), [C.get("nft"), C.get("ppo_clip")])
