"""Exact tree quantities against brute force and theory/; environments through gymnasium's checker."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from sim import envs
from sim import tree as tr


def _random_tree(seed, P=2, V=3, T=3):
    g = torch.Generator().manual_seed(seed)
    shape = tr.TreeShape(P, V, T)
    z = torch.randn(2, shape.n_states, V, generator=g, dtype=torch.float64)
    r = torch.rand(P, V**T, generator=g, dtype=torch.float64)
    return shape, z, r


def _brute(shape, z, r):
    """Enumerate every response: probabilities and J = Σ_p E[r], differentiable in z."""
    P, V, T = shape.n_prompts, shape.vocab, shape.horizon
    logp = torch.log_softmax(z, -1)
    J = torch.zeros(z.shape[0], dtype=z.dtype)
    probs = torch.zeros(z.shape[0], P, V**T, dtype=z.dtype)
    for p in range(P):
        for seq in itertools.product(range(V), repeat=T):
            lp, prefix = 0.0, 0
            for t, a in enumerate(seq):
                s = shape.level_slice(t).start + p * V**t + prefix
                lp = lp + logp[:, s, a]
                prefix = prefix * V + a
            probs[:, p, prefix] = lp.exp()
            J = J + lp.exp() * r[p, prefix]
    return probs, J


@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(2, 3), st.integers(1, 3))
@settings(max_examples=25, deadline=None)
def test_exact_matches_enumeration_and_autograd(seed, P, V, T):
    shape, z, r = _random_tree(seed, P, V, T)
    ex = tr.exact(shape, z, r)
    probs, J = _brute(shape, z.clone().requires_grad_(), r)
    torch.testing.assert_close(ex.leaf_prob, probs.detach())
    torch.testing.assert_close(ex.leaf_prob.sum(-1), torch.ones(2, P, dtype=torch.float64))
    zz = z.clone().requires_grad_()
    _, J = _brute(shape, zz, r)
    (g,) = torch.autograd.grad(J.sum(), zz)
    torch.testing.assert_close(tr.pg_dz(ex), g)  # d(s)·π·(Q − V) is the exact gradient of Σ_p E[r]
    roots = ex.v[:, :P]
    torch.testing.assert_close(roots, (ex.leaf_prob * r).sum(-1))


@given(st.integers(0, 10_000))
def test_bandit_steps_are_theory_steps(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(3, 5, 6))
    r = (rng.random((5, 6)) < 0.4).astype(float)
    ex = tr.exact(tr.TreeShape(5, 6, 1), torch.from_numpy(z), torch.from_numpy(r))
    np.testing.assert_allclose(0.3 * tr.pg_dz(ex).numpy(), theory.pg_dz(z, r, 0.3), atol=1e-14)
    np.testing.assert_allclose(0.3 * tr.npg_dz(ex).numpy(), theory.npg_dz(z, r, 0.3), atol=1e-14)
    dz = rng.normal(size=z.shape)
    np.testing.assert_allclose(
        tr.first_order_dH(torch.from_numpy(z), torch.from_numpy(dz)).numpy(),
        theory.first_order_dH(z, dz),
        atol=1e-13,
    )
    np.testing.assert_allclose(tr.state_entropy(torch.from_numpy(z)).numpy(), theory.entropy(z), atol=1e-13)


def test_sampling_frequencies_match_leaf_probabilities_and_are_reproducible():
    shape, z, r = _random_tree(3, P=2, V=3, T=2)
    n = 20_000
    _, tok = tr.sample(shape, z, n, torch.Generator().manual_seed(0))
    leaf = tr.leaf_index(shape, tok)  # (R, P, n)
    freq = torch.nn.functional.one_hot(leaf, shape.n_leaves).to(torch.float64).mean(2)
    p = tr.exact(shape, z, r).leaf_prob
    assert float((freq - p).abs().max()) < 5 * float(torch.sqrt(p * (1 - p) / n).max())
    _, tok2 = tr.sample(shape, z, n, torch.Generator().manual_seed(0))
    assert torch.equal(tok, tok2)


def test_pass_at_k_closed_form():
    s = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    out = tr.pass_at_k(s, [1, 2, 1024])
    assert out[1].item() == pytest.approx(0.5)
    assert out[2].item() == pytest.approx((0 + 0.75 + 1) / 3)
    assert out[1024].item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("env_id", ["entrolab/Bandit-v0", "entrolab/TokenTree-v0"])
def test_gymnasium_env_checker_passes(env_id):
    env = gym.make(env_id).unwrapped
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    total, done, steps = 0.0, False, 0
    while not done:
        _obs, reward, done, _trunc, _info = env.step(env.action_space.sample())
        total += reward
        steps += 1
    assert steps == env.tree.shape.horizon and total in (0.0, 1.0)


def test_bandit_options():
    spec = envs.make_bandit(n_prompts=10, n_arms=20, correct_frac=0.1, correct="rare", prior="zipf", seed=1)
    assert spec.rewards.shape == (10, 20) and set(np.unique(spec.rewards)) == {0.0, 1.0}
    assert np.all(spec.rewards.sum(1) == 2)
    for p in range(10):  # "rare": the correct arms are the two least likely under the prior
        assert set(np.flatnonzero(spec.rewards[p])) == set(np.argsort(spec.prior[p])[:2])
    hard_easy = envs.make_bandit(n_prompts=200, difficulty="beta", correct_frac=0.5, seed=2)
    shares = hard_easy.rewards.mean(1)
    assert shares.min() < 0.2 and shares.max() > 0.8
    bern = envs.make_bandit(rewards="bernoulli", seed=3)
    assert bern.bernoulli and 0 < bern.rewards.min() and bern.rewards.max() < 1


def test_token_tree_has_a_minority_of_forks():
    spec = envs.make_token_tree(n_prompts=4, vocab=4, horizon=5, fork_frac=0.2, seed=0)
    H = theory.entropy(spec.prior)
    high = H > 0.5 * np.log(4)
    assert 0.1 < high.mean() < 0.3  # forks are the high-entropy minority
    assert spec.prior.shape == (spec.shape.n_states, 4)
    # the recorded fork mask is that minority: every fork state is high-entropy, and few others are
    assert spec.fork.shape == (spec.shape.n_states,)
    assert H[spec.fork].min() > 0.5 * np.log(4)
    assert (high & ~spec.fork).mean() < 0.05  # a det. state whose runner-up logit is near the top


@pytest.mark.parametrize(
    ("builder", "kw", "needle"),
    [
        (envs.make_bandit, {"n_arms": 1}, r"^n_arms: got 1; allowed: an integer in \[2, inf\]$"),
        (envs.make_bandit, {"correct_frac": 1.5}, r"^correct_frac: got 1\.5"),
        (envs.make_bandit, {"prior": "cauchy"}, r"^prior: got 'cauchy'; allowed: 'gaussian', 'zipf'$"),
        (envs.make_token_tree, {"horizon": 0}, r"^horizon: got 0; allowed: an integer in \[1, inf\]$"),
        (envs.make_token_tree, {"vocab": 16, "horizon": 8}, r"^horizon: got 8; allowed: P·V\^T ≤ 2,000,000"),
    ],
)
def test_env_bad_input(builder, kw, needle):
    with pytest.raises(ValueError, match=needle):
        builder(**kw)
