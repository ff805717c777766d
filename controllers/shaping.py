"""Reward shaping that reads the responses themselves: high-entropy-token bonus (seed 000) and DRA's
diversity-aware reward; plus the n-gram embedding and group-diversity telemetry they use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.base import Controller, Terms, check_choice, check_int, check_real, register
from controllers.groups import rewards
from controllers.weights import TopEntropy

# -- embeddings and similarity ------------------------------------------------------------------------


def ngram_embedding(tokens: Tensor, mask: Tensor, n: int = 2, dim: int = 512) -> Tensor:
    """(B, dim) float64 count vector of each response's token n-grams (1..n), hashed into ``dim`` buckets.

    The cosine of two such vectors is an n-gram overlap similarity (1 for identical n-gram multisets, 0
    for none shared up to hash collisions): the fallback "semantic" embedding when no sentence-embedding
    model is installed, and the simulator's embedding of a token path. Only valid tokens (``mask`` = 1)
    form n-grams; an n-gram never spans padding.
    """
    check_int("ngram_embedding", "n", n, lo=1)
    check_int("ngram_embedding", "dim", dim, lo=1)
    if tokens.ndim != 2 or mask.shape != tokens.shape:
        raise ValueError(
            f"tokens: shape {tuple(tokens.shape)}; allowed: (B, T) integer ids with a mask of the same shape"
        )
    B, T = tokens.shape
    out = torch.zeros(B, dim, dtype=torch.float64, device=tokens.device)
    valid = mask.bool()
    ids = tokens.long()
    for k in range(1, n + 1):
        if k > T:
            break
        h = torch.zeros(B, T - k + 1, dtype=torch.long, device=tokens.device)
        ok = torch.ones(B, T - k + 1, dtype=torch.bool, device=tokens.device)
        for j in range(k):
            h = (h * 1_000_003 + ids[:, j : T - k + 1 + j] + 1) % 2_147_483_647
            ok &= valid[:, j : T - k + 1 + j]
        bucket = (h * 31 + k) % dim
        out.scatter_add_(1, bucket, ok.to(out.dtype))
    return out


def group_similarity(embedding: Tensor, group: Tensor | None, scope: str = "group") -> Tensor:
    """(B, B) cosine similarity of the responses' embeddings, 0 between responses of different groups
    (``scope="group"``) or over the whole batch (``scope="batch"``). Zero vectors have similarity 0."""
    e = embedding.to(torch.float64)
    unit = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = unit @ unit.T
    if scope == "group" and group is not None:
        sim = sim * (group[:, None] == group[None, :]).to(sim.dtype)
    return sim


def similarity_sums(embedding: Tensor, group: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B,) Σ_{j ≠ i, same group} cos(e_i, e_j) and the number of such ordered pairs (a 0-dim tensor),
    in O(B·D): u_i · Σ_{j in i's group} u_j − u_i · u_i with u the unit vectors, instead of the (B, B)
    matrix of ``group_similarity`` (the same sums up to float64 rounding, tested). ``group`` None: one
    group."""
    e = embedding.to(torch.float64)
    unit = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if group is None:
        idx = torch.zeros(e.shape[0], dtype=torch.long, device=e.device)
    else:
        _, idx = torch.unique(group, return_inverse=True)
    n_groups = e.shape[0]  # an upper bound: no host read for the count
    sums = torch.zeros(n_groups, e.shape[1], dtype=e.dtype, device=e.device).index_add_(0, idx, unit)
    sizes = torch.zeros(n_groups, dtype=e.dtype, device=e.device).index_add_(0, idx, torch.ones_like(e[:, 0]))
    smi = (unit * sums[idx]).sum(-1) - (unit * unit).sum(-1)
    return smi, (sizes * (sizes - 1.0)).sum()


def group_diversity(embedding: Tensor, group: Tensor | None) -> float:
    """1 − mean pairwise cosine similarity between responses of the same group (pairs i ≠ j), in [0, 2]
    (0: every group's responses identical). NaN when no group has two responses."""
    return float(diversity_tensor(*similarity_sums(embedding, group)))


