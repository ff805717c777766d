"""QAE: the K-quantile baseline, Prop. 4.2's surrogate, and what the true and sampled updates do.

Deviations and findings, stated first (docs/theory.md §2.3):
* Prop. 4.2 (Wu et al., arXiv 2509.22611) plugs an *uncentred* advantage r − b into Theorem 1. That
  surrogate F_q(b) = F_q(0) − b·C(π) is strictly monotone in b. The exact expected softmax-PG step is
  b-invariant, so its first-order ΔH is flat in b, and ΔH_QAE(b) = ΔH_true + η(b − p_π)·C(π) exactly.
* ``quantile_baseline`` follows the paper's right-continuous definition inf{x : F(x) ≥ K} in exact
  arithmetic. numpy's ``method="inverted_cdf"`` agrees except where K·G is an integer that floating
  point rounds up (e.g. G = 25, K = 0.28: 0.28·25 = 7.000000000000001), where numpy takes the next
  order statistic. The QAE code uses ``torch.quantile`` (linear interpolation), which differs for
  G ∈ {4, 8}; ``linear_quantile_baseline`` reproduces that behaviour for comparison.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import gammaln

from theory import _validate as v
from theory.policy import _c_and_parts, _cov, _log_softmax


def _k(k) -> float:
    return v.scalar(k, "k", lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def _quantile_index(k: float, g: int) -> int:
    """0-based order statistic for inf{x : F(x) ≥ k} with G samples: ceil(k·G) − 1 in exact arithmetic."""
    kg = k * g
    nearest = round(kg)
    j = nearest if abs(kg - nearest) <= 1e-9 * max(1.0, kg) else math.ceil(kg)
    return min(max(j, 1), g) - 1


def quantile_baseline(rewards, k) -> np.ndarray:
    """Right-continuous K-quantile of each group: b_K = inf{x : F_G(x) ≥ K}, F_G the empirical CDF.

    Groups lie along the last axis. For binary rewards with success rate p this reduces to
    b_K = 0 if p ≤ 1 − K else 1 (QAE Eq. 4).
    Ref: Wu et al. 2025 (arXiv 2509.22611) §4.1; equals numpy ``quantile(R, K, method="inverted_cdf")``
    except for the floating-point cases named in the module docstring.

    Args:
        rewards: (..., G) rewards of each group.
        k: K in (0, 1).
    Returns:
        (...) baseline per group.
    """
    r = v.array(rewards, "rewards")
    kk = _k(k)
    idx = _quantile_index(kk, r.shape[-1])
    return np.sort(r, axis=-1)[..., idx]


def linear_quantile_baseline(rewards, k) -> np.ndarray:
    """The linear-interpolation quantile that ``torch.quantile`` (and numpy's default) computes.

    Index (G − 1)·K, interpolated between neighbouring order statistics. This is what the QAE code's
    one-line change uses; it is not the paper's definition (docs/theory.md §2.1).

    Args:
        rewards: (..., G); k: K in (0, 1).
    Returns:
        (...) baseline per group.
    """
    r = v.array(rewards, "rewards")
    kk = _k(k)
    return np.quantile(r, kk, axis=-1, method="linear")


def qae_binary_baseline(success_frac, k) -> np.ndarray:
    """QAE Eq. 4 for binary rewards: b_K = 0 if p ≤ 1 − K, else 1.

    Args:
        success_frac: (...) empirical success rate p in [0, 1] of each group.
        k: K in (0, 1).
    Returns:
        (...) baseline in {0, 1}.
    """
    p = v.array(success_frac, "success_frac", min_ndim=0)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(
            f"success_frac: got values outside [0, 1] (min {p.min()}, max {p.max()}); allowed: [0, 1]"
        )
    kk = _k(k)
    return np.where(p <= 1.0 - kk + 1e-12, 0.0, 1.0)


def _b(b, shape) -> np.ndarray:
    arr = v.array(b, "b", min_ndim=0)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"b: shape {arr.shape} does not broadcast to {shape}; allowed: a scalar or batch shape"
        ) from None


def qae_surrogate_dH(logits, rewards, b, lr) -> np.ndarray:
    """Prop. 4.2's surrogate: ΔH(q; b) ≈ −η·F_q(b),  F_q(b) = Cov_{y~π}(log π(y), π(y)·(r(y) − b)).

    Strictly increasing in b for non-uniform π, with slope η·C(π). It is the first-order ΔH of the
    non-PG step Δz = η·π·(r − b), not of the softmax policy gradient (see ``qae_true_dH``).
    Ref: Wu et al. 2025 (arXiv 2509.22611) Prop. 4.2, App. A.2.

    Args:
        logits: (..., n); rewards: (..., n); b: scalar or (...) baseline; lr: η > 0.
    Returns:
        (...) surrogate entropy change.
    """
    z = v.array(logits, "logits")
    r = v.like(rewards, "rewards", z)
    eta = v.scalar(lr, "lr", lo=0.0, lo_open=True)
    logp = _log_softmax(z)
    p = np.exp(logp)
    shape = np.broadcast_shapes(z.shape, r.shape)[:-1]
    bb = _b(b, shape)
    return -eta * _cov(p, logp, p * (r - bb[..., None]))


def qae_true_dH(logits, rewards, lr) -> np.ndarray:
    """First-order ΔH of the exact expected PG step with any constant baseline: −η·Cov(log π, π·(r − p_π)).

    Equals ``theory.pg_first_order_dH``; provided under this name for the QAE identity
    ΔH_QAE(b) = ΔH_true + η·(b − p_π)·C(π)  (docs/theory.md §2.3).
    """
    from theory.dynamics import pg_first_order_dH

    return pg_first_order_dH(logits, rewards, lr)


def qae_identity_gap(logits, rewards, b, lr) -> np.ndarray:
    """The closed form of ΔH_QAE(b) − ΔH_true:  η·(b − p_π)·C(π), p_π = E_π r.

    Args:
        logits: (..., n); rewards: (..., n); b: scalar or (...); lr: η > 0.
    Returns:
        (...) the gap; zero exactly at b = p_π.
    """
    z = v.array(logits, "logits")
    r = v.like(rewards, "rewards", z)
    eta = v.scalar(lr, "lr", lo=0.0, lo_open=True)
    _, p, _, _, c = _c_and_parts(z)
    shape = np.broadcast_shapes(z.shape, r.shape)[:-1]
    bb = _b(b, shape)
    return eta * (bb - (p * r).sum(axis=-1)) * c


def sampled_first_order_dH(logits, rewards, actions, b, lr) -> np.ndarray:
    """Realised first-order ΔH of a G-sample REINFORCE step with a constant baseline b.

    Δz = (η/G)·Σ_i (r(y_i) − b)·(e_{y_i} − π)  ⇒  ΔH ≈ −(η/G)·Σ_i (r(y_i) − b)·g(y_i).
    E_y[ΔH] = ΔH_true for every b; two baselines order the draw as (b − b')·Σ_i g(y_i).
    Ref: docs/theory.md §2.3 [ours].

    Args:
        logits: (n,) one state's logits; rewards: (n,); actions: (..., G) sampled action indices;
        b: scalar baseline; lr: η > 0.
    Returns:
        (...) realised first-order ΔH of each draw.
    """
    z = v.array(logits, "logits")
    if z.ndim != 1:
        raise ValueError(f"logits: shape {z.shape}; allowed: one state, shape (n,)")
    r = v.like(rewards, "rewards", z)
    if r.ndim != 1:
        raise ValueError(f"rewards: shape {r.shape}; allowed: shape (n,) like logits")
    acts = np.asarray(actions)
    if acts.ndim < 1 or acts.shape[-1] == 0 or not np.issubdtype(acts.dtype, np.integer):
        raise ValueError(
            f"actions: shape {acts.shape} dtype {acts.dtype}; allowed: integer array (..., G), G >= 1"
        )
    if (acts < 0).any() or (acts >= z.shape[0]).any():
        raise ValueError(f"actions: values in [{acts.min()}, {acts.max()}]; allowed: [0, {z.shape[0] - 1}]")
    bb = v.scalar(b, "b")
    eta = v.scalar(lr, "lr", lo=0.0, lo_open=True)
    _, p, _, u, c = _c_and_parts(z)
    g = p * u - c
    return -(eta / acts.shape[-1]) * ((r[acts] - bb) * g[acts]).sum(axis=-1)


def _compositions(n: int, g: int) -> np.ndarray:
    """All count vectors (c_1..c_n) with Σc = g, as an (M, n) int array (stars and bars)."""
    rows = []
    for bars in itertools.combinations(range(g + n - 1), n - 1):
        prev = -1
        counts = []
        for bar in bars:
            counts.append(bar - prev - 1)
            prev = bar
        counts.append(g + n - 1 - prev - 1)
        rows.append(counts)
    return np.asarray(rows, dtype=np.int64).reshape(-1, n)


def n_compositions(n: int, g: int) -> int:
    """Number of multisets of size G over n actions: C(n + G − 1, G)."""
    return math.comb(n + g - 1, g)


def sum_g_distribution(logits, group_size: int, *, max_outcomes: int = 200_000):
    """Exact law of S = Σ_{i=1..G} g(y_i), y_i iid ~ π, by enumerating count vectors (multinomial).

    Args:
        logits: (n,); group_size: G ≥ 1; max_outcomes: refuse above this many count vectors.
    Returns:
        (counts (M, n), prob (M,), s (M,)) — each outcome's counts, multinomial probability and S.
    """
    z = v.array(logits, "logits")
    if z.ndim != 1:
        raise ValueError(f"logits: shape {z.shape}; allowed: one state, shape (n,)")
    g_size = v.integer(group_size, "group_size", lo=1)
    n = z.shape[0]
    m = n_compositions(n, g_size)
    if m > max_outcomes:
        raise ValueError(
            f"group_size: {g_size} with {n} actions gives {m} outcomes; allowed: at most "
            f"max_outcomes={max_outcomes} (use prob_sum_g_nonneg(..., method='mc'))"
        )
    logp, p, _, u, c = _c_and_parts(z)
    g = p * u - c
    counts = _compositions(n, g_size)
    log_coef = gammaln(g_size + 1) - gammaln(counts + 1).sum(axis=1)
    with np.errstate(invalid="ignore"):
        log_prob = log_coef + np.where(counts > 0, counts * logp, 0.0).sum(axis=1)
    return counts, np.exp(log_prob), counts @ g


def prob_sum_g_nonneg(
    logits,
    group_size: int,
    *,
    method: str = "auto",
    n_mc: int = 200_000,
    seed: int = 0,
    max_outcomes: int = 200_000,
) -> float:
    """P(Σ_{i=1..G} g(y_i) ≥ 0), y_i iid ~ π: the probability that a sampled draw orders two constant
    baselines the way Prop. 4.2 says (ΔH(b) ≥ ΔH(b') for b > b').

    Exact by enumeration when the number of count vectors is at most ``max_outcomes``, Monte-Carlo
    otherwise (``method`` = "auto", "exact" or "mc"). Ties S = 0 within 1e-15 count as ≥ 0.
    Ref: docs/theory.md §2.3 [ours].

    Args:
        logits: (n,); group_size: G ≥ 1.
    Returns:
        the probability, in [0, 1].
    """
    z = v.array(logits, "logits")
    if method not in ("auto", "exact", "mc"):
        raise ValueError(f"method: got {method!r}; allowed: 'auto', 'exact', 'mc'")
    g_size = v.integer(group_size, "group_size", lo=1)
    if z.ndim != 1:
        raise ValueError(f"logits: shape {z.shape}; allowed: one state, shape (n,)")
    use_exact = method == "exact" or (method == "auto" and n_compositions(z.shape[0], g_size) <= max_outcomes)
    if use_exact:
        _, prob, s = sum_g_distribution(z, g_size, max_outcomes=max_outcomes)
        return float(prob[s >= -1e-15].sum())
    n_draws = v.integer(n_mc, "n_mc", lo=1)
    rng = np.random.default_rng(seed)
    _, p, _, u, c = _c_and_parts(z)
    g = p * u - c
    acts = rng.choice(z.shape[0], size=(n_draws, g_size), p=p / p.sum())
    return float((g[acts].sum(axis=1) >= -1e-15).mean())
