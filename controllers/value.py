"""Value-based advantages: VAPO's generalised advantage estimation with a length-adaptive λ."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.base import Controller, Terms, check_real, register
from controllers.groups import rewards


def gae(value: Tensor, reward: Tensor, mask: Tensor, lam: Tensor, gamma: float = 1.0) -> Tensor:
    """(B, T) GAE advantages of outcome-reward episodes: the reward arrives with the last valid token, the
    state after it is terminal (value 0). δ_t = r_t + γ·V(s_{t+1}) − V(s_t), A_t = δ_t + γ·λ·A_{t+1};
    ``lam`` is (B,) (one λ per sequence). Padding gets 0."""
    B, T = value.shape
    m = mask.to(value.dtype)
    last = (torch.arange(T, device=value.device)[None, :] == (m.sum(-1, keepdim=True) - 1)) & (m > 0)
    r = torch.where(last, reward[:, None].to(value.dtype), torch.zeros_like(value))
    v = value * m
    v_next = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], 1) * (~last).to(value.dtype)
    delta = (r + gamma * v_next - v) * m
    adv = torch.zeros_like(value)
    running = torch.zeros(B, dtype=value.dtype, device=value.device)
    lam = lam.to(value.dtype)
    for t in reversed(range(T)):
        running = delta[:, t] + gamma * lam * running * m[:, t]
        adv[:, t] = running
    return adv * m


@register
@dataclass(frozen=True)
class VAPO(Controller):
    """VAPO's value-based advantage: GAE over a critic's values with a length-adaptive λ.

    λ_policy = 1 − 1/(α·l) for a response of l tokens (clipped to [0, 1]), so long responses propagate the
    terminal reward further back; γ = 1. Needs ``batch.value`` (V(s_t) per token): the simulator keeps a
    tabular critic (``SimConfig.critic_lr``), initialised at the base policy's exact values (VAPO's value
    pre-training, done exactly) and regressed on the λ = 1 returns (VAPO's decoupled GAE: λ_critic = 1).
    The LLM trainer has no critic, so ``vapo`` is simulator-only. α = 0.05 is VAPO's. Replaces the group
    baseline (use it instead of ``grpo``). Metrics: lam_mean, value_mean.
    Ref: Yue et al. 2025, VAPO (arXiv 2504.05118) §3; seed 002.
    """

    name = "vapo"
    kind = "advantage"
    signal_source = True
    needs_fields = frozenset({"reward", "value"})
    stage_name = "sampling"
    separable_runs = True
    alpha: float = 0.05
    gamma: float = 1.0

    def __post_init__(self):
        check_real(self.name, "alpha", self.alpha, lo=0.0, lo_open=True)
        check_real(self.name, "gamma", self.gamma, lo=0.0, hi=1.0)

    def lam(self, batch) -> Tensor:
        return (1.0 - 1.0 / (self.alpha * batch.seq_len.clamp_min(1.0))).clamp(0.0, 1.0)

    def advantages(self, batch, state):
        if batch.value is None:
            raise ValueError(
                f"value: None; allowed: a (B, T) tensor of critic values ({self.name!r} needs it; the simulator provides one)"
            )
        return gae(batch.value.detach(), rewards(batch, self.name), batch.mask, self.lam(batch), self.gamma)

    def terms(self, batch, state, generator=None):
        if batch.value is None:
            return Terms()
        m = batch.mask
        n = max(float(m.sum()), 1.0)
        return Terms(
            metrics={
                "lam_mean": float(self.lam(batch).mean()) if m.shape[0] else 0.0,
                "value_mean": float((batch.value.detach() * m).sum()) / n,
            }
        )
