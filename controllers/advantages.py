"""Advantage transforms: sequence rewards (B,) + group ids (B,) → per-token advantages (B, T).

All estimators here are outcome-based: one scalar per sequence, broadcast over its valid tokens.
Groups are given by ``batch.group`` (prompt ids); ``None`` means the whole batch is one group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import group_sizes
from controllers.base import Controller, Terms, check_choice, check_real, register, stat
from controllers.batch import TokenBatch
from controllers.groups import (
    broadcast,
    cluster_entropy,
    group_index,
    group_quantile,
    group_rank,
    group_stats,
    rewards,
    seq_mean,
)


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
    signal_source = True
    needs_fields = frozenset({"reward"})
    groups = True
    stage_name = "sampling"

    scale: str = "group"
    eps: float = 1e-6
    singleton: str = "zero"

    def separable(self, equal_lengths=True):
        return self.scale != "batch"  # the batch std mixes runs

    def __post_init__(self):
        check_choice(self.name, "scale", self.scale, ("group", "batch", "none"))
        check_real(self.name, "eps", self.eps, lo=0.0)
        check_choice(self.name, "singleton", self.singleton, ("zero", "verl", "error"))

    def advantages(self, batch, state):
        r = rewards(batch, self.name)
        idx, n = group_index(batch)
        count, mean, std = group_stats(r, idx, n)
        single = _singletons(count, self.name, self.singleton)
        if self.scale == "group":
            denom = std + self.eps
        elif self.scale == "batch":
            denom = (r.std() if r.numel() > 1 else torch.zeros((), dtype=r.dtype)) + self.eps
        else:
            denom = torch.ones_like(r)
        # eps = 0 is allowed: an all-equal group then has r − mean = 0 and std = 0, and its advantage is
        # 0, not 0/0 (found by the NFT identity test)
        adv = torch.where(denom > 0, (r - mean) / torch.where(denom > 0, denom, torch.ones_like(denom)), 0.0)
        if self.singleton == "verl":
            adv = torch.where(single, r, adv)
        else:
            adv = torch.where(single, torch.zeros_like(adv), adv)
        return broadcast(adv, batch)


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
    signal_source = True
    needs_fields = frozenset({"reward"})
    groups = True
    stage_name = "sampling"
    separable_runs = True

    def advantages(self, batch, state):
        r = rewards(batch, self.name)
        idx, n = group_index(batch)
        count, mean, _ = group_stats(r, idx, n)
        _singletons(count, self.name, "error")
        return broadcast(count / (count - 1.0) * (r - mean), batch)


@register
@dataclass(frozen=True)
class OPO(Controller):
    """OPO optimal baseline: b* = Σ_i l_i r_i / Σ_i l_i over the group (l = response length), A = r − b*.

    Exact only on-policy (one update per rollout); like verl we do not enforce that.
    Ref: Hao et al. 2025 (arXiv 2505.23585); verl ``compute_opo_outcome_advantage``.
    """

    name = "opo"
    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward"})
    groups = True
    stage_name = "sampling"
    separable_runs = True

    def advantages(self, batch, state):
        r = rewards(batch, self.name)
        idx, n = group_index(batch)
        length = batch.seq_len.to(r.dtype)
        num = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, idx, length * r)
        den = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, idx, length)
        b = num / den.clamp_min(1e-12)
        return broadcast(r - b[idx], batch)


@register
@dataclass(frozen=True)
class QAE(Controller):
    """QAE: A_i = (r_i − b_K) / (std_g r + ε), b_K = inf{x : F_g(x) ≥ K} (right-continuous quantile).

    Binary rewards: b_K = 0 on hard prompts (p ≤ 1 − K; only correct answers move, = PSR) and 1 on
    easy ones (only wrong answers move, = NSR). Deviation from the QAE code, stated: the code calls
    ``torch.quantile`` (linear interpolation), which differs for G ∈ {4, 8}; we follow the paper.
    Ref: Wu et al. 2025 (arXiv 2509.22611) §4.1 Eqs. 3-4; docs/theory.md §2.1.
    """

    name = "qae"
    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward"})
    groups = True
    stage_name = "sampling"
    separable_runs = True
    k: float = 0.4
    scale: str = "group"
    eps: float = 1e-6

    def __post_init__(self):
        check_real(self.name, "k", self.k, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_choice(self.name, "scale", self.scale, ("group", "none"))
        check_real(self.name, "eps", self.eps, lo=0.0)

    def advantages(self, batch, state):
        r = rewards(batch, self.name)
        idx, n = group_index(batch)
        _, _, std = group_stats(r, idx, n)
        b = group_quantile(r, idx, n, self.k)
        denom = std + self.eps if self.scale == "group" else torch.ones_like(r)
        return broadcast((r - b) / denom, batch)


class _OutcomeSign(Controller):
    """Shared body of PSR / NSR / W-REINFORCE: a fixed function of the reward, no baseline."""

    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward"})
    stage_name = "sampling"
    separable_runs = True

    def _seq(self, r: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def advantages(self, batch, state):
        return broadcast(self._seq(rewards(batch, self.name)), batch)


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


@register
@dataclass(frozen=True)
class Unlikeliness(Controller):
    """Unlikeliness reward: r̃_i = r_i·(1 − β_rank·rank_i/G), then the GRPO advantage of r̃.

    rank_i ∈ {0..G−1} orders the group's responses by mean per-token log π_old (0 = least likely), so
    the most likely correct response is discounted most; r = 0 stays 0.
    Ref: He, Fried, Welleck 2025 (arXiv 2506.02355); ``ray_lean_trainer.py::_compute_advantages``,
    ``lean.rank_penalty = 0.25``. scale/eps/singleton as in ``grpo``.
    """

    name = "unlikeliness"
    reads_at_sampling = frozenset({"old_logp"})
    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward"})
    groups = True
    stage_name = "sampling"

    rank_penalty: float = 0.25
    scale: str = "group"
    eps: float = 1e-6
    singleton: str = "zero"

    def separable(self, equal_lengths=True):
        return self.scale != "batch"

    def __post_init__(self):
        check_real(self.name, "rank_penalty", self.rank_penalty, lo=0.0, hi=1.0)
        GRPO(scale=self.scale, eps=self.eps, singleton=self.singleton)  # validates the rest

    def shaped_rewards(self, batch: TokenBatch) -> Tensor:
        r = rewards(batch, self.name)
        idx, n = group_index(batch)
        likelihood = seq_mean(batch.old_logp.detach().to(r.dtype), batch)
        rank = group_rank(likelihood, idx, n).to(r.dtype)
        count, _, _ = group_stats(r, idx, n)
        return r * (1.0 - self.rank_penalty * rank / count)

    def advantages(self, batch, state):
        grpo = GRPO(scale=self.scale, eps=self.eps, singleton=self.singleton)
        return grpo.advantages(batch.replace(reward=self.shaped_rewards(batch)), state)


@register
@dataclass(frozen=True)
class EntropyAdv(Controller):
    """Entropy-shaped advantage: A_t ← A_t + ψ(H_t),  ψ = min(α·H_t (detached), |A_t|/κ).

    ψ ≥ 0 is added whatever the sign of A; κ > 1 keeps ψ < |A|, so a negative advantage stays negative.
    Defaults α = 0.4, κ = 2 (the verl forks that reproduce it; the paper's code was not found).
    Ref: Cheng et al. 2025, "Reasoning with Exploration: An Entropy Perspective" (arXiv 2506.14758).
    """

    name = "entropy_adv"
    kind = "advantage"
    separable_runs = True
    alpha: float = 0.4
    kappa: float = 2.0

    def __post_init__(self):
        check_real(self.name, "alpha", self.alpha, lo=0.0)
        check_real(self.name, "kappa", self.kappa, lo=1.0, lo_open=True)

    def advantages(self, batch, state):
        a = batch.adv
        psi = torch.minimum(self.alpha * batch.entropy.detach(), a.abs() / self.kappa)
        return a + psi


@register
@dataclass(frozen=True)
class SeedGRPO(Controller):
    """SEED-GRPO: scale the GRPO advantage by f(α·SE(q)/SE_max), SE the semantic entropy of the answers.

    SE(q) = −Σ_k p_k log p_k over the answer clusters of the group (p_k = share of the G responses whose
    ``batch.answer`` id is k); SE_max = log G. f: "linear" 1 − x, "exp" e^{−x}, "focal" (1 − x)^γ.
    High-uncertainty prompts get more conservative updates. α = 1 here: the paper's default was not
    confirmed (docs/theory.md §4); the focal form is our reading of the paper's description.
    Ref: Chen et al. 2025 (arXiv 2505.12346).
    """

    name = "seed_grpo"
    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward", "answer"})
    groups = True
    stage_name = "sampling"

    alpha: float = 1.0
    f: str = "linear"
    gamma: float = 2.0
    scale: str = "group"
    eps: float = 1e-6

    def separable(self, equal_lengths=True):
        return self.scale != "batch"

    def __post_init__(self):
        check_real(self.name, "alpha", self.alpha, lo=0.0, hi=1.0)
        check_choice(self.name, "f", self.f, ("linear", "exp", "focal"))
        check_real(self.name, "gamma", self.gamma, lo=0.0)
        GRPO(scale=self.scale, eps=self.eps)

    def semantic_entropy(self, batch: TokenBatch) -> tuple[Tensor, Tensor]:
        """(B,) SE(q) of each sequence's group and SE_max = log G, in nats (``cluster_entropy``)."""
        if batch.answer is None:
            raise ValueError(
                f"answer: None; allowed: a (B,) integer tensor of answer-cluster ids ({self.name!r} needs it)"
            )
        idx, n = group_index(batch)
        se = cluster_entropy(batch.answer, idx, n, dtype=batch.logp.dtype)
        group_n = group_sizes(idx, n).to(batch.logp.dtype)
        return se[idx], group_n[idx].log()

    def advantages(self, batch, state):
        adv = GRPO(scale=self.scale, eps=self.eps).advantages(batch, state)
        se, se_max = self.semantic_entropy(batch)
        x = self.alpha * torch.where(se_max > 0, se / se_max.clamp_min(1e-12), torch.zeros_like(se))
        if self.f == "linear":
            f = 1.0 - x
        elif self.f == "exp":
            f = torch.exp(-x)
        else:
            f = (1.0 - x).clamp_min(0.0) ** self.gamma
        return adv * f[:, None]

    def terms(self, batch, state, generator=None):
        if batch.answer is None:
            return Terms()
        se, _ = self.semantic_entropy(batch)
        return Terms(metrics={"semantic_entropy": float(se.mean()) if se.numel() else 0.0})


@register
@dataclass(frozen=True)
class PosAdvReweight(Controller):
    """Positive-advantage reweighting: A_t ← λ·A_t where A_t > 0; negative advantages keep weight 1.

    schedule: "constant" (λ = ``lam``); "staged" (λ = 0 for the first half of training, then linear to
    1: reads ``stats["train/progress_frac"]``); "entropy" (λ_{k+1} = clip(λ_k ∓ Δ, 0, 1): decrease by
    Δ = ``delta`` while the entropy is below ``threshold``, increase above). Scaling A on A > 0 tokens
    equals weighting their loss, with or without PPO clip (the clip test depends on sign(A) only).
    ``threshold`` = 0.3657 nats borrows the Ada-Ent-Reg δ from the same paper's baselines; the paper's
    own threshold for this schedule was not read (docs/theory.md §4).
    Ref: "Revisiting Entropy in RL for Large Reasoning Models" (arXiv 2511.05993).
    """

    name = "pos_adv_reweight"
    kind = "advantage"
    schedule: str = "constant"
    lam: float = 0.5
    delta: float = 0.05
    threshold: float = 0.3657

    def __post_init__(self):
        check_choice(self.name, "schedule", self.schedule, ("constant", "staged", "entropy"))
        check_real(self.name, "lam", self.lam, lo=0.0, hi=1.0)
        check_real(self.name, "delta", self.delta, lo=0.0, hi=1.0)
        check_real(self.name, "threshold", self.threshold, lo=0.0)

    def init(self):
        return {"lam": 0.0 if self.schedule == "staged" else float(self.lam)}

    def advantages(self, batch, state):
        a = batch.adv
        return torch.where(a > 0, state["lam"] * a, a)

    def terms(self, batch, state, generator=None):
        return Terms(metrics={"lam": state["lam"]})

    def stateful(self) -> bool:
        return self.schedule != "constant"

    def step(self, state, stats):
        if self.schedule == "constant":
            return state
        if self.schedule == "staged":
            p = stat(stats, "train/progress_frac", self.name)
            return {"lam": min(1.0, max(0.0, 2.0 * p - 1.0))}
        h = stat(stats, "policy/entropy", self.name)
        lam = state["lam"] - self.delta if h < self.threshold else state["lam"] + self.delta
        return {"lam": min(1.0, max(0.0, lam))}
