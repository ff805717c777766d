"""Advantage transforms: sequence rewards (B,) + group ids (B,) → per-token advantages (B, T).

All estimators here are outcome-based: one scalar per sequence, broadcast over its valid tokens.
Groups are given by ``batch.group`` (prompt ids); ``None`` means the whole batch is one group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import order_index
from controllers.base import Controller, check_choice, check_real, register
from controllers.batch import TokenBatch


def _rewards(batch: TokenBatch, owner: str) -> Tensor:
    if batch.reward is None:
        raise ValueError(
            f"reward: None; allowed: a (B,) tensor of sequence rewards (the {owner!r} controller needs it)"
        )
    return batch.reward.to(batch.logp.dtype)


def _group_index(batch: TokenBatch) -> tuple[Tensor, int]:
    """Dense group index 0..P-1 per sequence, and P."""
    if batch.group is None:
        return torch.zeros(batch.logp.shape[0], dtype=torch.long, device=batch.logp.device), 1
    _, inverse = torch.unique(batch.group, return_inverse=True)
    return inverse, int(inverse.max().item()) + 1 if inverse.numel() else 0


def group_stats(values: Tensor, index: Tensor, n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sequence group count, mean and unbiased std (N−1; 0 for groups of one)."""
    ones = torch.ones_like(values)
    count = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, index, ones)
    total = torch.zeros_like(count).index_add_(0, index, values)
    mean = total / count.clamp_min(1.0)
    dev2 = torch.zeros_like(count).index_add_(0, index, (values - mean[index]) ** 2)
    var = dev2 / (count - 1.0).clamp_min(1.0)
    std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
    return count[index], mean[index], std[index]


def _broadcast(seq_adv: Tensor, batch: TokenBatch) -> Tensor:
    return seq_adv[:, None].to(batch.logp.dtype) * batch.mask


def _singletons(count: Tensor, owner: str, policy: str) -> Tensor:
    single = count < 2
    if policy == "error" and bool(single.any()):
        raise ValueError(
            f"group: {int(single.sum())} sequence(s) are alone in their group; allowed: groups of at least 2 "
            f"for {owner!r} (or singleton='zero'/'verl')"
        )
    return single


@register
@dataclass(frozen=True)
class GRPO(Controller):
    """GRPO outcome advantage: A_i = (r_i − mean_g r) / (std_g r + ε), broadcast over the response.

    scale: "group" (std of the group, unbiased N−1, as verl/TRL), "batch" (std over the whole batch,
    TRL ``scale_rewards="batch"``), "none" (Dr. GRPO). Groups of one: ``singleton`` = "zero" (A = 0,
    default: a lone sample has no baseline to compare with), "verl" (mean 0, std 1, so A = r), "error".
    Ref: Shao et al. 2024 (DeepSeekMath) Eq. 3; verl ``compute_grpo_outcome_advantage``; TRL ``scale_rewards``.
    """

    name = "grpo"
    kind = "advantage"
    scale: str = "group"
    eps: float = 1e-6
    singleton: str = "zero"

    def __post_init__(self):
        check_choice(self.name, "scale", self.scale, ("group", "batch", "none"))
        check_real(self.name, "eps", self.eps, lo=0.0)
        check_choice(self.name, "singleton", self.singleton, ("zero", "verl", "error"))

    def advantages(self, batch, state):
        r = _rewards(batch, self.name)
        idx, n = _group_index(batch)
        count, mean, std = group_stats(r, idx, n)
        single = _singletons(count, self.name, self.singleton)
        if self.scale == "group":
            denom = std + self.eps
        elif self.scale == "batch":
            denom = (r.std() if r.numel() > 1 else torch.zeros((), dtype=r.dtype)) + self.eps
        else:
            denom = torch.ones_like(r)
        adv = (r - mean) / denom
        if self.singleton == "verl":
            adv = torch.where(single, r, adv)
        else:
            adv = torch.where(single, torch.zeros_like(adv), adv)
        return _broadcast(adv, batch)


@register
@dataclass(frozen=True)
class DrGRPO(GRPO):
    """Dr. GRPO advantage: A_i = r_i − mean_g r (no std). Pair it with agg="seq-mean-token-sum-norm".

    Ref: Liu et al. 2025 (arXiv 2503.20783); verl ``norm_adv_by_std_in_grpo=False``.
    """

    name = "dr_grpo"
    scale: str = "none"


