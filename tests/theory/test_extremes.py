"""The closed forms are finite for every finite input, up to the float extremes (±1.8e308): logit
differences that overflow must not turn π·log π into 0·inf = nan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import theory
from tests.strategies import float_extreme_logits

MODERATE = st.floats(-3.0, 3.0, allow_nan=False)


def _moderate_like(z, draw):
    return draw(hnp.arrays(np.float64, z.shape, elements=MODERATE))


def test_the_reported_cases_are_finite():
    assert theory.entropy([1e308, -1e308]) == 0.0
    assert theory.c_pi([1e308, -1e308]) == 0.0
    assert np.isfinite(theory.log_softmax([1e308, -1e308])).all()


@given(z=float_extreme_logits())
def test_policy_functions_are_finite_and_in_bounds(z):
    h = theory.entropy(z)
    assert math.isfinite(h) and -1e-12 <= h <= math.log(len(z)) + 1e-12
    p = theory.softmax(z)
    assert np.isfinite(p).all() and abs(p.sum() - 1.0) < 1e-12
    assert np.isfinite(theory.log_softmax(z)).all()
    c = theory.c_pi(z)
    assert math.isfinite(c) and c >= -1e-12
    assert np.isfinite(theory.g_values(z)).all()
    assert np.isfinite(theory.entropy_grad(z)).all()
    assert np.isfinite(theory.entropy_hessian(z)).all()


@given(z=float_extreme_logits(), data=st.data())
def test_entropy_changes_are_finite(z, data):
    d = _moderate_like(z, data.draw)
    r = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 1.0])))
    for value in (
        theory.cov_pi(z, d, r),
        theory.first_order_dH(z, d),
        theory.second_order_dH(z, d),
        theory.exact_dH(z, d),
        theory.pg_first_order_dH(z, r, 0.5),
        theory.npg_first_order_dH(z, r, 0.5),
    ):
        assert np.isfinite(value).all()
    assert np.isfinite(theory.pg_dz(z, r, 0.5)).all() and np.isfinite(theory.npg_dz(z, r, 0.5)).all()


@pytest.mark.parametrize("shift", [1e300, -1e300])
def test_a_huge_common_shift_leaves_a_uniform_policy(shift):
    """At ±1e300 the spacing of floats swallows differences of order 1: the shifted logits are equal."""
    z = np.array([0.3, -1.2, 2.0]) + shift
    assert len(set(z.tolist())) == 1 and theory.entropy(z) == pytest.approx(math.log(3))
