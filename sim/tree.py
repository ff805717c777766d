"""Exact quantities of a tabular softmax policy on an enumerable tree, batched over runs (torch).

A tree environment has P prompts (roots), vocabulary V (actions per state) and horizon T. Every prefix
is a state (an LLM's state is its whole prefix), so level t holds P·V^t states and the policy is a
logit tensor z of shape (R, S, V), S = P·(V^T − 1)/(V − 1), R independent runs. A bandit is the T = 1
tree: one state per prompt, V arms. Leaves (P, V^T) carry the verifier reward.

Layout: states are stored level by level; level t is a block of P·V^t rows in (prompt, prefix) order,
and the child of prefix index i by token a is prefix index i·V + a on the next level.

Exact, by dynamic programming over levels (no sampling, no Python loop over runs, prompts or arms):
    reach d(s) (probability of visiting s), leaf probabilities, Q(s, a) and V(s) for the sum of leaf
    rewards, the PG logit gradient ∂J/∂z(s, a) = d(s)·π(a|s)·(Q(s, a) − V(s)) of J = Σ_prompts E[r],
    the natural-PG step Q − V (Kakade 2001; Agarwal et al. 2021, tabular softmax), per-state entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TreeShape:
    """P prompts, V tokens per state, horizon T."""

    n_prompts: int
    vocab: int
    horizon: int

    @property
    def n_states(self) -> int:
        return self.n_prompts * sum(self.vocab**t for t in range(self.horizon))

    @property
    def n_leaves(self) -> int:
        return self.vocab**self.horizon

    def level_slice(self, t: int) -> slice:
        start = self.n_prompts * sum(self.vocab**u for u in range(t))
        return slice(start, start + self.n_prompts * self.vocab**t)

    def levels(self, x: Tensor) -> list[Tensor]:
        """Split a (R, S, ...) tensor into per-level views (R, P, V^t, ...)."""
        out = []
        for t in range(self.horizon):
            blk = x[:, self.level_slice(t)]
            out.append(blk.reshape(x.shape[0], self.n_prompts, self.vocab**t, *x.shape[2:]))
        return out


def log_policy(z: Tensor) -> Tensor:
    return torch.log_softmax(z, dim=-1)


def entropy_of_log_probs(logp: Tensor) -> Tensor:
    """Entropy −Σ_a p_a log p_a over the last axis, from log-probabilities (nats; differentiable)."""
    return -(logp.exp() * logp).sum(-1)


def state_entropy(z: Tensor) -> Tensor:
    """(R, S) entropy of π(·|s), nats (differentiable)."""
    return entropy_of_log_probs(torch.log_softmax(z, dim=-1))


def first_order_dH(z: Tensor, dz: Tensor) -> Tensor:
    """Lemma 1, per state: −Cov_π(log π, Δz) = −Σ π (log π − Σπ log π)(Δz − Σπ Δz). Same as
    ``theory.first_order_dH`` (tested), in torch and batched."""
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    lc = logp - (p * logp).sum(-1, keepdim=True)
    dc = dz - (p * dz).sum(-1, keepdim=True)
    return -(p * lc * dc).sum(-1)


def cov_pi(z: Tensor, x: Tensor) -> Tensor:
    """Cov_π(log π, x) per state."""
    return -first_order_dH(z, x)


@dataclass
class Exact:
    """Exact quantities for one policy z (R, S, V) on a tree with leaf rewards (P, V^T)."""

    pi: Tensor  # (R, S, V)
    reach: Tensor  # (R, S) probability of visiting each state
    leaf_prob: Tensor  # (R, P, V^T)
    q: Tensor  # (R, S, V) expected reward after taking a in s
    v: Tensor  # (R, S)
    entropy: Tensor  # (R, S)
    success: Tensor  # (R, P) probability that a response is judged correct

    @property
    def adv(self) -> Tensor:
        return self.q - self.v[..., None]


def exact(shape: TreeShape, z: Tensor, rewards: Tensor) -> Exact:
    """Forward reach probabilities and backward values over the levels of the tree."""
    R, P, V, T = z.shape[0], shape.n_prompts, shape.vocab, shape.horizon
    pi = torch.softmax(z, dim=-1)
    pis = shape.levels(pi)  # (R, P, V^t, V)
    reach_lv = [torch.ones(R, P, 1, dtype=z.dtype, device=z.device)]
    for t in range(T - 1):
        reach_lv.append((reach_lv[t][..., None] * pis[t]).reshape(R, P, V ** (t + 1)))
    leaf = (reach_lv[T - 1][..., None] * pis[T - 1]).reshape(R, P, V**T)
    q_lv: list[Tensor] = [None] * T  # type: ignore[list-item]
    v_lv: list[Tensor] = [None] * T  # type: ignore[list-item]
    nxt = rewards.to(z.dtype).expand(R, P, V**T)
    for t in reversed(range(T)):
        q_lv[t] = nxt.reshape(R, P, V**t, V)
        v_lv[t] = (pis[t] * q_lv[t]).sum(-1)
        nxt = v_lv[t]
    cat = lambda xs: torch.cat([x.reshape(R, -1, *x.shape[3:]) for x in xs], dim=1)  # noqa: E731
    return Exact(
        pi=pi,
        reach=cat(reach_lv),
        leaf_prob=leaf,
        q=cat(q_lv),
        v=cat(v_lv),
        entropy=state_entropy(z),
        success=(leaf * rewards.to(z.dtype)).sum(-1),
    )


def pg_dz(ex: Exact) -> Tensor:
    """∂J/∂z with J = Σ_prompts E[r]: d(s)·π(a|s)·A(s, a). For a bandit: π·(r − E_π r) (Prop. 1)."""
    return ex.reach[..., None] * ex.pi * ex.adv


def npg_dz(ex: Exact) -> Tensor:
    """Natural-PG direction of the tabular softmax: A(s, a) = Q(s, a) − V(s) at every state."""
    return ex.adv


def pass_at_k(success: Tensor, ks: list[int]) -> dict[int, Tensor]:
    """Exact pass@k per run, averaged over prompts: mean_p [1 − (1 − p_p)^k]. success (R, P)."""
    fail = (1.0 - success).clamp(0.0, 1.0)
    return {k: (1.0 - fail**k).mean(-1) for k in ks}


CHUNK_BYTES = 2 * 1024 * 1024
"""per chunk of runs in row-wise passes on a CPU: a few times one L2 cache, so that a chunk's passes (the
logits, their log-softmax, a CDF or a gradient) stay in the caches (several times faster than whole-tensor
passes when the tensors are far larger than the cache). Chosen by timing the sampled step of ``python -m
bench sim`` at 0.25, 0.5, 1, 2 and 4 MiB on a 2-core AMD EPYC (1 MiB L2 per core, 32 MiB L3): 2 MiB was
fastest, 0.5 MiB 14% slower"""


def run_chunks(
    n_runs: int, bytes_per_run: int, device: torch.device | str, budget_bytes: int | None = None
) -> list[tuple[int, int]]:
    """[(start, stop)] chunks of runs of about ``budget_bytes`` each (default ``CHUNK_BYTES``) on a CPU; one
    chunk elsewhere (a GPU gains nothing from it)."""
    if torch.device(device).type != "cpu":
        return [(0, n_runs)]
    c = max(1, (CHUNK_BYTES if budget_bytes is None else budget_bytes) // max(bytes_per_run, 1))
    return [(i, min(i + c, n_runs)) for i in range(0, n_runs, c)]


def sample(
    shape: TreeShape, z: Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Sample n responses per prompt and run. Returns (states (R, P, n, T), tokens (R, P, n, T)),
    states as global row indices into z."""
    R, P, V, T = z.shape[0], shape.n_prompts, shape.vocab, shape.horizon
    zd = z.detach()
    prefix = torch.zeros(R, P, n, dtype=torch.long, device=z.device)
    prompt = torch.arange(P, device=z.device)[None, :, None].expand(R, P, n)
    run = torch.arange(R, device=z.device)[:, None, None]
    states, tokens = [], []
    for t in range(T):
        if generator is not None and generator.device != z.device:
            u = torch.rand((R, P, n), generator=generator, dtype=z.dtype).to(z.device)
        else:
            u = torch.rand((R, P, n), generator=generator, dtype=z.dtype, device=z.device)
        start = shape.level_slice(t).start
        s = start + prompt * V**t + prefix  # (R, P, n)
        a = torch.empty((R, P, n), dtype=torch.long, device=z.device)
        # runs in chunks whose CDF rows stay in cache (row-wise ops: the same draws as one whole pass)
        rows = P if t == 0 else P * n
        for i, j in run_chunks(R, rows * V * zd.element_size(), z.device):
            if t == 0:  # every sample of a prompt starts at its root: one CDF row per prompt
                cdf = torch.cumsum(torch.softmax(zd[i:j, start : start + P], -1), -1)  # (r, P, V)
                a[i:j] = torch.searchsorted(cdf, u[i:j])
            else:
                cdf = torch.cumsum(torch.softmax(zd[run[i:j], s[i:j]], -1), -1)  # (r, P, n, V)
                a[i:j] = torch.searchsorted(cdf, u[i:j, ..., None]).squeeze(-1)
        a = a.clamp_max(V - 1)
        states.append(s)
        tokens.append(a)
        prefix = prefix * V + a
    return torch.stack(states, -1), torch.stack(tokens, -1)


def leaf_index(shape: TreeShape, tokens: Tensor) -> Tensor:
    """(..., T) tokens → leaf index (prefix index at depth T)."""
    idx = torch.zeros(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
    for t in range(shape.horizon):
        idx = idx * shape.vocab + tokens[..., t]
    return idx
