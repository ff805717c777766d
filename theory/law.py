"""The entropy–performance law R = −a·exp(H) + b, and exact-gradient bandit trajectories to test it on.

Deviation, stated first: Cui et al. do not say how they fit (loss, weighting). R is linear in (a, b)
given exp(H), so we use ordinary least squares of R on exp(H) (docs/theory.md §1.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory import _validate as v
from theory.policy import _cov, _entropy_from_logp, _log_softmax


def _pair(H, R) -> tuple[np.ndarray, np.ndarray]:
    h = v.array(H, "H")
    r = v.array(R, "R")
    if h.ndim != 1 or r.ndim != 1:
        raise ValueError(f"H, R: shapes {h.shape}, {r.shape}; allowed: 1-D trajectories")
    if h.shape != r.shape:
        raise ValueError(f"R: shape {r.shape}; allowed: the shape of H {h.shape}")
    return h, r


def fit_entropy_law(H, R) -> tuple[float, float]:
    """Least-squares fit of R = −a·exp(H) + b.

    The ceiling (performance at H = 0) is b − a; dR/dH = −a·exp(H).
    Ref: Cui et al. 2025 (arXiv 2505.22617) Eq. 6, §2.4.

    Args:
        H: (N,) entropies in nats; R: (N,) performance values.
    Returns:
        (a, b).
    """
    h, r = _pair(H, R)
    x = np.exp(h)
    if h.shape[0] < 2 or np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        raise ValueError(
            f"H: {h.shape[0]} points with exp(H) spread {float(np.ptp(x)):.3g}; allowed: at least two distinct entropies"
        )
    design = np.stack([-x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, r, rcond=None)
    return float(a), float(b)


def entropy_law_predict(H, a: float, b: float) -> np.ndarray:
    """R̂ = −a·exp(H) + b."""
    return -float(a) * np.exp(v.array(H, "H", min_ndim=0)) + float(b)


@dataclass(frozen=True)
class LawPrediction:
    """Result of fitting the law on the first part of a trajectory and predicting the rest."""

    a: float
    b: float
    ceiling: float  # b − a, predicted performance at H = 0
    n_fit: int
    rmse_fit: float  # in-sample RMSE on the fitted prefix
    rmse_pred: float  # RMSE on the held-out remainder
    final_err: float  # |R̂ − R| at the last step


def entropy_law_prediction(H, R, fit_frac: float = 0.15) -> LawPrediction:
    """Fit R = −a·exp(H) + b on the first ``fit_frac`` of a trajectory and predict the remainder.

    Ref: Cui et al. 2025 Fig. 5 (first 36 steps fitted, next 200 predicted; RMSE ≈ 1%).

    Args:
        H, R: (N,) trajectory; fit_frac: share of the first steps used to fit, in (0, 1).
    Returns:
        a ``LawPrediction``.
    """
    h, r = _pair(H, R)
    frac = v.scalar(fit_frac, "fit_frac", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    n_fit = max(2, round(frac * h.shape[0]))
    if n_fit >= h.shape[0]:
        raise ValueError(
            f"fit_frac: {frac} of {h.shape[0]} points leaves nothing to predict; allowed: a smaller share"
        )
    a, b = fit_entropy_law(h[:n_fit], r[:n_fit])
    pred = entropy_law_predict(h, a, b)
    err = pred - r
    return LawPrediction(
        a=a,
        b=b,
        ceiling=b - a,
        n_fit=n_fit,
        rmse_fit=float(np.sqrt(np.mean(err[:n_fit] ** 2))),
        rmse_pred=float(np.sqrt(np.mean(err[n_fit:] ** 2))),
        final_err=float(abs(err[-1])),
    )


@dataclass(frozen=True)
class Trajectory:
    """Exact-gradient bandit run: per step (index 0 = initial policy)."""

    entropy: np.ndarray  # (S+1, ...) nats, mean over states when several
    success: np.ndarray  # (S+1, ...) E_π r, mean over states
    cov_pg: np.ndarray  # (S+1, ...) Cov(log π, π·A), mean over states
    cov_npg: np.ndarray  # (S+1, ...) Cov(log π, A), mean over states


def exact_bandit_trajectory(logits, rewards, lr, steps: int, *, natural: bool = False) -> Trajectory:
    """Iterate the exact expected PG (or natural PG) step z ← z + Δz on a tabular softmax bandit.

    A numpy reference for the simulator (sim/ runs the same thing batched in torch).

    Args:
        logits: (P, n) or (n,) initial logits of P prompts; rewards: same shape; lr: η > 0;
        steps: number of updates S; natural: NPG (Δz = η·A) instead of PG (Δz = η·π·A).
    Returns:
        a ``Trajectory`` whose arrays are averaged over prompts.
    """
    z = v.array(logits, "logits").copy()
    r = np.broadcast_to(v.like(rewards, "rewards", z), z.shape)
    eta = v.scalar(lr, "lr", lo=0.0, lo_open=True)
    n_steps = v.integer(steps, "steps", lo=0)
    out = {k: np.empty(n_steps + 1) for k in ("H", "R", "pg", "npg")}
    for t in range(n_steps + 1):
        logp = _log_softmax(z)
        p = np.exp(logp)
        adv = r - (p * r).sum(axis=-1, keepdims=True)
        out["H"][t] = np.mean(_entropy_from_logp(logp))
        out["R"][t] = np.mean((p * r).sum(axis=-1))
        out["pg"][t] = np.mean(_cov(p, logp, p * adv))
        out["npg"][t] = np.mean(_cov(p, logp, adv))
        if t < n_steps:
            z = z + eta * (adv if natural else p * adv)
    return Trajectory(entropy=out["H"], success=out["R"], cov_pg=out["pg"], cov_npg=out["npg"])
