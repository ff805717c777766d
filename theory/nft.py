"""NFT ≡ GRPO on-policy: the per-token gradient coefficients of the two losses as closed forms.

Both losses have gradients of the form −c_t·∇R_t, with R_t = π_θ(a_t)/π_old(a_t), binary reward r and
group solve rate r̂ ∈ (0, 1):

    GRPO (unclipped):  c = A,  A⁺ = √((1 − r̂)/r̂) for r = 1,  A⁻ = −√(r̂/(1 − r̂)) for r = 0
    NFT:               c = ω·[ r/R − (1 − r)·(r̂/(1 − r̂)) / maxv((1 − r̂R)/(1 − r̂), ε) ],  ω = √((1 − r̂)/r̂)

At R = 1 the two coefficients are equal for every r̂: the seed's claim (seed 001; Chen et al. 2025,
arXiv 2505.18116, §4). ``python -m theory verify`` checks it (row NFT1) and reports how far they drift
apart off-policy.
"""

from __future__ import annotations

import numpy as np

from theory import _validate as v


def grpo_identity_coef(r, rhat) -> np.ndarray:
    """A = (r − r̂)/√(r̂(1 − r̂)) (GRPO's advantage with the population std), elementwise."""
    r, rhat = np.asarray(r, dtype=np.float64), np.asarray(rhat, dtype=np.float64)
    _check(r, rhat)
    return (r - rhat) / np.sqrt(rhat * (1.0 - rhat))


def nft_coef(r, rhat, ratio, eps: float = 1.0) -> np.ndarray:
    """NFT's coefficient c of −∇R for reward r, solve rate r̂ and ratio R (elementwise, broadcast)."""
    r, rhat = np.asarray(r, dtype=np.float64), np.asarray(rhat, dtype=np.float64)
    R = v.array(ratio, "ratio", min_ndim=0)
    _check(r, rhat)
    if np.any(R <= 0):
        raise ValueError(f"ratio: min {float(np.min(R))}; allowed: positive ratios")
    if not eps > 0:
        raise ValueError(f"eps: got {eps}; allowed: a number > 0")
    omega = np.sqrt((1.0 - rhat) / rhat)
    neg_arg = (1.0 - rhat * R) / (1.0 - rhat)
    return omega * (r / R - (1.0 - r) * (rhat / (1.0 - rhat)) / np.maximum(neg_arg, eps))


def _check(r: np.ndarray, rhat: np.ndarray) -> None:
    if np.any((r != 0) & (r != 1)):
        raise ValueError("r: non-binary values; allowed: rewards in {0, 1}")
    if np.any((rhat <= 0) | (rhat >= 1)):
        raise ValueError(f"rhat: values in [{float(np.min(rhat))}, {float(np.max(rhat))}]; allowed: (0, 1)")
