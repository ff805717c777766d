"""fork_bonus, diversity_reward, step_credit, luffy and the n-gram embedding: differential tests against
their formulas, metamorphic relations and bounds (issue 8)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import controllers as C
from controllers.shaping import group_similarity, similarity_sums
from tests.controllers.helpers import batches, run_ranks


def _grpo_adv(batch):
    return C.Pipeline([C.get("grpo")]).advantages(batch)


# -- fork_bonus ------------------------------------------------------------------------------------------


@given(batch=batches(max_b=8, max_t=5), frac=st.sampled_from([0.1, 0.2, 0.5, 1.0]), bonus=st.floats(0, 2))
def test_fork_bonus_matches_its_formula(batch, frac, bonus):
    c = C.get("fork_bonus", frac=frac, bonus=bonus)
    got = C.Pipeline([c]).rewards(batch)
    h = batch.entropy[batch.mask.bool()]
    k = max(1, math.ceil(frac * h.numel() - 1e-9))
    thr = torch.sort(h, descending=True).values[k - 1]
    for i in range(batch.logp.shape[0]):
        valid = batch.mask[i].bool()
        has_fork = bool((batch.entropy[i][valid] >= thr).any())
        want = batch.reward[i] + (bonus if (batch.reward[i] >= 1.0 and has_fork) else 0.0)
        assert float(got[i]) == pytest.approx(float(want), abs=1e-12)


def test_fork_bonus_share_mode_and_absolute_threshold():
    ent = torch.tensor([[0.1, 2.0, 3.0], [0.1, 0.2, 0.3], [5.0, 5.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=torch.float64)
    b = C.TokenBatch.from_sequences(
        torch.zeros(3, 3, dtype=torch.float64),
        mask,
        reward=torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
    )
    b = b.replace(entropy=ent)
    got = C.Pipeline([C.get("fork_bonus", threshold=1.0, bonus=0.6, mode="share")]).rewards(b)
    # row 0: 2 of 3 tokens ≥ 1 nat; row 1: none; row 2 is wrong (no bonus whatever its forks)
    torch.testing.assert_close(got, torch.tensor([1.0 + 0.6 * 2 / 3, 1.0, 0.0], dtype=torch.float64))


@given(batch=batches(max_b=8, max_t=5, n_groups=3), frac=st.sampled_from([0.2, 0.5, 1.0]))
def test_fork_bonus_frac_groups_split_counts_groups_whose_correct_responses_differ(batch, frac):
    """Brute force: of the groups with a correct response, the share whose correct responses' bonuses are
    not all equal; and when that share is 0, GRPO's advantages with the bonus equal those without it."""
    c = C.get("fork_bonus", frac=frac)
    add, correct = c.shaping(batch)
    groups = {}
    for i in range(batch.logp.shape[0]):
        if bool(correct[i]):
            groups.setdefault(int(batch.group[i]), set()).add(round(float(add[i]), 12))
    want = sum(len(v) > 1 for v in groups.values()) / len(groups) if groups else 0.0
    got = c.terms(batch, c.init()).metrics["frac_groups_split"]
    assert got == pytest.approx(want)
    if got == 0.0 and all(len(v) == 1 for v in groups.values()):
        wrong = ~correct.bool()
        if not bool(wrong.any()) or float(add[wrong].abs().max()) == 0.0:
            shaped = C.Pipeline([c, C.get("grpo")]).advantages(batch)
            torch.testing.assert_close(shaped, _grpo_adv(batch), rtol=0, atol=1e-6)


@given(batch=batches(max_b=8, max_t=4))
def test_fork_bonus_zero_is_grpo(batch):
    lp1, _ = C.policy_loss(batch, [C.get("fork_bonus", bonus=0.0), C.get("grpo")])
    lp2, _ = C.policy_loss(batch, [C.get("grpo")])
    assert lp1.item() == lp2.item()


@settings(max_examples=20, deadline=None)
@given(batch=batches(min_b=4, max_b=8, max_t=4), cut=st.integers(1, 3))
def test_fork_bonus_threshold_is_global_across_ranks(batch, cut):
    c = C.Pipeline([C.get("fork_bonus", frac=0.3)])
    whole = c.rewards(batch)
    parts = run_ranks(batch, [cut], lambda b: c.rewards(b))
    torch.testing.assert_close(torch.cat(parts), whole)


# -- n-gram embedding and diversity ----------------------------------------------------------------------


