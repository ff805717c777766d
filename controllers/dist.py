"""The per-rank gather hook: how token selections stay global across processes.

Every selection a controller makes (top-k covariance, entropy quantiles, Clip-Cov's random subset, STEER's
max |Ω|) is computed from values gathered over *all* ranks, then applied to the local tokens. In one
process the hook is the identity. The LLM trainer installs a hook built on ``accelerate``'s gather:

    with controllers.dist.using(MyGather()):
        loss, metrics = controllers.policy_loss(local_batch, pipeline)

A hook implements ``cat(x)``: given this rank's 1-D tensor, return the concatenation of every rank's
tensor in rank order, and the offset of this rank's block in it. Lengths may differ between ranks.
Ranks must call it in the same order (they do: every rank runs the same pipeline).

This fixes the verl/PRIME trap where Clip-Cov/KL-Cov/80-20 selected per micro-batch or per rank
(docs/engines.md, "Selections").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor


class Gather:
    """Single process: the local tensor is the global one."""

    def cat(self, x: Tensor) -> tuple[Tensor, int]:
        return x, 0


_CURRENT: list[Gather] = [Gather()]


def current() -> Gather:
    """The gather hook in force."""
    return _CURRENT[-1]


@contextlib.contextmanager
def using(hook: Gather) -> Iterator[Gather]:
    """Install ``hook`` for the duration of the block."""
    if not callable(getattr(hook, "cat", None)):
        raise ValueError(f"hook: got {type(hook).__name__}; allowed: an object with a cat(x) method")
    _CURRENT.append(hook)
    try:
        yield hook
    finally:
        _CURRENT.pop()


def gather_valid(x: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """Global 1-D tensor of the valid entries of x (row-major), and this rank's offset into it."""
    return current().cat(x.detach()[mask.bool()].flatten())


def global_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over the valid tokens of every rank (0 if none), detached."""
    vals, _ = gather_valid(x, mask)
    if vals.numel() == 0:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return vals.mean()


def scatter_valid(values: Tensor, mask: Tensor, fill: float = 0.0) -> Tensor:
    """Inverse of the local part of ``gather_valid``: put 1-D values back at the valid positions."""
    out = torch.full(mask.shape, fill, dtype=values.dtype, device=mask.device)
    out[mask.bool()] = values
    return out
