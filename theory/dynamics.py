"""Entropy change of a softmax policy under a logit step Δz (Lemma 1) and under PG / natural PG (Prop. 1, Thms 1-2).

Deviations from the paper, stated first:
* Cui et al. write the update as z ← z − η∇J in §3.2 (a sign typo for ascent); we use ascent, z ← z + Δz.
* Prop. 1 uses E_π[A] = 0 (Lemma 3). ``pg_dz`` centres the reward itself (A = r − E_π r), which is
  what the exact softmax gradient does for any constant baseline; ``pg_first_order_dH`` therefore is
  −η·Cov(log π, π·(r − E_π r)) — the form that stays right when a user passes an uncentred signal.
* The state-visitation weight d^π(s)/(1−γ) is dropped, as in the paper (per-state "conditional" step).
* ``second_order_dH`` goes beyond the paper: the exact quadratic term with the closed-form Hessian.
"""

from __future__ import annotations

import numpy as np

from theory import _validate as v
from theory.policy import FMAX, _c_and_parts, _cov, _entropy_from_logp, _log_softmax


def entropy_grad(logits) -> np.ndarray:
    """∇_z H = −π ⊙ (log π + H).

    Ref: Cui et al. 2025 App. E.2 (with Lemma 2: ∂log π_a/∂z_b = 1{a=b} − π_b).

    Args:
        logits: (..., n).
    Returns:
        (..., n) gradient of the entropy with respect to the logits.
    """
    _, p, _, u, _ = _c_and_parts(v.array(logits, "logits"))
    return -p * u


def entropy_hessian(logits) -> np.ndarray:
    """∇²_z H, with u = log π + H:  ∂²H/∂z_j∂z_k = −δ_jk π_j (u_j + 1) + π_j π_k (u_j + u_k + 1).

    Rows sum to zero (adding a constant to all logits changes nothing). Ref: our derivation [ours],
    checked against finite differences of ``entropy_grad`` in tests/theory/test_dynamics.py.

    Args:
        logits: (..., n).
    Returns:
        (..., n, n) symmetric Hessian.
    """
    _, p, _, u, _ = _c_and_parts(v.array(logits, "logits"))
    pu = p * u  # 0 where π underflows (u is then about −1.8e308): no 0·inf below
    outer = (
        pu[..., :, None] * p[..., None, :]
        + p[..., :, None] * pu[..., None, :]
        + p[..., :, None] * p[..., None, :]
    )
    n = p.shape[-1]
    diag = np.einsum("...i,ij->...ij", p * (u + 1.0), np.eye(n))
    return outer - diag


def first_order_dH(logits, dz) -> np.ndarray:
    """Lemma 1: H(softmax(z + Δz)) − H(softmax(z)) ≈ −Cov_{a~π}(log π(a), Δz_a).

    Exact as a directional derivative; the error is O(|Δz|²). Invariant to adding a constant to all
    logits of a state, not to adding c·π (that changes it by −c·C(π)).
    Ref: Cui et al. 2025 (arXiv 2505.22617) Lemma 1, App. E.2.

    Args:
        logits: (..., n) current logits z.
        dz: (..., n) logit step Δz.
    Returns:
        (...) first-order entropy change in nats.
    """
    z = v.array(logits, "logits")
    d = v.like(dz, "dz", z)
    _, p, _, u, _ = _c_and_parts(z)
    return -(p * u * (d - (p * d).sum(axis=-1, keepdims=True))).sum(axis=-1)


def second_order_dH(logits, dz) -> np.ndarray:
    """Second-order Taylor entropy change: −Cov_π(log π, Δz) − ½·E_π[(log π + H + 1)·δ²], δ = Δz − E_π Δz.

    The quadratic term equals ½·Δzᵀ(∇²H)Δz (``entropy_hessian``); the centred form follows from the
    rows of the Hessian summing to zero. Error O(|Δz|³): halving η divides it by about 8.
    Ref: our derivation [ours] (the paper stops at first order).

    Args:
        logits: (..., n); dz: (..., n).
    Returns:
        (...) second-order entropy change in nats.
    """
    z = v.array(logits, "logits")
    d = v.like(dz, "dz", z)
    _, p, _, u, _ = _c_and_parts(z)
    delta = d - (p * d).sum(axis=-1, keepdims=True)
    first = -(p * u * delta).sum(axis=-1)
    quad = -(p * (u + 1.0) * delta * delta).sum(axis=-1)
    return first + 0.5 * quad


def exact_dH(logits, dz) -> np.ndarray:
    """Exact entropy change H(softmax(z + Δz)) − H(softmax(z)).

    Args:
        logits: (..., n); dz: (..., n).
    Returns:
        (...) exact entropy change in nats.
    """
    z = v.array(logits, "logits")
    d = v.like(dz, "dz", z)
    with np.errstate(over="ignore"):
        z = np.maximum(
            z - z.max(axis=-1, keepdims=True), -FMAX
        )  # softmax ignores the shift; z + Δz stays finite
        moved = z + d
    return _entropy_from_logp(_log_softmax(moved)) - _entropy_from_logp(_log_softmax(z))


