"""theory.policy: entropy, log-softmax and covariances under π."""

import numpy as np
import pytest
import scipy.special
from hypothesis import example, given
from hypothesis import strategies as st

import theory
from tests import strategies as S


@given(S.logits())
def test_entropy_bounds(z):
    h = theory.entropy(z)
    assert 0.0 <= h <= np.log(z.shape[-1]) + 1e-12


@given(S.logits())
def test_entropy_matches_scipy(z):
    p = scipy.special.softmax(z)
    ref = -np.sum(scipy.special.xlogy(p, p))
    assert theory.entropy(z) == pytest.approx(ref, abs=1e-12)


@given(S.logits(), st.floats(-1e3, 1e3))
def test_entropy_shift_invariant(z, c):
    assert theory.entropy(z + c) == pytest.approx(theory.entropy(z), abs=1e-12)


@given(S.extreme_logits())
def test_extreme_logits_stay_finite(z):
    for out in (theory.entropy(z), theory.log_softmax(z), theory.c_pi(z), theory.g_values(z)):
        assert np.all(np.isfinite(out))
    assert theory.softmax(z).sum() == pytest.approx(1.0)


def test_uniform_and_deterministic_entropy():
    assert theory.entropy(np.zeros(7)) == pytest.approx(np.log(7), abs=1e-15)
    assert theory.entropy([1e4, -1e4, 0.0]) == 0.0


@given(S.logits(batch=(3,)))
def test_batched_equals_rowwise(z):
    h = theory.entropy(z)
    assert h.shape == (3,)
    for i in range(3):
        assert h[i] == pytest.approx(theory.entropy(z[i]), abs=1e-14)


@given(S.logits_and_vector(), st.data())
def test_cov_pi_textbook(zv, data):
    z, x = zv
    y = data.draw(S.hnp.arrays(np.float64, z.shape, elements=st.floats(-3, 3)))
    p = scipy.special.softmax(z)
    ref = p @ (x * y) - (p @ x) * (p @ y)
    assert theory.cov_pi(z, x, y) == pytest.approx(ref, abs=1e-12)


@given(S.logits())
def test_c_pi_nonnegative_zero_iff_uniform(z):
    c = theory.c_pi(z)
    assert c >= -1e-15
    if np.ptp(z) == 0:
        assert c == pytest.approx(0.0, abs=1e-15)


@given(S.logits(scales=[0.5, 1.0, 3.0]))
def test_c_pi_strictly_positive_when_not_uniform(z):
    if np.ptp(z) > 1e-3:
        assert theory.c_pi(z) > 0


@given(S.logits())
def test_g_is_cov_with_one_hot_and_mean_zero(z):
    g = theory.g_values(z)
    p = theory.softmax(z)
    lp = theory.log_softmax(z)
    assert p @ g == pytest.approx(0.0, abs=1e-12)
    for y in range(z.shape[0]):
        assert g[y] == pytest.approx(theory.cov_pi(z, lp, np.eye(z.shape[0])[y] - p), abs=1e-12)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ([0.0, np.nan], "logits: contains nan"),
        ([np.inf, 0.0], "logits: contains inf"),
        ([], "logits: last axis is empty"),
        (3.0, "logits: has 0 axes"),
        ("abc", "logits: cannot convert"),
    ],
)
def test_bad_logits(bad, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        theory.entropy(bad)


def test_shape_mismatch_names_argument():
    with pytest.raises(ValueError, match="y: shape \\(2,\\) has 2 actions"):
        theory.cov_pi([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0])


@example(np.array([0.0, 0.0]))  # exactly uniform: g ≡ 0 and C = 0 (the degenerate case of Prop. 4.2)
@given(S.logits(max_n=3))
def test_g_zero_for_uniform(z):
    if np.ptp(z) == 0:
        assert np.all(np.abs(theory.g_values(z)) < 1e-15)
