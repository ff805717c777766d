"""NFT, negative-aware fine-tuning: supervised learning on positives and on an implicit negative policy.

The paper's loss (Chen et al. 2025, arXiv 2505.18116, Eq. 9; seed 001), per token t of response a to
prompt q with binary reward r:

    ℓ_t = −ω(q) · [ r·log R_t + (1 − r)·log maxv((1 − r̂_q·R_t)/(1 − r̂_q), ε) ],
    R_t = π_θ(a_t | q, a_<t) / π_old(a_t | q, a_<t),   r̂_q = mean reward of q's group,

with maxv(x, ε) equal to max(x, ε) in value and passing x's gradient (the released code's
``clamp_preserve_grad``). With ω(q) = √((1 − r̂)/r̂), the gradient at R = 1 (on-policy) is
−Σ [r·A⁺ + (1 − r)·A⁻]·∇R, where A⁺ = √((1 − r̂)/r̂) and A⁻ = −√(r̂/(1 − r̂)). That is GRPO's gradient
for binary rewards with the *population* standard deviation, √(r̂(1 − r̂)). Our ``grpo`` divides by the
N − 1 deviation, so there the two differ by a factor √(K/(K − 1)). Tested in tests/controllers/test_nft.py.

Deviations and options, paper first:
- ``weight="paper"`` (default): ω = √((1 − r̂)/r̂), the weight of the GRPO identity.
  ``weight="code"``: ω = 1 − r̂, the released script's ``normalize=1``. ``weight="none"``: ω = 1.
- Groups with r̂ ∈ {0, 1} carry no signal, as in GRPO, and get ω = 0. The code instead clips r̂ to
  [0.02, 0.98]; ``rate_clip=0.02`` reproduces that.
- ε = 1.0 by default, the script's ``clamp_negative``; the seed leaves it unstated. ``neg_weight``
  scales the negative term (script: 1.0; 0 gives RFT). Like the script, the log-ratio is capped at 10
  before exponentiating.
- Aggregation is the pipeline's ``agg``. The script sums over tokens and divides by 1000.
Ref: Chen et al. 2025 (NFT) §3-4; NVlabs/NFT ``dp_actor.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import dense_groups
from controllers.base import Controller, Terms, check_choice, check_real, register
from controllers.groups import group_index, group_stats, rewards


def maxv(x: Tensor, floor: float) -> Tensor:
    """max(x, floor) in value, with the gradient of x (NFT's ``clamp_preserve_grad``)."""
    return x + (torch.clamp(x, min=floor) - x).detach()


@register
@dataclass(frozen=True)
class NFT(Controller):
    name = "nft"
    surrogate_supplier = True
    signal_source = True
    kind = "surrogate"  # supplies the PG surrogate (as ppo_clip does), not a per-token weight
    needs_fields = frozenset({"reward"})
    groups = True
    eps: float = 1.0
    weight: str = "paper"
    rate_clip: float = 0.0
    neg_weight: float = 1.0

    def __post_init__(self):
        check_real(self.name, "eps", self.eps, lo=0.0, lo_open=True)
        check_choice(self.name, "weight", self.weight, ("paper", "code", "none"))
        check_real(self.name, "rate_clip", self.rate_clip, lo=0.0, hi=0.5, hi_open=True)
        check_real(self.name, "neg_weight", self.neg_weight, lo=0.0)

    def terms(self, batch, state, generator=None):
        r = rewards(batch, self.name)
        bad = (r != 0) & (r != 1)
        if bool(bad.any()):
            raise ValueError(f"reward: contains {float(r[bad][0])}; allowed: binary rewards 0/1 for 'nft'")
        idx, n = group_index(batch)
        _, rhat, _ = group_stats(r, idx, n)  # (B,) the group's solve rate r̂
        informative = (rhat > 0) & (rhat < 1)
        if self.rate_clip > 0:
            rhat = rhat.clamp(self.rate_clip, 1.0 - self.rate_clip)
            informative = torch.ones_like(informative)
        safe = torch.where(informative, rhat, torch.full_like(rhat, 0.5))
        if self.weight == "paper":
            omega = torch.sqrt((1.0 - safe) / safe)
        elif self.weight == "code":
            omega = 1.0 - safe
        else:
            omega = torch.ones_like(safe)
        omega = torch.where(informative, omega, torch.zeros_like(omega))[:, None]  # (B, 1)
        log_ratio = (batch.logp - batch.old_logp.detach()).clamp(max=10.0)
        ratio = torch.exp(log_ratio)  # R_t, (B, T)
        s = safe[:, None]
        neg_arg = (1.0 - s * ratio) / (1.0 - s)
        pos = r[:, None] * log_ratio  # log R_t (R > 0, no floor needed)
        neg = (1.0 - r[:, None]) * self.neg_weight * torch.log(maxv(neg_arg, self.eps))
        loss = -omega * (pos + neg)
        m = batch.mask.bool()
        nvalid = max(int(m.sum()), 1)
        floored = (neg_arg < self.eps) & m & (r[:, None] == 0)
        return Terms(
            surrogate=loss,
            metrics={
                "frac_neg_floored": float(floored.sum()) / nvalid,
                "omega_mean": float(omega.squeeze(1)[informative].mean()) if bool(informative.any()) else 0.0,
                "frac_informative_groups": float(informative.float().mean()) if informative.numel() else 0.0,
            },
        )


def grpo_identity_advantage(reward: Tensor, group: Tensor) -> Tensor:
    """(B,) the advantages of the NFT ≡ GRPO identity: A⁺ = √((1 − r̂)/r̂) for r = 1, A⁻ = −√(r̂/(1 − r̂))
    for r = 0, i.e. (r − r̂)/√(r̂(1 − r̂)); 0 in groups with r̂ ∈ {0, 1}."""
    inverse, n = dense_groups(group)
    _, rhat, _ = group_stats(reward, inverse, n)
    ok = (rhat > 0) & (rhat < 1)
    safe = torch.where(ok, rhat, torch.full_like(rhat, 0.5))
    return torch.where(ok, (reward - safe) / torch.sqrt(safe * (1.0 - safe)), torch.zeros_like(reward))