def _lr(lr) -> float:
    return v.scalar(lr, "lr", lo=0.0, lo_open=True)


def _centred(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return r - (p * r).sum(axis=-1, keepdims=True)


def pg_dz(logits, rewards, lr) -> np.ndarray:
    """Prop. 1: exact expected vanilla-PG logit step Δz = η·π ⊙ (r − E_π r).

    The exact gradient of E_π[r] w.r.t. the logits is (diag π − ππᵀ)·r = π ⊙ (r − E_π r); any constant
    baseline b drops out because (diag π − ππᵀ)·1 = 0.
    Ref: Cui et al. 2025 Prop. 1 (App. E.3), which writes η·π·A with E_π A = 0.

    Args:
        logits: (..., n); rewards: (..., n) per-action reward (or Q-value); lr: step size η > 0.
    Returns:
        (..., n) logit step.
    """
    z = v.array(logits, "logits")
    r = v.like(rewards, "rewards", z)
    eta = _lr(lr)
    p = np.exp(_log_softmax(z))
    return eta * p * _centred(p, r)


def npg_dz(logits, rewards, lr) -> np.ndarray:
    """Thm 2: natural-PG logit step on a tabular softmax, Δz = η·(r − E_π r) = η·A.

    Ref: Cui et al. 2025 Thm 2 (App. E.4), citing Agarwal et al. 2021 (their 1/(1−γ) absorbed into η).
    The centring is cosmetic: softmax and Cov are invariant to a constant shift.

    Args:
        logits: (..., n); rewards: (..., n); lr: η > 0.
    Returns:
        (..., n) logit step.
    """
    z = v.array(logits, "logits")
    r = v.like(rewards, "rewards", z)
    eta = _lr(lr)
    p = np.exp(_log_softmax(z))
    return eta * _centred(p, r)


def _theorem_dH(logits, rewards, lr, *, weight_by_pi: bool) -> np.ndarray:
    """−η·Cov_π(log π, π⊙A) (Thm 1) or −η·Cov_π(log π, A) (Thm 2), with A = r − E_π r."""
    z = v.array(logits, "logits")
    r = v.like(rewards, "rewards", z)
    eta = _lr(lr)
    logp = _log_softmax(z)
    p = np.exp(logp)
    adv = _centred(p, r)
    return -eta * _cov(p, logp, p * adv if weight_by_pi else adv)


def pg_first_order_dH(logits, rewards, lr) -> np.ndarray:
    """Thm 1: ΔH ≈ −η·Cov_{a~π}(log π(a), π(a)·A(a)), A = r − E_π r.

    Ref: Cui et al. 2025 Thm 1, Eq. 8 (group-wise covariance in Fig. 8).

    Args:
        logits: (..., n); rewards: (..., n); lr: η > 0.
    Returns:
        (...) first-order entropy change in nats.
    """
    return _theorem_dH(logits, rewards, lr, weight_by_pi=True)


def npg_first_order_dH(logits, rewards, lr) -> np.ndarray:
    """Thm 2: ΔH ≈ −η·Cov_{a~π}(log π(a), A(a)) under natural PG.

    Ref: Cui et al. 2025 Thm 2. This is the covariance that Clip-Cov/KL-Cov estimate per token (§4.2).

    Args:
        logits: (..., n); rewards: (..., n); lr: η > 0.
    Returns:
        (...) first-order entropy change in nats.
    """
    return _theorem_dH(logits, rewards, lr, weight_by_pi=False)


def softmax_jacobian(logits) -> np.ndarray:
    """J = ∂π/∂z = diag(π) − ππᵀ (symmetric; J·1 = 0).  Args: logits (..., n). Returns: (..., n, n)."""
    z = v.array(logits, "logits")
    p = np.exp(_log_softmax(z))
    n = p.shape[-1]
    return np.einsum("...i,ij->...ij", p, np.eye(n)) - p[..., :, None] * p[..., None, :]


def one_arm_bump_dH(logits, arm: int, delta) -> np.ndarray:
    """First-order ΔH of bumping one logit, Δz = δ·e_a:  ΔH ≈ −δ·π_a·(log π_a + H).

    The sign flips at log π_a = −H (π_a = e^{−H}), not at π_a = 1/n (docs/theory.md §1.3).

    Args:
        logits: (..., n); arm: index a; delta: bump δ (any real).
    Returns:
        (...) first-order entropy change.
    """
    z = v.array(logits, "logits")
    a = v.integer(arm, "arm", lo=0, hi=z.shape[-1] - 1)
    dl = v.scalar(delta, "delta")
    _, p, _, u, _ = _c_and_parts(z)
    return -dl * p[..., a] * u[..., a]
