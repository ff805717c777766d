"""Signals from outside the sampled group's rewards: step credit inside negative samples (BCPG-NSA) and
off-policy guidance with policy shaping (LUFFY)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from controllers.base import Controller, Terms, check_real, register
from controllers.groups import group_index, group_stats
from controllers.surrogates import clipped_loss


@register
@dataclass(frozen=True)
class StepCredit(Controller):
    """Step credit inside negative samples: tokens of a negative-advantage response whose reasoning step
    is judged correct (``batch.step_correct`` = 1) get A_t ← credit·|A_t| instead of the uniform penalty.

    credit = 1 mirrors the penalty into a reward of the same size; credit = 0 only removes the penalty
    from correct steps. Positive-advantage responses are unchanged. Where the signal comes from: the
    simulator's TokenTree judges a step exactly (the prefix can still reach a best-reward leaf); the LLM
    trainer's ``step_signal`` option (the answer-prefix rule or a user callback). The paper's
    segmentation (LLM + PRM consensus judges) and its exact advantage constant were not read here; this
    is the rule the seeds describe ("避免过度惩罚负样本中的'正确 step'"). Placed after the advantage
    estimator in the pipeline. Metrics: frac_credited (share of negative-advantage tokens credited).
    Ref: Yang et al. 2025, "Unearthing Gems from Stones" (BCPG-NSA, arXiv 2505.14403); seeds 000, 002.
    """

    name = "step_credit"
    kind = "advantage"
    needs_fields = frozenset({"step_correct"})
    stage_name = "sampling"
    separable_runs = True
    credit: float = 1.0

    def __post_init__(self):
        check_real(self.name, "credit", self.credit, lo=0.0)

    def _ok(self, batch):
        if batch.step_correct is None:
            raise ValueError(
                f"step_correct: None; allowed: a (B, T) 0/1 tensor of step-correctness judgements ({self.name!r} needs it)"
            )
        return batch.step_correct.bool() & (batch.adv < 0) & batch.mask.bool()

    def advantages(self, batch, state):
        return torch.where(self._ok(batch), self.credit * batch.adv.abs(), batch.adv)

    def terms(self, batch, state, generator=None):
        if batch.step_correct is None or batch.reward is None:
            return Terms()
        # terms see the transformed advantages; the negative responses are those below their group mean
        idx, n = group_index(batch)
        _, mean, _ = group_stats(batch.reward.to(batch.logp.dtype), idx, n)
        neg = (batch.reward < mean)[:, None] & batch.mask.bool()
        credited = neg & batch.step_correct.bool()
        return Terms(metrics={"frac_credited": float(credited.sum()) / max(int(neg.sum()), 1)})


@register
@dataclass(frozen=True)
class Luffy(Controller):
    """LUFFY: mixed-policy GRPO with off-policy guidance and policy shaping.

    Groups mix on-policy responses with demonstrations from a guide policy (``batch.guide`` True); the
    group advantage is computed over the mixed group by the estimator before (e.g. ``grpo``). Per-token
    surrogate:
        on-policy rows:  PPO clip, max(−A·r, −A·clip(r, 1 − ε_lo, 1 + ε_hi)) (``clip=False``: −A·r);
        guide rows:      −A·f(π_θ(y_t)), f(p) = p/(p + γ)  (regularised importance sampling, with the
                         guide's probability taken as 1, as the paper does; no clipping).
    f's gradient γ·p/(p + γ)²·∇log p boosts low-probability guide tokens that plain importance sampling
    (∇p) would ignore. γ = 0.1 is the paper's default (code: off_policy_reshape "p_div_p_0.1"). Supplies
    the surrogate, so it replaces ``ppo_clip`` in a pipeline. Metrics: frac_guide_rows, guide_prob_mean.
    Ref: Yan et al. 2025, "Learning to Reason under Off-Policy Guidance" (arXiv 2504.14945);
    ElliottYan/LUFFY ``mix_core_alg.py::compute_token_on_off_policy_loss``.
    """

    name = "luffy"
    surrogate_supplier = True
    kind = "surrogate"
    separable_runs = True
    gamma: float = 0.1
    eps_lo: float = 0.2
    eps_hi: float = 0.2
    clip: bool = True

    def __post_init__(self):
        check_real(self.name, "gamma", self.gamma, lo=0.0, lo_open=True)
        check_real(self.name, "eps_lo", self.eps_lo, lo=0.0, hi=1.0)
        check_real(self.name, "eps_hi", self.eps_hi, lo=0.0)
        if not isinstance(self.clip, bool):
            raise ValueError(f"{self.name}.clip: got {self.clip!r}; allowed: True or False")

    def terms(self, batch, state, generator=None):
        if self.clip:
            on = clipped_loss(batch, self.eps_lo, self.eps_hi)
        else:
            on = -batch.adv * torch.exp(batch.logp - batch.old_logp)
        if batch.guide is None:
            return Terms(surrogate=on, metrics={"frac_guide_rows": 0.0})
        guide = batch.guide.bool()
        p = torch.exp(batch.logp)
        off = -batch.adv * p / (p + self.gamma)
        surrogate = torch.where(guide[:, None], off, on)
        gm = guide[:, None] & batch.mask.bool()
        n_guide = int(gm.sum())
        return Terms(
            surrogate=surrogate,
            metrics={
                "frac_guide_rows": float(guide.float().mean()) if guide.numel() else 0.0,
                "guide_prob_mean": float(p.detach()[gm].mean()) if n_guide else 0.0,
            },
        )