@register
@dataclass(frozen=True)
class RLOO(Controller):
    """RLOO: A_i = r_i − mean_{j≠i} r_j = G/(G−1)·(r_i − mean_g r). Needs groups of at least 2.

    Ref: Ahmadian et al. 2024 (arXiv 2402.14740); verl ``compute_rloo_outcome_advantage``.
    """

    name = "rloo"
    kind = "advantage"

    def advantages(self, batch, state):
        r = _rewards(batch, self.name)
        idx, n = _group_index(batch)
        count, mean, _ = group_stats(r, idx, n)
        _singletons(count, self.name, "error")
        return _broadcast(count / (count - 1.0) * (r - mean), batch)


@register
@dataclass(frozen=True)
class OPO(Controller):
    """OPO optimal baseline: b* = Σ_i l_i r_i / Σ_i l_i over the group (l = response length), A = r − b*.

    Exact only on-policy (one update per rollout); like verl we do not enforce that.
    Ref: Hao et al. 2025 (arXiv 2505.23585); verl ``compute_opo_outcome_advantage``.
    """

    name = "opo"
    kind = "advantage"

    def advantages(self, batch, state):
        r = _rewards(batch, self.name)
        idx, n = _group_index(batch)
        length = batch.seq_len.to(r.dtype)
        num = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, idx, length * r)
        den = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, idx, length)
        b = num / den.clamp_min(1e-12)
        return _broadcast(r - b[idx], batch)


def group_quantile(values: Tensor, index: Tensor, n_groups: int, k: float) -> Tensor:
    """Right-continuous K-quantile per group, inf{x : F_g(x) ≥ K}, by sorting (no torch.quantile).

    Index rule: ``controllers.agg.order_index`` (matches ``theory.quantile_baseline``).
    Returns the per-sequence baseline.
    """
    out = torch.empty(n_groups, dtype=values.dtype, device=values.device)
    for g in range(n_groups):
        vals, _ = torch.sort(values[index == g])
        out[g] = vals[order_index(k, vals.numel())]
    return out[index]


@register
@dataclass(frozen=True)
class QAE(Controller):
    """QAE: A_i = (r_i − b_K) / (std_g r + ε), b_K = inf{x : F_g(x) ≥ K} (right-continuous quantile).

    Binary rewards: b_K = 0 on hard prompts (p ≤ 1 − K; only correct answers move, = PSR) and 1 on
    easy ones (only wrong answers move, = NSR). Deviation from the QAE code, stated: the code calls
    ``torch.quantile`` (linear interpolation), which differs for G ∈ {4, 8}; we follow the paper.
    Ref: Wu et al. 2025 (arXiv 2509.22611) §4.1 Eqs. 3-4; THEORY.md §2.1.
    """

    name = "qae"
    kind = "advantage"
    k: float = 0.4
    scale: str = "group"
    eps: float = 1e-6

    def __post_init__(self):
        check_real(self.name, "k", self.k, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_choice(self.name, "scale", self.scale, ("group", "none"))
        check_real(self.name, "eps", self.eps, lo=0.0)

    def advantages(self, batch, state):
        r = _rewards(batch, self.name)
        idx, n = _group_index(batch)
        _, _, std = group_stats(r, idx, n)
        b = group_quantile(r, idx, n, self.k)
        denom = std + self.eps if self.scale == "group" else torch.ones_like(r)
        return _broadcast((r - b) / denom, batch)


class _OutcomeSign(Controller):
    """Shared body of PSR / NSR / W-REINFORCE: a fixed function of the reward, no baseline."""

    kind = "advantage"

    def _seq(self, r: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def advantages(self, batch, state):
        return _broadcast(self._seq(_rewards(batch, self.name)), batch)


@register
@dataclass(frozen=True)
class WReinforce(_OutcomeSign):
    """W-REINFORCE: A = λ·r − (1 − r); binary rewards give λ for correct and −1 for wrong answers.

    No baseline, no normalisation. λ = 1 is REINFORCE with r' = 2r − 1; PSR and NSR are its halves.
    Ref: Zhu et al. 2025 (arXiv 2506.01347), λ = 0.1; RLVR-Decomposed ``compute_psr_nsr_outcome_advantage``.
    """

    name = "w_reinforce"
    lam: float = 0.1

    def __post_init__(self):
        check_real(self.name, "lam", self.lam, lo=0.0)

    def _seq(self, r: Tensor) -> Tensor:
        return self.lam * r - (1.0 - r)


@register
@dataclass(frozen=True)
class PSR(_OutcomeSign):
    """PSR, positive-sample reinforcement: A = r (only correct samples move). Ref: Zhu et al. 2025."""

    name = "psr"

    def _seq(self, r: Tensor) -> Tensor:
        return r


@register
@dataclass(frozen=True)
class NSR(_OutcomeSign):
    """NSR, negative-sample reinforcement: A = r − 1 (only wrong samples move). Ref: Zhu et al. 2025."""

    name = "nsr"

    def _seq(self, r: Tensor) -> Tensor:
        return r - 1.0
