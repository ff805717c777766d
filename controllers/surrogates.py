"""Per-token surrogates and extra loss terms: PPO clip (clip-higher, dual clip) and the entropy bonus."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import AGG_MODES, agg_loss
from controllers.base import Controller, Terms, check_choice, check_real, register


def ppo_clipped(batch, eps_lo: float, eps_hi: float) -> Tensor:
    """Bool (B, T): valid tokens whose PPO surrogate is clipped (zero gradient), i.e. −A·clip(r) > −A·r."""
    ratio = torch.exp(batch.logp.detach() - batch.old_logp.detach())
    adv = batch.adv.detach()
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_lo, 1.0 + eps_hi) > -adv * ratio
    return clipped & batch.mask.bool()


def clipped_loss(batch, eps_lo: float, eps_hi: float) -> Tensor:
    """(B, T) PPO clipped per-token loss max(−A·r, −A·clip(r, 1 − ε_lo, 1 + ε_hi)), r = π_θ/π_old."""
    ratio = torch.exp(batch.logp - batch.old_logp)
    return torch.maximum(-batch.adv * ratio, -batch.adv * torch.clamp(ratio, 1.0 - eps_lo, 1.0 + eps_hi))


@register
@dataclass(frozen=True)
class PPOClip(Controller):
    """PPO clipped surrogate with decoupled bounds (clip-higher) and optional dual clip.

    ℓ_t = max(−A·r_t, −A·clip(r_t, 1 − ε_lo, 1 + ε_hi)),  r_t = π_θ(y_t)/π_old(y_t);
    dual clip (A < 0 only): ℓ_t = min(ℓ_t, −A·c).
    Its gradient is −w·A·∇r_t with w = 0 on clipped tokens: the 0/1 weight view of docs/design.md.
    Defaults: ε_lo = ε_hi = 0.2 (PPO); DAPO's clip-higher uses eps_hi = 0.28. Dual clip is off by
    default (TRL has none; verl applies clip_ratio_c = 3 always).
    Ref: Schulman et al. 2017; Yu et al. 2025 (DAPO) clip-higher; verl ``compute_policy_loss_vanilla``.
    """

    name = "ppo_clip"
    surrogate_supplier = True
    kind = "weight"
    separable_runs = True
    eps_lo: float = 0.2
    eps_hi: float = 0.2
    dual_clip: float | None = None

    def __post_init__(self):
        check_real(self.name, "eps_lo", self.eps_lo, lo=0.0, hi=1.0)
        check_real(self.name, "eps_hi", self.eps_hi, lo=0.0)
        if self.dual_clip is not None:
            check_real(self.name, "dual_clip", self.dual_clip, lo=1.0, lo_open=True)

    def terms(self, batch, state, generator=None):
        adv = batch.adv
        loss = clipped_loss(batch, self.eps_lo, self.eps_hi)
        m = batch.mask.bool()
        n = m.sum().clamp_min(1).to(torch.float64)  # shares as 0-dim tensors: read back once by policy_loss
        clipped = ppo_clipped(batch, self.eps_lo, self.eps_hi)
        metrics = {
            "frac_clipped": clipped.sum().to(torch.float64) / n,
            "frac_clipped_hi": (clipped & (adv > 0)).sum().to(torch.float64) / n,
            "frac_clipped_lo": (clipped & (adv < 0)).sum().to(torch.float64) / n,
        }
        if self.dual_clip is not None:
            cap = -adv * self.dual_clip
            dual = (adv < 0) & (loss > cap)
            loss = torch.where(dual, cap, loss)
            metrics["frac_dual_clipped"] = (dual & m).sum().to(torch.float64) / n
        return Terms(surrogate=loss, metrics=metrics)


@register
@dataclass(frozen=True)
class EntropyBonus(Controller):
    """Entropy bonus: extra loss −c·agg(H_t), so gradient descent raises entropy. Needs ``batch.entropy``
    to carry the gradient (the sim and the trainer compute it from the logits with autograd).

    agg: how H is aggregated; default "token-mean" (TRL). verl aggregates with the policy loss's mode,
    which makes the bonus length-scaled under the seq-…-token-sum modes (docs/engines.md, "Entropy bonus").
    Default c = 1e-3: the middle of Cui et al.'s sweep (1e-4 … 1e-2; 1e-2 explodes, Fig. 9).
    Ref: Williams & Peng 1991; Cui et al. 2025 §4.1; verl ``entropy_coeff``; TRL ``entropy_coef``.
    """

    name = "entropy_bonus"
    kind = "extra"

    coef: float = 1e-3
    agg: str = "token-mean"

    def separable(self, equal_lengths=True):
        return (
            equal_lengths or self.agg != "token-mean"
        )  # a token mean over runs of unequal lengths mixes them

    def __post_init__(self):
        check_real(self.name, "coef", self.coef, lo=0.0)
        check_choice(self.name, "agg", self.agg, AGG_MODES)

    def terms(self, batch, state, generator=None):
        h = agg_loss(batch.entropy, batch.mask, self.agg)
        return Terms(extra=-self.coef * h, metrics={"coef": self.coef, "entropy": float(h.detach())})
