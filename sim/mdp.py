"""Finite-horizon MDPs from transition tables (gymnasium's toy-text envs), exact and batched over runs.

A policy is one logit row per MDP state (stationary, like the gymnasium agent), z (R, S, A). An episode
starts in one of P start states (the "prompts"), runs at most H steps and succeeds when it terminates
with the environment's largest terminal reward (FrozenLake: the goal, reward 1; CliffWalking: the goal;
Taxi: a legal drop-off, +20). Running out of steps or terminating otherwise (a hole) is a failure. The
verifier reward is the success indicator, so "success" means the same thing as on the trees.

Transitions are stored as K padded outcomes per (s, a): next state, probability, whether the episode
goes on, whether it succeeds. Exact quantities by dynamic programming over the H steps:
    d_t(s)        probability (summed over prompts) of being in s at step t with the episode running,
    Q_t(s, a)     success probability from (s, a) with H − t steps left, V_t = Σ_a π Q_t,
    the PG logit gradient of J = Σ_prompts P(success):  ∂J/∂z(s, a) = π(a|s) Σ_t d_t(s) A_t(s, a),
so with reach(s) = Σ_t d_t(s) and the visit-weighted advantage Ā(s, a) = Σ_t d_t(s) A_t(s, a) / reach(s)
the step is reach·π·Ā, the tree formula. Ā is also the tabular natural-PG direction (the Fisher
matrix of a stationary softmax policy is block-diagonal with weight reach(s) per state).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Transitions:
    """Padded outcome lists: (S, A, K) tensors."""

    next: Tensor  # long
    prob: Tensor
    cont: Tensor  # 1 where the episode goes on
    succ: Tensor  # 1 where it ends in success

    @property
    def n_states(self) -> int:
        return self.next.shape[0]


def _forward(tr: Transitions, pi: Tensor, start: Tensor, horizon: int) -> Tensor:
    """(H, R, S) occupancy of running episodes, summed over the prompts (start (P,) state indices)."""
    R, S, A = pi.shape
    K = tr.next.shape[-1]
    d = torch.zeros(R, S, dtype=pi.dtype, device=pi.device)
    d.index_add_(1, start, torch.ones(R, start.shape[0], dtype=pi.dtype, device=pi.device))
    flow = (tr.prob * tr.cont).reshape(1, S * A * K)
    idx = tr.next.reshape(-1)
    out = [d]
    for _ in range(horizon - 1):
        mass = (d[..., None] * pi).reshape(R, S * A, 1).expand(R, S * A, K).reshape(R, -1) * flow
        d = torch.zeros_like(d).index_add_(1, idx, mass)
        out.append(d)
    return torch.stack(out)


def _backward(tr: Transitions, pi: Tensor, horizon: int) -> list[Tensor]:
    """Q_t (R, S, A) for t = 0 … H−1 (success probability with H − t steps left)."""
    R = pi.shape[0]
    gain = (tr.prob * tr.succ).sum(-1)  # (S, A)
    v_next = torch.zeros(R, tr.n_states, dtype=pi.dtype, device=pi.device)
    qs: list[Tensor] = [None] * horizon  # type: ignore[list-item]
    for t in reversed(range(horizon)):
        cont_val = (tr.prob * tr.cont)[None] * v_next[:, tr.next]  # (R, S, A, K)
        qs[t] = gain[None] + cont_val.sum(-1)
        v_next = (pi * qs[t]).sum(-1)
    return qs


@dataclass
class MdpExact:
    pi: Tensor  # (R, S, A)
    reach: Tensor  # (R, S) expected visits per episode, summed over prompts
    q: Tensor  # (R, S, A) visit-weighted Q
    v: Tensor  # (R, S) visit-weighted V
    entropy: Tensor  # (R, S)
    success: Tensor  # (R, P)

    @property
    def adv(self) -> Tensor:
        return self.q - self.v[..., None]


def exact(tr: Transitions, z: Tensor, start: Tensor, horizon: int) -> MdpExact:
    logp = torch.log_softmax(z, -1)
    pi = logp.exp()
    occ = _forward(tr, pi, start, horizon)  # (H, R, S)
    qs = _backward(tr, pi, horizon)
    reach = occ.sum(0)
    qsum = sum(occ[t][..., None] * qs[t] for t in range(horizon))
    safe = torch.where(reach > 0, reach, torch.ones_like(reach))
    q = qsum / safe[..., None]
    v = (pi * q).sum(-1)
    success = (pi * qs[0]).sum(-1)[:, start]  # V_0 at each prompt's start state
    return MdpExact(pi, reach, q, v, -(pi * logp).sum(-1), success)


def sample(
    tr: Transitions, z: Tensor, start: Tensor, horizon: int, n: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """n episodes per prompt and run: states, actions, mask (R, P, n, H); success and final state (R, P, n).
    Steps after the episode ended are padding (mask 0, state and action 0)."""
    R, P = z.shape[0], start.shape[0]
    dev = z.device
    probs = torch.softmax(z.detach(), -1)
    cdf_a = torch.cumsum(probs, -1)
    cdf_k = torch.cumsum(tr.prob, -1)
    s = start[None, :, None].expand(R, P, n).clone()
    alive = torch.ones(R, P, n, dtype=torch.bool, device=dev)
    success = torch.zeros(R, P, n, dtype=z.dtype, device=dev)
    run = torch.arange(R, device=dev)[:, None, None]
    states, actions, masks = [], [], []

    def uniform(shape):
        u = torch.rand(shape, generator=generator, dtype=z.dtype)
        return u.to(dev)

    for _ in range(horizon):
        a = torch.searchsorted(cdf_a[run, s], uniform((R, P, n))[..., None]).squeeze(-1)
        a = a.clamp_max(probs.shape[-1] - 1)
        k = torch.searchsorted(cdf_k[s, a], uniform((R, P, n))[..., None]).squeeze(-1)
        k = k.clamp_max(tr.prob.shape[-1] - 1)
        states.append(torch.where(alive, s, 0))
        actions.append(torch.where(alive, a, 0))
        masks.append(alive.clone())
        success = torch.where(alive & (tr.succ[s, a, k] > 0), 1.0, success)
        alive = alive & (tr.cont[s, a, k] > 0)
        s = torch.where(alive, tr.next[s, a, k], s)
    return {
        "states": torch.stack(states, -1),
        "tokens": torch.stack(actions, -1),
        "mask": torch.stack(masks, -1).to(z.dtype),
        "success": success,
        "final": s,
    }
