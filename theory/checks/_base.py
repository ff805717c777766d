"""Shared pieces of the theory checks: the registry and random softmax policies."""

from __future__ import annotations

import math

import numpy as np

from entrolab.common.verdict import Registry

REGISTRY = Registry("theory verify")
"""The checks of ``python -m theory verify``, registered where they are defined; the registration order
(theory/checks/__init__.py imports the topics in row order) gives each check its child seed."""

check = REGISTRY.register


def random_logits(rng: np.random.Generator, count: int, n_lo: int = 2, n_hi: int = 12) -> list[np.ndarray]:
    """Random logit vectors: sizes in [n_lo, n_hi], scales from near-uniform (0.05) to peaked (6)."""
    out = []
    for _ in range(count):
        n = int(rng.integers(n_lo, n_hi + 1))
        scale = float(np.exp(rng.uniform(np.log(0.05), np.log(6.0))))
        out.append(rng.normal(size=n) * scale)
    return out


def _slope(e_big: float, e_small: float, ratio: float) -> float:
    """log(error ratio)/log(step ratio) for one halving/decimation of the step."""
    if e_small <= 0 or e_big <= 0:
        return math.inf
    return math.log(e_big / e_small) / math.log(ratio)