def diversity_tensor(smi: Tensor, pairs: Tensor) -> Tensor:
    """``group_diversity`` from ``similarity_sums``, as a 0-dim tensor (NaN when there are no pairs)."""
    return torch.where(pairs > 0, 1.0 - smi.sum() / pairs.clamp_min(1.0), torch.full_like(pairs, torch.nan))


def distinct_n(tokens: Tensor, mask: Tensor, group: Tensor | None, n: int = 2) -> float:
    """Distinct-n: distinct n-grams / all n-grams within each group's responses, averaged over groups."""
    idx = torch.zeros(tokens.shape[0], dtype=torch.long) if group is None else group.cpu()
    rows = tokens.cpu().tolist()
    valid = mask.bool().cpu().tolist()
    shares = []
    for g in torch.unique(idx).tolist():
        grams = []
        for i in torch.nonzero(idx == g).flatten().tolist():
            seq = [t for t, v in zip(rows[i], valid[i], strict=True) if v]
            grams += [tuple(seq[j : j + n]) for j in range(len(seq) - n + 1)]
        if grams:
            shares.append(len(set(grams)) / len(grams))
    return float(sum(shares) / len(shares)) if shares else float("nan")


# -- controllers ----------------------------------------------------------------------------------------


def _frac_groups_split(add: Tensor, correct: Tensor, group: Tensor | None) -> float:
    """Share of the groups with a correct response whose correct responses get unequal bonuses (the whole
    batch is one group when ``group`` is None)."""
    if correct.numel() == 0:
        return 0.0
    g = (
        torch.zeros_like(correct, dtype=torch.long)
        if group is None
        else torch.unique(group, return_inverse=True)[1]
    )
    n_g = int(g.max()) + 1
    big = torch.finfo(add.dtype).max
    hi = torch.full((n_g,), -big, dtype=add.dtype).scatter_reduce(
        0, g, torch.where(correct, add, -big), "amax"
    )
    lo = torch.full((n_g,), big, dtype=add.dtype).scatter_reduce(0, g, torch.where(correct, add, big), "amin")
    has = torch.zeros(n_g, dtype=torch.bool).scatter_reduce(0, g, correct, "amax")
    n_has = int(has.sum())
    return float((has & (hi > lo)).sum()) / n_has if n_has else 0.0


@register
@dataclass(frozen=True)
class ForkBonus(Controller):
    """High-entropy-token reward shaping (seed 000's own experiment): a correct response (reward ≥
    ``min_reward``) that contains high-entropy "forking" tokens gets ``bonus`` more reward.

    r'_i = r_i + bonus · 1{r_i ≥ min_reward} · g_i, with g_i = 1{response i has a fork token} (mode
    "any", the seed's wording: "答案正确且出现高熵 token") or the share of its tokens that are forks
    (mode "share"). A token is a fork when its entropy is among the ⌈frac·N⌉ highest of the N valid
    tokens of the batch (all ranks; the 80/20 rule's threshold, ties kept), or ≥ ``threshold`` nats
    when that is given. The seed reports a V-shaped entropy curve that ends above its start; it gives
    no bonus size, so 0.5 (half a correct answer) is our default.
    Metrics: frac_correct_with_fork (share of correct responses that get the bonus), bonus_mean,
    frac_groups_split (share of the groups with a correct response in which the bonus is not the same for
    every correct response: only there can a group-normalised advantage such as GRPO's tell it apart from
    the correctness reward).
    Ref: seed 000 ("一些实验的观察"); fork tokens: Wang et al. 2025 (arXiv 2506.01939).
    """

    name = "fork_bonus"
    reads_at_sampling = frozenset({"entropy"})
    kind = "reward"
    needs_fields = frozenset({"reward"})
    stage_name = "sampling"
    bonus: float = 0.5
    frac: float = 0.2
    threshold: float | None = None
    min_reward: float = 1.0
    mode: str = "any"

    def __post_init__(self):
        check_real(self.name, "bonus", self.bonus, lo=0.0)
        check_real(self.name, "frac", self.frac, lo=0.0, hi=1.0, lo_open=True)
        if self.threshold is not None:
            check_real(self.name, "threshold", self.threshold, lo=0.0)
        check_real(self.name, "min_reward", self.min_reward)
        check_choice(self.name, "mode", self.mode, ("any", "share"))

    def forks(self, batch) -> Tensor:
        """Bool (B, T): the valid tokens counted as forks."""
        if self.threshold is not None:
            return batch.mask.bool() & (batch.entropy.detach() >= self.threshold)
        return TopEntropy(rho=self.frac).keep(batch)

    def shaping(self, batch) -> tuple[Tensor, Tensor]:
        """(bonus added (B,), correct (B,) bool)."""
        r = rewards(batch, self.name)
        fork = self.forks(batch).to(r.dtype)
        if self.mode == "any":
            g = (fork.sum(-1) > 0).to(r.dtype)
        else:
            g = fork.sum(-1) / batch.mask.sum(-1).clamp_min(1.0).to(r.dtype)
        correct = r >= self.min_reward
        return self.bonus * correct.to(r.dtype) * g, correct

    def rewards(self, batch, state):
        add, _ = self.shaping(batch)
        return rewards(batch, self.name) + add

    def terms(self, batch, state, generator=None):
        if batch.reward is None:
            return Terms()
        add, correct = self.shaping(batch)
        n_correct = int(correct.sum())
        return Terms(
            metrics={
                "frac_correct_with_fork": float(((add > 0) & correct).sum()) / n_correct
                if n_correct
                else 0.0,
                "bonus_mean": float(add.mean()) if add.numel() else 0.0,
                "frac_groups_split": _frac_groups_split(add, correct, batch.group),
            }
        )