@given(seed=st.integers(0, 10_000), b=st.integers(2, 6), t=st.integers(1, 6), extra=st.integers(1, 3))
def test_ngram_embedding_counts_and_ignores_padding(seed, b, t, extra):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 5, (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    e = C.ngram_embedding(tok, mask, n=2)
    # counts: L unigrams + (L − 1) bigrams per response
    torch.testing.assert_close(e.sum(-1), (2 * lengths - 1).to(torch.float64))
    junk = torch.cat([tok, torch.randint(0, 5, (b, extra), generator=g)], 1)
    padded = torch.cat([mask, torch.zeros(b, extra)], 1)
    torch.testing.assert_close(C.ngram_embedding(junk, padded, n=2), e)
    same = C.ngram_embedding(tok[:1].repeat(2, 1), mask[:1].repeat(2, 1))
    assert group_similarity(same, None)[0, 1].item() == pytest.approx(1.0)


def test_distinct_n_and_group_diversity_bounds():
    tok = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 5, 6], [7, 8, 9]])
    mask = torch.ones(4, 3)
    group = torch.tensor([0, 0, 1, 1])
    assert C.distinct_n(tok, mask, group) == pytest.approx((2 / 4 + 4 / 4) / 2)
    e = C.ngram_embedding(tok, mask)
    # group 0 identical (cos 1), group 1 disjoint (cos 0): diversity 1 − (1 + 0)/2
    assert C.group_diversity(e, group) == pytest.approx(0.5)


