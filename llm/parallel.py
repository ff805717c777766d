"""What every host of the controllers on several processes needs: the ``controllers.dist`` gather built
on ``accelerate``, and the factor that makes DDP's gradient average equal the loss normalised over all
ranks. The trainer and the engine adapters (``llm.engines``) share them; ``TorchGather`` is the same
gather over a plain torch.distributed group (verl hands its loss the data-parallel group)."""

from __future__ import annotations

import torch

import controllers as C


class AccelerateGather(C.dist.Gather):
    """controllers.dist hook: concatenate a 1-D tensor over every rank (lengths may differ)."""

    def __init__(self, accelerator):
        self.acc = accelerator

    def cat(self, x):
        n = torch.tensor([x.numel()], device=x.device)
        sizes = self.acc.gather(n).tolist()
        padded = self.acc.pad_across_processes(x, dim=0)
        allx = self.acc.gather(padded).reshape(len(sizes), -1)
        parts = [allx[r, : sizes[r]] for r in range(len(sizes))]
        return torch.cat(parts), int(sum(sizes[: self.acc.process_index]))


def rank_scale(acc, agg: str, mask: torch.Tensor) -> float:
    """Factor making DDP's average of the ranks' local losses equal the loss normalised over all ranks:
    world · (local normaliser) / (global normaliser) — tokens for token-mean, non-empty sequences for the
    three seq-mean modes (seq-mean-token-sum-norm divides by them too, and by the constant L)."""
    world = acc.num_processes
    if world == 1:
        return 1.0
    local = (mask.sum() if agg == "token-mean" else (mask.sum(-1) > 0).sum()).detach().float()
    total = acc.reduce(local.clone(), "sum")
    return float(world * local / total.clamp_min(1.0))


class TorchGather(C.dist.Gather):
    """``controllers.dist`` hook over a torch.distributed group (verl's data-parallel group)."""

    def __init__(self, group=None):
        self.group = group

    def cat(self, x):
        import torch.distributed as tdist

        world = tdist.get_world_size(self.group)
        n = torch.tensor([x.numel()], device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        tdist.all_gather(sizes, n, group=self.group)
        sizes = [int(s) for s in sizes]
        padded = torch.zeros(max(sizes), dtype=x.dtype, device=x.device)
        padded[: x.numel()] = x
        parts = [torch.zeros_like(padded) for _ in range(world)]
        tdist.all_gather(parts, padded, group=self.group)
        rank = tdist.get_rank(self.group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]), int(sum(sizes[:rank]))
