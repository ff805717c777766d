"""theory.token_stats: the Clip-Cov/KL-Cov batch covariance."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import theory

vec = hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-5, 5))


@given(vec, st.data())
def test_mean_is_biased_sample_covariance(lp, data):
    a = data.draw(hnp.arrays(np.float64, lp.shape, elements=st.floats(-5, 5)))
    ref = np.cov(lp, a, bias=True)[0, 1] if lp.size > 1 else 0.0
    assert theory.batch_cov_mean(lp, a) == pytest.approx(ref, abs=1e-10)


@given(vec, st.data(), st.integers(1, 10))
def test_padding_changes_nothing(lp, data, pad):
    a = data.draw(hnp.arrays(np.float64, lp.shape, elements=st.floats(-5, 5)))
    lp2 = np.concatenate([lp, np.full(pad, 123.0)])
    a2 = np.concatenate([a, np.full(pad, -7.0)])
    mask = np.concatenate([np.ones_like(lp), np.zeros(pad)])
    np.testing.assert_allclose(
        theory.token_cov(lp2, a2, mask)[: lp.size], theory.token_cov(lp, a), atol=1e-12
    )
    assert np.all(theory.token_cov(lp2, a2, mask)[lp.size :] == 0)


def test_expectation_monte_carlo():
    rng = np.random.default_rng(0)
    z = np.array([1.5, 0.2, -0.7, 0.9])
    p = theory.softmax(z)
    adv = np.array([1.0, -0.5, 0.3, 0.0]) - p @ np.array([1.0, -0.5, 0.3, 0.0])
    n = 8
    y = rng.choice(4, size=(100_000, n), p=p)
    lp, a = theory.log_softmax(z)[y], adv[y]
    est = ((lp - lp.mean(1, keepdims=True)) * (a - a.mean(1, keepdims=True))).mean(1)
    expect = theory.token_cov_expectation(z, adv, n)
    assert abs(est.mean() - expect) < 5 * est.std() / np.sqrt(len(est))
    # and it is visibly not the vanilla-PG covariance Cov(log π, π·A)
    assert abs(est.mean() - theory.cov_pi(z, theory.log_softmax(z), p * adv)) > 10 * est.std() / np.sqrt(
        len(est)
    )


def test_all_masked_is_zero():
    assert theory.batch_cov_mean([1.0, 2.0], [3.0, 4.0], [0.0, 0.0]) == 0.0


def test_mask_must_be_binary():
    with pytest.raises(ValueError, match="mask: contains values other than 0 and 1"):
        theory.token_cov([1.0, 2.0], [3.0, 4.0], [0.5, 1.0])