@given(
    b=st.integers(1, 12),
    d=st.integers(1, 6),
    n_groups=st.integers(1, 4),
    zero_rows=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_similarity_sums_match_the_dense_matrix(b, d, n_groups, zero_rows, seed):
    """The O(B·D) within-group sums equal the (B, B) cosine matrix's off-diagonal row sums, and the diversity
    its mean over same-group pairs (zero vectors included: similarity 0)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=torch.float64)
    emb[: min(zero_rows, b)] = 0.0
    group = torch.randint(0, n_groups, (b,), generator=g) * 7  # sparse ids
    for grp in (group, None):
        dense = group_similarity(emb, grp, "group")
        smi, pairs = similarity_sums(emb, grp)
        torch.testing.assert_close(smi, dense.sum(-1) - dense.diagonal(), rtol=1e-12, atol=1e-12)
        same = torch.ones(b, b, dtype=torch.bool) if grp is None else grp[:, None] == grp[None, :]
        off = same & ~torch.eye(b, dtype=torch.bool)
        assert float(pairs) == int(off.sum())
        div = C.group_diversity(emb, grp)
        if off.any():
            assert div == pytest.approx(float(1.0 - dense[off].mean()), rel=1e-12, abs=1e-12)
        else:
            assert math.isnan(div)


@given(batch=batches(min_b=2, max_b=8, max_t=3, binary=False), scope=st.sampled_from(["group", "batch"]))
def test_diversity_reward_matches_its_formula(batch, scope):
    g = torch.Generator().manual_seed(0)
    emb = torch.rand(batch.logp.shape[0], 3, generator=g, dtype=torch.float64)
    b = batch.replace(embedding=emb)
    got = C.Pipeline([C.get("diversity_reward", scope=scope)]).rewards(b)
    unit = emb / emb.norm(dim=-1, keepdim=True)
    for i in range(emb.shape[0]):
        smi = sum(
            float(unit[i] @ unit[j])
            for j in range(emb.shape[0])
            if j != i and (scope == "batch" or int(b.group[i]) == int(b.group[j]))
        )
        assert float(got[i]) == pytest.approx(float(b.reward[i]) / (1 + smi), rel=1e-12, abs=1e-12)


@given(batch=batches(min_b=2, max_b=8, max_t=3), seed=st.integers(0, 1000))
def test_diversity_reward_metamorphic(batch, seed):
    g = torch.Generator().manual_seed(seed)
    B = batch.logp.shape[0]
    emb = torch.rand(B, 4, generator=g, dtype=torch.float64) + 0.01
    pipe = C.Pipeline([C.get("diversity_reward")])
    r = pipe.rewards(batch.replace(embedding=emb))
    # cosine similarity ignores each embedding's length
    scaled = emb * (torch.rand(B, 1, generator=g, dtype=torch.float64) * 10 + 0.1)
    torch.testing.assert_close(pipe.rewards(batch.replace(embedding=scaled)), r)
    # orthogonal responses keep their rewards; G identical responses get r/G
    torch.testing.assert_close(
        pipe.rewards(batch.replace(embedding=torch.eye(B, dtype=torch.float64))), batch.reward
    )
    _, count = torch.unique(batch.group, return_counts=True)
    same = pipe.rewards(batch.replace(embedding=torch.ones(B, 2, dtype=torch.float64)))
    torch.testing.assert_close(same, batch.reward / count[batch.group].to(torch.float64))


# -- step_credit -----------------------------------------------------------------------------------------


@given(batch=batches(max_b=8, max_t=5, full=True), credit=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_step_credit_matches_its_formula(batch, credit):
    adv = C.Pipeline([C.get("grpo"), C.get("step_credit", credit=credit)]).advantages(batch)
    a0 = _grpo_adv(batch)
    ok = batch.step_correct.bool() & (a0 < 0) & batch.mask.bool()
    want = torch.where(ok, credit * a0.abs(), a0)
    torch.testing.assert_close(adv, want, rtol=0, atol=0)
    assert bool((adv[ok] >= 0).all())
    assert bool((adv[~ok] == a0[~ok]).all())  # everything else untouched


@given(batch=batches(max_b=8, max_t=4, full=True))
def test_step_credit_without_correct_steps_is_grpo(batch):
    b = batch.replace(step_correct=torch.zeros_like(batch.logp).detach())
    torch.testing.assert_close(
        C.Pipeline([C.get("grpo"), C.get("step_credit")]).advantages(b), _grpo_adv(b), rtol=0, atol=0
    )


# -- luffy -----------------------------------------------------------------------------------------------


@given(batch=batches(max_b=8, max_t=4, off_policy=True, full=True))
def test_luffy_without_guide_rows_is_ppo_clip(batch):
    for guide in (None, torch.zeros(batch.logp.shape[0], dtype=torch.bool)):
        b = batch.replace(guide=guide)
        l1, _ = C.policy_loss(b, [C.get("grpo"), C.get("luffy")])
        l2, _ = C.policy_loss(b, [C.get("grpo"), C.get("ppo_clip")])
        assert l1.item() == l2.item()
        (g1,) = torch.autograd.grad(l1, b.logp)
        (g2,) = torch.autograd.grad(l2, b.logp)
        torch.testing.assert_close(g1, g2, rtol=0, atol=0)


@given(batch=batches(max_b=8, max_t=4, off_policy=True, full=True), gamma=st.sampled_from([0.01, 0.1, 0.5]))
def test_luffy_guide_gradient_is_shaped_importance_weight(batch, gamma):
    """On guide tokens ∂ℓ/∂log π = −A·γ·p/(p + γ)² (token-mean: divided by N), whatever old_logp is."""
    loss, _ = C.policy_loss(batch, [C.get("grpo"), C.get("luffy", gamma=gamma)])
    (g,) = torch.autograd.grad(loss, batch.logp)
    adv = _grpo_adv(batch)
    p = batch.logp.detach().exp()
    n = batch.mask.sum()
    want = -adv * gamma * p / (p + gamma) ** 2 / n
    rows = batch.guide.bool()[:, None] & batch.mask.bool()
    torch.testing.assert_close(g[rows], want[rows], rtol=1e-10, atol=1e-14)


def test_luffy_shaping_lifts_low_probability_tokens():
    """Relative to plain importance sampling (∇p = p·∇log p), f(p) = p/(p+γ) weighs low-probability guide
    tokens up: the ratio of the weights γ/(p+γ)² is decreasing in p."""
    logp = torch.log(torch.tensor([[0.01], [0.5], [0.99]], dtype=torch.float64)).requires_grad_()
    b = C.TokenBatch(
        logp=logp, old_logp=logp.detach(), adv=torch.ones(3, 1, dtype=torch.float64), entropy=torch.zeros(3, 1, dtype=torch.float64),
        mask=torch.ones(3, 1, dtype=torch.float64), guide=torch.ones(3, dtype=torch.bool),
    )  # fmt: skip
    loss, m = C.policy_loss(b, [C.get("luffy")], agg="seq-mean-token-sum")
    (g,) = torch.autograd.grad(loss, logp)
    per_p = (-g.squeeze() * 3) / logp.detach().exp().squeeze()  # weight on ∇p
    assert bool((per_p[:-1] > per_p[1:]).all())
    assert m["ctrl/luffy/frac_guide_rows"] == 1.0


# -- vapo (GAE with a length-adaptive λ) -----------------------------------------------------------------


@given(batch=batches(max_b=6, max_t=6, full=True, binary=False), alpha=st.sampled_from([0.05, 0.3, 2.0]))
def test_vapo_is_gae_written_out(batch, alpha):
    adv = C.Pipeline([C.get("vapo", alpha=alpha)]).advantages(batch)
    for i in range(batch.logp.shape[0]):
        L = int(batch.mask[i].sum())
        lam = min(1.0, max(0.0, 1.0 - 1.0 / (alpha * L)))
        v = [float(x) for x in batch.value[i, :L]] + [0.0]
        r = [0.0] * (L - 1) + [float(batch.reward[i])]
        want, run = [0.0] * L, 0.0
        for t in reversed(range(L)):
            run = r[t] + v[t + 1] - v[t] + lam * run
            want[t] = run
        assert adv[i, :L].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert bool((adv[i, L:] == 0).all())


@given(batch=batches(max_b=6, max_t=6, full=True, binary=False))
def test_vapo_long_responses_are_monte_carlo(batch):
    """α·l ≥ … with α huge, λ → 1: A_t = R − V(s_t); with zero values that is plain REINFORCE."""
    adv = C.Pipeline([C.get("vapo", alpha=1e12)]).advantages(batch)
    want = (batch.reward[:, None] - batch.value) * batch.mask
    torch.testing.assert_close(adv, want, rtol=1e-9, atol=1e-9)
    zero = batch.replace(value=torch.zeros_like(batch.value))
    adv0 = C.Pipeline([C.get("vapo", alpha=1e12)]).advantages(zero)
    torch.testing.assert_close(adv0, batch.reward[:, None] * batch.mask, rtol=1e-9, atol=1e-9)
