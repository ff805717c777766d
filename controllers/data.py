"""Data options shared by the simulator and the LLM trainer: which prompts to train, in which order.

Both hosts measure every training prompt once with the starting policy (the simulator exactly, the trainer
by a sampling pre-pass) and hand the per-prompt numbers to ``select_prompts``, so the offline accuracy band
(seed 000) and the semantic-entropy curriculum (SENT, arXiv 2512.04359) mean the same in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

CURRICULA = ("none", "semantic_entropy")


def select_prompts(
    solve_rate: Tensor, semantic_entropy: Tensor | None = None, band: tuple = (), curriculum: str = "none"
) -> Tensor:
    """Indices of the prompts to train, in training order.

    band (lo, hi): keep the prompts whose starting solve rate lies in [lo, hi] (the offline accuracy filter;
    () keeps all). curriculum "semantic_entropy": order the kept prompts from low to high semantic entropy of
    their answers (stable: ties keep their order); "none": keep their order.

    Args: solve_rate (P,); semantic_entropy (P,) nats, needed by the curriculum. Returns (P',) long.
    Raises ValueError (one line) when the band keeps no prompt.
    """
    if curriculum not in CURRICULA:
        raise ValueError(f"curriculum: got {curriculum!r}; allowed: {', '.join(CURRICULA)}")
    idx = torch.arange(solve_rate.numel(), device=solve_rate.device)
    if band:
        lo, hi = band
        idx = idx[(solve_rate >= lo) & (solve_rate <= hi)]
        if idx.numel() == 0:
            raise ValueError(
                f"offline_band: got {tuple(band)}; allowed: a band that keeps a prompt (the starting policy's "
                f"solve rates range {float(solve_rate.min()):.3f}..{float(solve_rate.max()):.3f})"
            )
    if curriculum == "semantic_entropy":
        if semantic_entropy is None:
            raise ValueError(
                "semantic_entropy: got None; allowed: a (P,) tensor (the curriculum orders by it)"
            )
        idx = idx[torch.sort(semantic_entropy[idx], stable=True).indices]
    return idx
