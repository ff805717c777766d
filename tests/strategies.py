"""Shared hypothesis strategies for entrolab's property tests.

Logits are biased toward the regimes where bugs hide: exactly uniform (scale 0), near-uniform
(1e-3), moderate, near-deterministic (10-50), with a random common shift (softmax ignores it).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SCALES = [0.0, 1e-3, 0.1, 1.0, 3.0, 10.0, 50.0]
UNIT = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def logits(draw, min_n: int = 2, max_n: int = 12, scales=None, batch: tuple[int, ...] = ()):
    """A logit vector (or a (*batch, n) array) with a random scale from ``scales`` and a common shift."""
    n = draw(st.integers(min_n, max_n))
    base = draw(hnp.arrays(np.float64, (*batch, n), elements=UNIT))
    scale = draw(st.sampled_from(scales or SCALES))
    shift = draw(st.floats(-100.0, 100.0, allow_nan=False))
    return base * scale + shift


@st.composite
def extreme_logits(draw, min_n: int = 2, max_n: int = 8):
    """Logits with entries up to ±1e4 (overflow bait)."""
    n = draw(st.integers(min_n, max_n))
    return draw(hnp.arrays(np.float64, n, elements=st.sampled_from([-1e4, -30.0, 0.0, 1.0, 30.0, 1e4])))


@st.composite
def logits_and_vector(draw, binary: bool = False, **kw):
    """(logits, v) with v a per-action vector: real N(0,1)-like, or binary rewards."""
    z = draw(logits(**kw))
    if binary:
        v = draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 1.0])))
    else:
        v = draw(hnp.arrays(np.float64, z.shape, elements=st.floats(-3.0, 3.0, allow_nan=False)))
    return z, v


@st.composite
def reward_groups(draw, min_g: int = 1, max_g: int = 32, binary: bool = True, max_groups: int = 4):
    """(P, G) rewards: P groups of G responses, binary or real."""
    g = draw(st.integers(min_g, max_g))
    p = draw(st.integers(1, max_groups))
    elements = st.sampled_from([0.0, 1.0]) if binary else st.floats(-5.0, 5.0, allow_nan=False)
    return draw(hnp.arrays(np.float64, (p, g), elements=elements))


quantile_k = st.floats(0.01, 0.99, allow_nan=False)
step_sizes = st.floats(1e-4, 1.0, allow_nan=False)


FMAX = float(np.finfo(np.float64).max)
EXTREMES = [-FMAX, -1e308, -1e200, -1e4, -1.0, 0.0, 1e-300, 1.0, 1e4, 1e200, 1e308, FMAX]


@st.composite
def float_extreme_logits(draw, min_n: int = 2, max_n: int = 6, batch: tuple[int, ...] = ()):
    """Logits anywhere in the finite float range: the extremes (±max float, ±1e308, ...) mixed with any
    finite float, so differences of entries overflow."""
    n = draw(st.integers(min_n, max_n))
    elements = st.one_of(st.sampled_from(EXTREMES), st.floats(allow_nan=False, allow_infinity=False))
    return draw(hnp.arrays(np.float64, (*batch, n), elements=elements))
