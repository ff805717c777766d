"""Batch- and reward-level controllers: DAPO's dynamic sampling, the accuracy-band filter and overlong
reward shaping."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import dense_groups, group_sizes
from controllers.base import Controller, Terms, check_int, check_real, register
from controllers.groups import group_index, group_stats, rewards


def mixed_groups(reward: Tensor, group: Tensor | None) -> Tensor:
    """(B,) bool: True for sequences whose group has at least two different rewards (DAPO keeps these).

    Groups of one are never mixed. ``group`` None means the whole batch is one group.
    """
    return _mixed(reward, group)[0]


def _mixed(reward: Tensor, group: Tensor | None) -> tuple[Tensor, Tensor, int]:
    """(``mixed_groups``, the dense group index it made, the number of groups)."""
    if group is None:
        group = torch.zeros_like(reward, dtype=torch.long)
    idx, n = dense_groups(group)
    lo = torch.full((n,), torch.inf, dtype=reward.dtype, device=reward.device).scatter_reduce(
        0, idx, reward, "amin"
    )
    hi = torch.full((n,), -torch.inf, dtype=reward.dtype, device=reward.device).scatter_reduce(
        0, idx, reward, "amax"
    )
    return (hi > lo)[idx], idx, n


@register
@dataclass(frozen=True)
class DynamicSampling(Controller):
    """DAPO dynamic sampling: drop the groups whose rewards are all equal (all right or all wrong).

    They carry zero GRPO advantage, but still count in the loss normaliser and in every other term.
    Here they leave the loss and its normaliser (``Terms.mask``; later controllers in the pipeline see
    the reduced mask). Refilling the batch by oversampling is the trainer's job; ``mixed_groups`` tells
    it which prompts to keep. Metrics: n_groups_dropped, frac_groups_dropped.
    Ref: Yu et al. 2025 (DAPO, arXiv 2503.14476); verl ``algorithm.filter_groups``.
    """

    name = "dynamic_sampling"
    kind = "batch"
    needs_fields = frozenset({"reward"})
    groups = True

    def terms(self, batch, state, generator=None):
        keep, idx, n_groups = _mixed(rewards(batch, self.name), batch.group)
        # groups with a dropped member (whole groups are dropped); 0-dim tensors, read back with the rest
        n_dropped = (group_sizes(idx, n_groups, ~keep) > 0).sum()
        return Terms(
            mask=keep.to(batch.mask.dtype)[:, None].expand_as(batch.mask),
            metrics={
                "n_groups_dropped": n_dropped,
                "frac_groups_dropped": n_dropped.to(torch.float64) / max(n_groups, 1),
            },
        )


@register
@dataclass(frozen=True)
class AccFilter(Controller):
    """Accuracy-band prompt filter, online: keep the groups whose solve rate r̂ (mean reward) lies in
    [lo, hi], so that the data keeps its negatives; the others leave the loss and its normaliser
    (``Terms.mask``, like dynamic sampling). Default band [0.1, 0.5]: the seed's example ("keep only the
    data with acc in [0.1, 0.5]"). lo = 0 < hi = 1 with ``open_ends`` drops exactly the all-equal
    groups (dynamic sampling). The offline variant is a data option, not a loss term: ``offline_band``
    in the LLM trainer (a pre-pass samples each training prompt with the starting policy) and in the
    simulator (the base policy's exact success).
    Metrics: frac_groups_kept, solve_rate_mean.
    Ref: seed 000 (its "acc-filter"); cf. Yu et al. 2025 (DAPO) dynamic sampling.
    """

    name = "acc_filter"
    kind = "batch"
    needs_fields = frozenset({"reward"})
    groups = True
    lo: float = 0.1
    hi: float = 0.5
    open_ends: bool = False

    def __post_init__(self):
        check_real(self.name, "lo", self.lo, lo=0.0, hi=1.0)
        check_real(self.name, "hi", self.hi, lo=self.lo, hi=1.0)
        if not isinstance(self.open_ends, bool):
            raise ValueError(f"{self.name}.open_ends: got {self.open_ends!r}; allowed: True or False")

    def terms(self, batch, state, generator=None):
        idx, n = group_index(batch)
        _, rate, _ = group_stats(rewards(batch, self.name), idx, n)  # (B,) the group's solve rate
        if self.open_ends:
            keep = (rate > self.lo) & (rate < self.hi)
        else:
            keep = (rate >= self.lo) & (rate <= self.hi)
        kept_groups = group_sizes(idx, n, keep) > 0
        return Terms(
            mask=keep.to(batch.mask.dtype)[:, None].expand_as(batch.mask),
            metrics={  # 0-dim tensors, read back with the rest
                "frac_groups_kept": kept_groups.float().mean() if n else 0.0,
                "solve_rate_mean": rate.mean() if rate.numel() else 0.0,
            },
        )


@register
@dataclass(frozen=True)
class OverlongShaping(Controller):
    """DAPO soft overlong punishment, added to the sequence reward (before any advantage transform):

    R_len(L) = 0 if L ≤ max_len − cache_len; ((max_len − cache_len) − L)/cache_len if L ≤ max_len; −1 beyond,
    times ``penalty_factor``. L = response length in tokens (``batch.length``, else the mask's row sums).
    Defaults: max_len = 20,480, cache_len = 4,096 (DAPO: 16,384 + 4,096), penalty_factor = 1.
    Ref: Yu et al. 2025 (DAPO) Eq. 13; verl ``reward_manager/dapo.py`` (overlong_buffer).
    """

    name = "overlong_shaping"
    kind = "reward"
    needs_fields = frozenset({"reward"})
    stage_name = "sampling"
    separable_runs = True
    max_len: int = 20_480
    cache_len: int = 4_096
    penalty_factor: float = 1.0

    def __post_init__(self):
        check_int(self.name, "max_len", self.max_len, lo=1)
        check_int(self.name, "cache_len", self.cache_len, lo=1)
        if self.cache_len > self.max_len:
            raise ValueError(
                f"{self.name}.cache_len: got {self.cache_len}; allowed: an integer in [1, max_len = {self.max_len}]"
            )
        check_real(self.name, "penalty_factor", self.penalty_factor, lo=0.0)

    def penalty(self, length: Tensor) -> Tensor:
        L = length.to(torch.float64)
        soft = float(self.max_len - self.cache_len)
        r = torch.where(L <= soft, torch.zeros_like(L), (soft - L) / self.cache_len)
        r = torch.where(L > self.max_len, -torch.ones_like(L), r)
        return self.penalty_factor * r

    def rewards(self, batch, state):
        r = rewards(batch, self.name)
        return r + self.penalty(batch.seq_len).to(r.dtype)

    def terms(self, batch, state, generator=None):
        pen = self.penalty(batch.seq_len)
        n = max(pen.numel(), 1)
        return Terms(
            metrics={
                "frac_penalised": float((pen < 0).sum()) / n,
                "penalty_mean": float(pen.mean()) if pen.numel() else 0.0,
            }
        )
