"""theory.qae: the K-quantile baseline, Prop. 4.2's surrogate, and the true/sampled updates."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import theory
from tests import strategies as S


def _brute_quantile(r, k):
    """inf{x : F(x) ≥ K} over the sample values, with K read as the decimal it was written as."""
    kk = Fraction(repr(float(k)))
    g = len(r)
    for x in sorted(r):
        if Fraction(sum(1 for v in r if v <= x), g) >= kk:
            return x
    raise AssertionError


# G = 25, K = 0.28: 0.28·25 = 7.000000000000001 in floating point, and numpy's inverted_cdf takes the
# 8th order statistic where the definition (7/25 ≥ 0.28) gives the 7th. We follow the definition.
@example(rk=(np.arange(25.0).reshape(1, 25), 0.28))
@given(st.tuples(S.reward_groups(binary=False), S.quantile_k))
def test_quantile_matches_definition(rk):
    r, k = rk
    b = theory.quantile_baseline(r, k)
    for i in range(r.shape[0]):
        assert b[i] == _brute_quantile(list(r[i]), k)


@given(S.reward_groups(binary=False), S.quantile_k)
def test_quantile_matches_numpy_inverted_cdf_when_kg_not_near_integer(r, k):
    kg = k * r.shape[1]
    if abs(kg - round(kg)) > 1e-6:
        np.testing.assert_array_equal(
            theory.quantile_baseline(r, k), np.quantile(r, k, axis=-1, method="inverted_cdf")
        )


@given(S.reward_groups(binary=False), S.quantile_k, st.floats(-10, 10))
def test_quantile_shift_equivariant(r, k, c):
    np.testing.assert_allclose(
        theory.quantile_baseline(r + c, k), theory.quantile_baseline(r, k) + c, atol=1e-12
    )


@given(S.reward_groups(binary=False), S.quantile_k, S.quantile_k)
def test_quantile_monotone_in_k(r, k1, k2):
    lo, hi = sorted((k1, k2))
    assert np.all(theory.quantile_baseline(r, lo) <= theory.quantile_baseline(r, hi))


@given(S.reward_groups(binary=True), S.quantile_k)
def test_binary_rule(r, k):
    p = r.mean(axis=-1)
    np.testing.assert_array_equal(theory.quantile_baseline(r, k), theory.qae_binary_baseline(p, k))


@given(S.reward_groups(binary=False, min_g=2), S.quantile_k)
def test_linear_quantile_equals_torch_quantile(r, k):
    ref = torch.quantile(torch.tensor(r), k, dim=-1).numpy()
    np.testing.assert_allclose(theory.linear_quantile_baseline(r, k), ref, atol=1e-12)


def test_torch_linear_discrepancy_from_theory_md():
    # docs/theory.md §2.1: G = 8, K = 0.4 with 5 successes: the code gives 0.8, the paper gives 1.
    r = np.array([0, 0, 0, 1, 1, 1, 1, 1], dtype=float)
    assert theory.linear_quantile_baseline(r, 0.4) == pytest.approx(0.8)
    assert theory.quantile_baseline(r, 0.4) == 1.0


@given(S.logits_and_vector(binary=True), st.floats(0, 1), S.step_sizes)
def test_surrogate_identity_and_gap(zv, b, eta):
    z, r = zv
    f0 = theory.qae_surrogate_dH(z, r, 0.0, eta)
    fb = theory.qae_surrogate_dH(z, r, b, eta)
    assert fb == pytest.approx(f0 + eta * b * theory.c_pi(z), abs=1e-12)
    gap = fb - theory.qae_true_dH(z, r, eta)
    assert gap == pytest.approx(theory.qae_identity_gap(z, r, b, eta), abs=1e-12)


@given(S.logits_and_vector(binary=True, scales=[0.5, 1.0, 3.0]), S.step_sizes)
def test_surrogate_strictly_increasing_when_not_uniform(zv, eta):
    z, r = zv
    if theory.c_pi(z) > 1e-9:
        vals = [theory.qae_surrogate_dH(z, r, b, eta) for b in np.linspace(0, 1, 6)]
        assert np.all(np.diff(vals) > 0)


@given(S.logits_and_vector(binary=True))
def test_gap_vanishes_at_population_mean(zv):
    z, r = zv
    p_pi = theory.softmax(z) @ r
    assert theory.qae_identity_gap(z, r, p_pi, 0.1) == pytest.approx(0.0, abs=1e-15)


@given(S.logits_and_vector(binary=True, max_n=6), st.integers(1, 5), st.floats(0, 1), st.data())
def test_sampled_step_matches_lemma_on_explicit_dz(zv, g, b, data):
    z, r = zv
    acts = np.array(data.draw(st.lists(st.integers(0, z.shape[0] - 1), min_size=g, max_size=g)))
    p = theory.softmax(z)
    eta = 0.1
    dz = (eta / g) * sum((r[y] - b) * (np.eye(z.shape[0])[y] - p) for y in acts)
    assert theory.sampled_first_order_dH(z, r, acts, b, eta) == pytest.approx(
        theory.first_order_dH(z, dz), abs=1e-12
    )


@given(S.logits_and_vector(binary=True, max_n=5, scales=[0.3, 1.0, 3.0]), st.integers(1, 6), st.floats(0, 1))
def test_sampled_expectation_is_b_invariant(zv, g, b):
    z, r = zv
    counts, prob, _ = theory.sum_g_distribution(z, g)
    assert prob.sum() == pytest.approx(1.0, abs=1e-12)
    gv = theory.g_values(z)
    realised = -(0.01 / g) * (counts @ ((r - b) * gv))
    assert prob @ realised == pytest.approx(theory.qae_true_dH(z, r, 0.01), abs=1e-14)


def test_prob_sum_g_exact_vs_mc():
    z = np.array([2.0, 1.0, 0.5, -0.3, -2.0, 0.1])
    exact = theory.prob_sum_g_nonneg(z, 8, method="exact")
    mc = theory.prob_sum_g_nonneg(z, 8, method="mc", n_mc=200_000, seed=1)
    assert abs(exact - mc) < 5 * math.sqrt(exact * (1 - exact) / 200_000)
    assert 0.0 < exact < 1.0


def test_enumeration_limit_is_reported():
    with pytest.raises(ValueError, match="group_size: 16 with 12 actions"):
        theory.sum_g_distribution(np.zeros(12), 16)


@pytest.mark.parametrize("k", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k: got"):
        theory.quantile_baseline([0.0, 1.0], k)


def test_empty_group():
    with pytest.raises(ValueError, match="rewards: last axis is empty"):
        theory.quantile_baseline(np.zeros((3, 0)), 0.4)


def test_bad_actions():
    with pytest.raises(ValueError, match="actions: values in"):
        theory.sampled_first_order_dH([0.0, 1.0], [0.0, 1.0], np.array([0, 2]), 0.5, 0.1)
