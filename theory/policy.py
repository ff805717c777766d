"""Softmax policies: log-probabilities, entropy and covariances under π.

All functions take logits with the actions on the last axis; leading axes are batch axes. Results are
float64 and finite for every finite input, up to the float extremes (the maximum is subtracted before
exponentiating; log π saturates at the most negative float instead of −inf, and every product that
carries log π multiplies by π first, so it is exactly 0 where π underflows).
"""

from __future__ import annotations

import numpy as np

from theory import _validate as v

FMAX = float(np.finfo(np.float64).max)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """log π, saturated at −FMAX: where z_a − max z overflows (logits ±1e308), log π_a is the most negative
    float rather than −inf, so that π·log π, π·(log π − E log π) and the like are exactly 0 there."""
    m = z.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        s = np.maximum(z - m, -FMAX)
    return np.maximum(s - np.log(np.exp(s).sum(axis=-1, keepdims=True)), -FMAX)


def _entropy_from_logp(logp: np.ndarray) -> np.ndarray:
    return -(np.exp(logp) * logp).sum(axis=-1)


def log_softmax(logits) -> np.ndarray:
    """log π(a) = z_a − log Σ_b exp z_b.

    Ref: textbook; Cui et al. 2025 (arXiv 2505.22617) Eq. 7 (tabular softmax policy).

    Args:
        logits: (..., n) real logits.
    Returns:
        (..., n) log-probabilities.
    """
    return _log_softmax(v.array(logits, "logits"))


def softmax(logits) -> np.ndarray:
    """π(a) = exp z_a / Σ_b exp z_b.  Args: logits (..., n). Returns: (..., n) probabilities."""
    return np.exp(_log_softmax(v.array(logits, "logits")))


def entropy(logits) -> np.ndarray:
    """Softmax entropy H(π) = −Σ_a π(a) log π(a), in nats.

    Ref: Cui et al. 2025 (arXiv 2505.22617) §3.1; bounds 0 ≤ H ≤ log n.
    Compared with: verl ``entropy_from_logits`` = logsumexp(z) − Σ softmax(z)·z (same value).

    Args:
        logits: (..., n) real logits.
    Returns:
        (...) entropy in nats.
    """
    return _entropy_from_logp(_log_softmax(v.array(logits, "logits")))


def _cov(p: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    mx = (p * x).sum(axis=-1, keepdims=True)
    my = (p * y).sum(axis=-1, keepdims=True)
    return (p * (x - mx) * (y - my)).sum(axis=-1)


def cov_pi(logits, x, y) -> np.ndarray:
    """Covariance under the policy: Cov_{a~π}(x, y) = Σ_a π_a (x_a − E_π x)(y_a − E_π y).

    Equal to E_π[xy] − E_π[x]E_π[y]; the centred form is used because it cancels less.
    Ref: docs/theory.md §0.

    Args:
        logits: (..., n); x, y: (..., n) per-action values (leading axes broadcast).
    Returns:
        (...) covariance.
    """
    z = v.array(logits, "logits")
    xa = v.like(x, "x", z)
    ya = v.like(y, "y", z)
    return _cov(np.exp(_log_softmax(z)), xa, ya)


def _c_and_parts(z: np.ndarray):
    logp = _log_softmax(z)
    p = np.exp(logp)
    h = _entropy_from_logp(logp)
    u = logp + h[..., None]  # log π + H, E_π[u] = 0
    c = (p * p * u).sum(axis=-1)
    return logp, p, h, u, c


def c_pi(logits) -> np.ndarray:
    """C(π) := Cov_{a~π}(log π(a), π(a)) = Σ_a π_a² (log π_a + H).

    C ≥ 0 with equality iff π is uniform (Chebyshev's sum inequality: log u and u are both increasing).
    It is the slope of QAE's surrogate in the baseline b (docs/theory.md §2.2) and the coupling term of
    the finite-sample analysis (§2.3). Ref: docs/theory.md §0 [ours].

    Args:
        logits: (..., n).
    Returns:
        (...) C(π) in nats (non-negative up to rounding).
    """
    return _c_and_parts(v.array(logits, "logits"))[-1]


def g_values(logits) -> np.ndarray:
    """g(y) := π_y (log π_y + H) − C(π) = Cov_π(log π, e_y − π), for every action y.

    The first-order entropy change of a one-sample REINFORCE step with advantage A on action y is
    −η·A·g(y); E_{y~π}[g(y)] = 0.  Ref: docs/theory.md §0, §2.3 [ours].

    Args:
        logits: (..., n).
    Returns:
        (..., n) g for each action.
    """
    _, p, _, u, c = _c_and_parts(v.array(logits, "logits"))
    return p * u - c[..., None]
