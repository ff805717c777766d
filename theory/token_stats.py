"""The token-level batch covariance that Clip-Cov and KL-Cov select on, and what it estimates.

Per token i of a batch of N:  Cov_i = (log π(y_i) − mean_j log π(y_j))·(A_i − mean_j A_j)  (Cui et al. Eq. 10).
Its batch mean is the biased sample covariance, so with y_i iid ~ π and A_i = A(y_i):
    E[mean_i Cov_i] = (N − 1)/N · Cov_π(log π, A)          — the natural-PG form of Theorem 2,
not Cov_π(log π, π·A) (the vanilla-PG form of Theorem 1). docs/theory.md §1.5.
"""

from __future__ import annotations

import numpy as np

from theory import _validate as v
from theory.policy import _cov, _log_softmax


def token_cov(logp, adv, mask=None) -> np.ndarray:
    """Per-token covariance Cov_i = (log π_i − mean log π)·(A_i − mean A), means over valid tokens.

    Ref: Cui et al. 2025 (arXiv 2505.22617) Eq. 10; verl ``compute_policy_loss_clip_cov`` (which takes
    the means per micro-batch; here the caller decides the batch).

    Args:
        logp: (N,) or (B, T) log-probabilities of the sampled tokens.
        adv: same shape, advantages.
        mask: optional same shape, 1 for valid tokens; invalid tokens get 0.
    Returns:
        array of the input shape with the per-token covariance (0 where masked).
    """
    lp = v.array(logp, "logp")
    a = v.array(adv, "adv")
    if a.shape != lp.shape:
        raise ValueError(f"adv: shape {a.shape}; allowed: the shape of logp {lp.shape}")
    m = np.ones_like(lp) if mask is None else v.array(mask, "mask")
    if m.shape != lp.shape:
        raise ValueError(f"mask: shape {m.shape}; allowed: the shape of logp {lp.shape}")
    if ((m != 0) & (m != 1)).any():
        raise ValueError("mask: contains values other than 0 and 1; allowed: {0, 1}")
    n = m.sum()
    if n == 0:
        return np.zeros_like(lp)
    mlp = (lp * m).sum() / n
    ma = (a * m).sum() / n
    return (lp - mlp) * (a - ma) * m


def batch_cov_mean(logp, adv, mask=None) -> float:
    """Mean of ``token_cov`` over valid tokens: the biased sample covariance of (log π, A)."""
    c = token_cov(logp, adv, mask)
    m = np.ones_like(c) if mask is None else np.asarray(mask, dtype=np.float64)
    n = m.sum()
    return float(c.sum() / n) if n > 0 else 0.0


def token_cov_expectation(logits, adv, n_tokens: int) -> np.ndarray:
    """E[mean_i Cov_i] for N iid tokens y_i ~ π with a fixed per-action advantage A: (N−1)/N·Cov_π(log π, A).

    Args:
        logits: (..., n); adv: (..., n) advantage of each action; n_tokens: N ≥ 1.
    Returns:
        (...) the expectation.
    """
    z = v.array(logits, "logits")
    a = v.like(adv, "adv", z)
    nt = v.integer(n_tokens, "n_tokens", lo=1)
    logp = _log_softmax(z)
    return (nt - 1) / nt * _cov(np.exp(logp), logp, a)
