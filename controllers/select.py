"""Global token selection: covariance statistic, exact top-k, counts from fractions.

Every function here sees the values of all ranks through ``controllers.dist`` (identity in one process),
so a selection means the same thing whatever the batch layout (docs/design.md; docs/engines.md, "Selections").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from controllers import dist


def count_frac(frac: float, n: int) -> int:
    """⌈frac·n⌉ capped at n, reading frac·n within 1e-9 of an integer as that integer.

    Unlike verl's ``max(int(frac·N), 1)`` there is no floor of one token, so a small batch never selects
    more than frac·N + 1 tokens (verl: at least 1, i.e. 20× the nominal rate at N = 256; docs/engines.md).
    """
    kn = frac * n
    nearest = round(kn)
    k = nearest if abs(kn - nearest) <= 1e-9 * max(1.0, kn) else math.ceil(kn)
    return max(0, min(int(k), n))


def global_count(mask: Tensor) -> tuple[int, int]:
    """(number of valid tokens over all ranks, number before this rank)."""
    local = mask.bool().sum().reshape(1).to(torch.float64)
    counts, rank = dist.current().cat(local)
    return int(counts.sum()), int(counts[:rank].sum()) if rank else 0  # rank 0 has none before it


def token_cov(batch, mask: Tensor | None = None) -> Tensor:
    """Cov(y_t) = (log π(y_t) − mean log π)·(A_t − mean A), means over the valid tokens of all ranks.

    Detached (selection only). Its expectation is Cov_π(log π, A), Theorem 2's form (docs/theory.md §1.5).
    Ref: Cui et al. 2025 Eq. 10; verl ``compute_policy_loss_clip_cov``.
    """
    m = batch.mask if mask is None else mask
    logp = batch.logp.detach()
    adv = batch.adv.detach()
    return (logp - dist.global_mean(logp, m)) * (adv - dist.global_mean(adv, m))


def global_topk_mask(values: Tensor, mask: Tensor, k: int, largest: bool = True) -> Tensor:
    """Bool (B, T): exactly the k valid tokens with the largest (smallest) values over all ranks.

    Ties are broken by global position (rank order, then row-major), so the selection is deterministic
    and identical however the batch is split across ranks.
    """
    vals, offset = dist.gather_valid(values, mask)
    n_local = int(mask.bool().sum())
    chosen = torch.zeros(n_local, dtype=torch.bool, device=values.device)
    if k > 0 and vals.numel() > 0:
        order = torch.sort(vals, descending=largest, stable=True).indices[:k]
        picked = torch.zeros(vals.numel(), dtype=torch.bool, device=values.device)
        picked.index_fill_(0, order, True)  # by integer index, the value a kernel argument: no sync
        chosen = picked[offset : offset + n_local]
    out = torch.zeros(mask.shape, dtype=torch.bool, device=values.device)
    out[mask.bool()] = chosen
    return out
