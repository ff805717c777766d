"""Unbiased pass@k: the product form against the binomial definition, bounds and monotonicity."""

from fractions import Fraction
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import pass_at_k


@st.composite
def nck(draw):
    n = draw(st.integers(1, 60))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@given(nck())
def test_equals_binomial_definition(args):
    n, c, k = args
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@given(nck())
def test_bounds_and_monotone(args):
    n, c, k = args
    v = pass_at_k(n, c, k)
    assert 0.0 <= v <= 1.0
    if c < n:
        assert pass_at_k(n, c + 1, k) >= v - 1e-12
    if k < n:
        assert pass_at_k(n, c, k + 1) >= v - 1e-12


@given(nck())
def test_k1_is_the_fraction_correct(args):
    n, c, _ = args
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, 2, 0), (4, 2, 5), (4.0, 2, 1)])
def test_bad_input_names_the_argument(n, c, k):
    with pytest.raises(ValueError, match=r"^(n|c|k): got"):
        pass_at_k(n, c, k)
