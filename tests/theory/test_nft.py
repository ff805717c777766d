"""NFT ≡ GRPO at R = 1 (exact identity), and where they part off-policy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.nft import grpo_identity_coef, nft_coef


@given(
    st.integers(2, 64).flatmap(lambda k: st.tuples(st.just(k), st.integers(1, k - 1))),
    st.sampled_from([0.0, 1.0]),
)
def test_identity_at_ratio_one(kc, r):
    k, c = kc
    rhat = c / k
    assert nft_coef(r, rhat, 1.0) == pytest.approx(float(grpo_identity_coef(r, rhat)), abs=1e-12, rel=1e-12)


@given(st.floats(0.01, 0.99), st.floats(-1.0, 1.0))
def test_positives_scale_as_one_over_ratio(rhat, log_r):
    R = float(np.exp(log_r))
    assert nft_coef(1.0, rhat, R) == pytest.approx(float(grpo_identity_coef(1.0, rhat)) / R, rel=1e-12)


@given(st.floats(0.01, 0.99), st.floats(1e-3, 1.0))
def test_negatives_above_ratio_one_are_floored_to_grpos_coefficient(rhat, log_r):
    """With ε = 1, R > 1 puts (1 − r̂R)/(1 − r̂) below the floor: the coefficient stays A⁻ exactly."""
    R = float(np.exp(log_r))
    assert nft_coef(0.0, rhat, R) == pytest.approx(float(grpo_identity_coef(0.0, rhat)), rel=1e-12)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="r: non-binary"):
        nft_coef(0.5, 0.5, 1.0)
    with pytest.raises(ValueError, match="rhat: values in"):
        nft_coef(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="ratio: min"):
        nft_coef(1.0, 0.5, 0.0)
