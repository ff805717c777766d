"""Closed-loop analysis of entropy control (EntroPIC, docs/theory.md §3) on a linearised entropy plant.

Plant (one optimizer step k):   H_{k+1} = H_k + d − κ·α_k
  κ > 0: plant gain, the entropy drop per unit of control α (α > 0 lowers entropy, as in EntroPIC);
  d: drift per step without control (d < 0: the usual collapse; larger |d| with several off-policy
     updates per rollout).
Controller (EntroPIC ``dp_actor.py``): e_k = H_k − H_tar,  α_k = clip(K_p·e_k + K_i·I_k, −α_max, α_max),
  I_{k+1} = I_k + e_k  (the integral used at step k holds the errors *before* step k).

Deviation, stated first: EntroPIC updates I per micro-batch, scaled by micro/mini-batch size; per
optimizer step that adds one averaged error, which is the model here. The paper's own stability
statements were not read (docs/theory.md §6); the region below is our derivation (Jury criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory import _validate as v


def _gains(kappa, kp, ki):
    k = v.scalar(kappa, "kappa", lo=0.0, lo_open=True)
    p = v.scalar(kp, "kp", lo=0.0)
    i = v.scalar(ki, "ki", lo=0.0)
    return k, p, i


def pi_loop_matrix(kappa, kp, ki) -> np.ndarray:
    """State matrix of the unsaturated loop in x = (e, I):  x_{k+1} = A·x_k + (d, 0).

    A = [[1 − κK_p, −κK_i], [1, 1]].  For K_i = 0 only the (1,1) entry matters (P control).
    """
    k, p, i = _gains(kappa, kp, ki)
    return np.array([[1.0 - k * p, -k * i], [1.0, 1.0]])


def pi_is_stable(kappa, kp, ki) -> bool:
    """Jury criterion for the closed loop (strict stability).

    PI (K_i > 0): characteristic polynomial λ² − (2 − κK_p)λ + (1 − κK_p + κK_i); stable iff
        K_i > 0  and  K_i < K_p < 2/κ + K_i/2.
    P (K_i = 0): e_{k+1} = (1 − κK_p)·e_k + d; stable iff 0 < κK_p < 2.
    Ref: our derivation [ours]; checked against eigenvalues in ``theory verify``.
    """
    k, p, i = _gains(kappa, kp, ki)
    if i == 0.0:
        return bool(0.0 < k * p < 2.0)
    return bool(i < p < 2.0 / k + i / 2.0)


def pi_spectral_radius(kappa, kp, ki) -> float:
    """Largest |eigenvalue| of the loop (P control: |1 − κK_p|)."""
    k, p, i = _gains(kappa, kp, ki)
    if i == 0.0:
        return abs(1.0 - k * p)
    return float(np.abs(np.linalg.eigvals(pi_loop_matrix(k, p, i))).max())


def pi_steady_state_error(kappa, drift, kp, ki, alpha_max: float = 1.0) -> float:
    """Steady-state error e* = H* − H_tar of a stable loop under constant drift d.

    P control: α* = d/κ must be reachable, e* = d/(κK_p).  PI control: e* = 0.
    If |d|/κ > α_max no α within the clip holds the target: returns ±inf (the sign of d).
    """
    k, p, i = _gains(kappa, kp, ki)
    d = v.scalar(drift, "drift")
    amax = v.scalar(alpha_max, "alpha_max", lo=0.0, lo_open=True)
    if not pi_is_stable(k, p, i):
        raise ValueError(f"kp, ki: ({p}, {i}) is unstable for kappa={k}; allowed: the region of pi_is_stable")
    if abs(d) / k > amax:
        return float(np.sign(d)) * np.inf
    return 0.0 if i > 0 else d / (k * p)


@dataclass(frozen=True)
class LoopRun:
    error: np.ndarray  # (S+1,) e_k = H_k − H_tar
    alpha: np.ndarray  # (S,) control applied at step k
    integral: np.ndarray  # (S+1,) I_k


def simulate_pi_loop(kappa, drift, kp, ki, e0, steps: int, alpha_max: float = 1.0) -> LoopRun:
    """Run the clipped loop for ``steps`` optimizer steps from error e0 (and I_0 = 0)."""
    k, p, i = _gains(kappa, kp, ki)
    d = v.scalar(drift, "drift")
    e = v.scalar(e0, "e0")
    amax = v.scalar(alpha_max, "alpha_max", lo=0.0, lo_open=True)
    n = v.integer(steps, "steps", lo=0)
    errors = np.empty(n + 1)
    alphas = np.empty(n)
    integral = np.empty(n + 1)
    acc = 0.0
    for t in range(n):
        errors[t], integral[t] = e, acc
        a = float(np.clip(p * e + i * acc, -amax, amax))
        alphas[t] = a
        acc += e
        e = e + d - k * a
    errors[n], integral[n] = e, acc
    return LoopRun(error=errors, alpha=alphas, integral=integral)
