"""Lemma 1 for policies with shared parameters: the logit step of a parameter-gradient step is a kernel
step in logit space, and each state's entropy change splits into its own term and the other states'.

With logits z = f(θ) (all states stacked, S·n entries), J = ∂z/∂θ (S·n, P) and an ascent direction
g = ∂J/∂z in logit space (e.g. d(s)·π_s·A_s for the exact policy gradient), a step θ ← θ + η·Jᵀg moves the
logits, to first order, by

    Δz = η·J Jᵀ g = η·K g,     K = J Jᵀ (the neural-tangent kernel of the logits),

so Δz_s = η·Σ_{s'} K_{s s'} g_{s'} carries the advantages of every state that shares parameters with s.
Lemma 1 then gives ΔH_s ≈ −Cov_{π_s}(log π_s, Δz_s) = own_s + cross_s, where own_s uses the diagonal
block η·K_{ss} g_s and cross_s the rest. A tabular policy has J = I: Δz = η·g, no cross terms, and the
result is Cui et al.'s Theorem 1. Ref: docs/theory.md §1.1 (Lemma 1) and §1.6 (the kernel gain).
"""

from __future__ import annotations

import numpy as np

from theory import _validate as v
from theory.dynamics import first_order_dH


def _shapes(logits, jacobian, grad_z):
    z = v.array(logits, "logits", min_ndim=2)
    if z.ndim != 2:
        raise ValueError(f"logits: shape {z.shape}; allowed: (S, n), one row of logits per state")
    S, n = z.shape
    J = v.array(jacobian, "jacobian", min_ndim=2)
    if J.ndim != 2 or J.shape[0] != S * n:
        raise ValueError(
            f"jacobian: shape {J.shape}; allowed: (S·n, P) = ({S * n}, P), rows in the order of logits.ravel()"
        )
    g = v.array(grad_z, "grad_z", min_ndim=2)
    if g.shape != z.shape:
        raise ValueError(f"grad_z: shape {g.shape}; allowed: the logits' shape {z.shape}")
    return z, J, g


def kernel_dz(logits, jacobian, grad_z, lr) -> np.ndarray:
    """First-order logit change Δz = η·J Jᵀ g of the parameter step θ ← θ + η·Jᵀg.

    Args:
        logits: (S, n) current logits; jacobian: (S·n, P) ∂z/∂θ (rows in logits.ravel() order);
        grad_z: (S, n) ascent direction in logit space; lr: step size η ≥ 0.
    Returns:
        (S, n) Δz.
    """
    z, J, g = _shapes(logits, jacobian, grad_z)
    eta = v.scalar(lr, "lr", lo=0.0)
    return eta * (J @ (J.T @ g.ravel())).reshape(z.shape)


def kernel_first_order_dH(logits, jacobian, grad_z, lr) -> np.ndarray:
    """(S,) Lemma 1 per state on the kernel step: ΔH_s ≈ −Cov_{π_s}(log π_s, (η·K g)_s), nats."""
    return first_order_dH(logits, kernel_dz(logits, jacobian, grad_z, lr))


def kernel_dH_split(logits, jacobian, grad_z, lr) -> tuple[np.ndarray, np.ndarray]:
    """(own (S,), cross (S,)): each state's first-order ΔH from its own advantages (η·K_ss g_s) and from
    every other state's (η·Σ_{s'≠s} K_ss' g_s'); own + cross = ``kernel_first_order_dH``."""
    z, J, g = _shapes(logits, jacobian, grad_z)
    eta = v.scalar(lr, "lr", lo=0.0)
    S, n = z.shape
    Jb = J.reshape(S, n, -1)
    own_dz = eta * np.einsum("sap,sbp,sb->sa", Jb, Jb, g)
    own = first_order_dH(z, own_dz)
    total = first_order_dH(z, kernel_dz(z, J, g, eta))
    return own, total - own


def kernel_gain(jacobian, grad_z) -> float:
    """ρ = ‖Jᵀg‖² / ‖g‖² = gᵀK g / gᵀg: the first-order objective gain of the parameter step θ ← θ + η·Jᵀg
    relative to the tabular logit step z ← z + η·g of the same η: with g = ∂J/∂z, ΔJ ≈ gᵀΔz = η·gᵀK g against
    η·gᵀg.
    1 for a tabular (or any orthonormal) parametrisation; J → c·J gives c²·ρ. Dividing a class's step size
    by ρ makes its first step raise the objective as fast as the tabular policy's (``SimConfig.calibrate_lr``).

    Args:
        jacobian: (N, P) ∂z/∂θ with rows in the order of ``grad_z.ravel()``; grad_z: any shape with N entries,
        not all zero.
    Returns:
        ρ ≥ 0.
    """
    g = v.array(grad_z, "grad_z", min_ndim=1).ravel()
    J = v.array(jacobian, "jacobian", min_ndim=2)
    if J.ndim != 2 or J.shape[0] != g.size:
        raise ValueError(f"jacobian: shape {J.shape}; allowed: (N, P) with N = grad_z.size = {g.size}")
    gg = float(g @ g)
    if not gg > 0:
        raise ValueError("grad_z: all zero; allowed: a nonzero ascent direction (the gain is 0/0)")
    jg = J.T @ g
    return float(jg @ jg) / gg
