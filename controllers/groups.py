"""Group helpers shared by the controllers: sequence rewards, dense group indices, per-group statistics,
ranks, quantiles and semantic entropy, and the broadcast of a per-sequence value over a sequence's tokens.

Every controller that works on GRPO groups (``batch.group``: prompt ids; ``None`` is one group of the whole
batch) reads them through these functions, so a group means the same thing in every method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from controllers.agg import dense_groups, group_sizes, order_indices
from controllers.batch import TokenBatch


def rewards(batch: TokenBatch, owner: str) -> Tensor:
    if batch.reward is None:
        raise ValueError(
            f"reward: None; allowed: a (B,) tensor of sequence rewards (the {owner!r} controller needs it)"
        )
    return batch.reward.to(batch.logp.dtype)


def group_index(batch: TokenBatch) -> tuple[Tensor, int]:
    """Dense group index 0..P-1 per sequence, and P."""
    if batch.group is None:
        return torch.zeros(batch.logp.shape[0], dtype=torch.long, device=batch.logp.device), 1
    return dense_groups(batch.group)


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


def cluster_entropy(
    cluster: Tensor, group: Tensor, n_groups: int, weight: Tensor | None = None, dtype=torch.float64
) -> Tensor:
    """(P,) semantic entropy of each group, nats: −Σ_k p_k log p_k over the answer clusters k of the group,
    p_k = Σ_{i ∈ g, cluster i = k} w_i / Σ_{i ∈ g} w_i (w = 1: the shares of the sampled answers).

    The one implementation behind SEED-GRPO's SE(q) (sampled answers), the trainer's semantic-entropy
    curriculum (a pre-pass's answers) and the simulator's exact curriculum (every leaf, weighted by its
    probability). Computed as −Σ_i (w_i/W_g)·log p_{k(i)} over members, which equals the sum over clusters.

    Args: cluster (N,) integer cluster ids; group (N,) dense group index in [0, n_groups); weight (N,) ≥ 0
    or None. Returns (n_groups,) entropies ≥ 0 (0 for empty groups).
    """
    w = torch.ones(group.shape, dtype=dtype, device=group.device) if weight is None else weight.to(dtype)
    pairs, key = torch.unique(torch.stack([group, cluster.to(group.dtype)], 1), dim=0, return_inverse=True)
    mass = torch.zeros(pairs.shape[0], dtype=dtype, device=group.device)
    mass = mass.index_add_(0, key, w)
    total = torch.zeros(n_groups, dtype=dtype, device=group.device).index_add_(0, group, w)
    share = w / total[group].clamp_min(torch.finfo(dtype).tiny)
    p = mass[key] / total[group].clamp_min(torch.finfo(dtype).tiny)
    term = torch.where(w > 0, share * p.clamp_min(torch.finfo(dtype).tiny).log(), torch.zeros_like(w))
    return (-torch.zeros(n_groups, dtype=dtype, device=group.device).index_add_(0, group, term)).clamp_min(
        0.0
    ) + 0.0


def broadcast(seq_adv: Tensor, batch: TokenBatch) -> Tensor:
    return seq_adv[:, None].to(batch.logp.dtype) * batch.mask


def group_sort(values: Tensor, index: Tensor, n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort by (group, value), stable. Returns (perm, group start offsets (P,), group counts (P,))."""
    by_value = torch.sort(values, stable=True).indices
    perm = by_value[torch.sort(index[by_value], stable=True).indices]
    count = group_sizes(index, n_groups)
    start = torch.cumsum(count, 0) - count
    return perm, start, count


def group_rank(values: Tensor, index: Tensor, n_groups: int) -> Tensor:
    """0-based rank of each value within its group (0 = smallest; ties by position)."""
    perm, start, _ = group_sort(values, index, n_groups)
    rank = torch.empty_like(index)
    rank[perm] = torch.arange(index.numel(), device=index.device) - start[index[perm]]
    return rank


def group_quantile(values: Tensor, index: Tensor, n_groups: int, k: float) -> Tensor:
    """Right-continuous K-quantile per group, inf{x : F_g(x) ≥ K}, by sorting (no torch.quantile).

    Index rule: ``controllers.agg.order_indices`` (matches ``theory.quantile_baseline``).
    Returns the per-sequence baseline.
    """
    perm, start, count = group_sort(values, index, n_groups)
    j = order_indices(k, count.clamp_min(1))
    return values[perm][start + j][index]


def seq_mean(x: Tensor, batch: TokenBatch) -> Tensor:
    """(B,) mean of x over each sequence's valid tokens (0 for empty rows)."""
    m = batch.mask
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1.0)