@register
@dataclass(frozen=True)
class DiversityReward(Controller):
    """DRA: diversity-aware reward adjustment with submodular mutual information (graph cut).

    r'_i = r_i / (1 + SMI_i),  SMI_i = Σ_{j ≠ i} s(i, j), s the cosine similarity of the responses'
    embeddings (``batch.embedding``) over the other responses of i's group (``scope="group"``, the
    paper's C \\ {q_i}); redundant responses are down-weighted, distinct ones keep their reward.
    ``scope="batch"`` sums over the whole local batch instead, as the authors' code does (it takes the
    similarity matrix of all completions on a process, across prompts); stated as a deviation. The
    denominator is floored at ``eps`` (negative cosines could otherwise flip the reward's sign; the code
    adds 1e-6). Metrics: smi_mean, diversity (1 − mean within-group pairwise cosine).
    Ref: Chen et al. 2025, DRA-GRPO (arXiv 2505.09655); xiwenc1/DRA-GRPO ``grpo_trainer.py``.
    """

    name = "diversity_reward"
    kind = "reward"
    needs_fields = frozenset({"reward", "embedding"})
    stage_name = "sampling"

    scope: str = "group"
    eps: float = 1e-6

    def whole_groups(self):
        return self.scope == "group"

    def separable(self, equal_lengths=True):
        return self.scope == "group"  # the batch scope compares responses of different runs

    def __post_init__(self):
        check_choice(self.name, "scope", self.scope, ("group", "batch"))
        check_real(self.name, "eps", self.eps, lo=0.0, lo_open=True)

    def smi(self, batch) -> Tensor:
        if batch.embedding is None:
            raise ValueError(
                f"embedding: None; allowed: a (B, D) float tensor of response embeddings ({self.name!r} needs it)"
            )
        smi, _ = similarity_sums(batch.embedding, batch.group if self.scope == "group" else None)
        return smi.to(batch.logp.dtype)

    def rewards(self, batch, state):
        r = rewards(batch, self.name)
        return r / (1.0 + self.smi(batch)).clamp_min(self.eps)

    def terms(self, batch, state, generator=None):
        if batch.embedding is None:
            return Terms()
        within, pairs = similarity_sums(batch.embedding, batch.group)
        smi = within if self.scope == "group" else similarity_sums(batch.embedding, None)[0]
        smi = smi.to(batch.logp.dtype)
        return Terms(
            metrics={
                "smi_mean": smi.mean() if smi.numel() else 0.0,
                "diversity": torch.nan_to_num(diversity_tensor(within, pairs), nan=0.0),
            }
        )
