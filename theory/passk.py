"""Unbiased pass@k from n samples of which c are correct.

    pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k/i)

the probability that a random k-subset of the n samples holds at least one correct one; an unbiased
estimator of 1 − (1 − p)^k. The product form never forms a binomial coefficient, so it is exact in
floating point up to rounding for any n.
Ref: Chen et al. 2021 (arXiv 2107.03374) §2.1 and its numpy ``pass_at_k``.
"""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for n samples with c correct, 1 ≤ k ≤ n.

    Args:
        n: samples drawn (≥ 1); c: correct among them (0 ≤ c ≤ n); k: budget (1 ≤ k ≤ n).
    Returns:
        a float in [0, 1].
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name}: got {v!r}; allowed: an integer")
    if n < 1:
        raise ValueError(f"n: got {n}; allowed: an integer >= 1")
    if not 0 <= c <= n:
        raise ValueError(f"c: got {c}; allowed: an integer in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k: got {k}; allowed: an integer in [1, n={n}]")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))
