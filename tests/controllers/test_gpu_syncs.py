"""Device synchronisations per ``policy_loss`` call, counted on a real GPU (``gpu`` tests run only where
torch sees a CUDA device). tests/controllers/test_syncs.py holds the budget with a CUDA-free stand-in
that counts host reads; a GPU also waits at size-dependent kernels (``nonzero``, ``unique``, boolean
indexing) and at blocking host→device copies, which that stand-in cannot see. Here torch's sync debug
mode counts every one, and each controller must synchronise no more often than it reads on the host."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import controllers as C
from entrolab.bench.harness import count_cuda_syncs, count_host_reads
from tests.controllers.test_edge_batches import full_batch, pipeline


def on_device(b: C.TokenBatch, device: str) -> C.TokenBatch:
    """The same batch with every tensor on ``device`` (leaves that need a gradient stay leaves)."""
    moved = {}
    for f in dataclasses.fields(b):
        v = getattr(b, f.name)
        if isinstance(v, torch.Tensor):
            v = v.detach().to(device).requires_grad_(v.requires_grad)
        moved[f.name] = v
    return C.TokenBatch(**moved)


def _call(batch, name):
    pipe = pipeline(name)
    return C.policy_loss(batch, pipe, pipe.init(), generator=torch.Generator().manual_seed(0))


@pytest.mark.gpu
def test_the_sync_counter_counts():
    x = torch.ones(4, device="cuda")
    with count_cuda_syncs() as c:
        float(x.sum())
        x[x > 0].sum()  # boolean indexing: the output size is read on the host
        y = x * 2  # no sync
    assert sum(c.values()) == 2, dict(c)
    assert y.device.type == "cuda"


@pytest.mark.gpu
@pytest.mark.parametrize("name", C.names())
def test_a_gpu_call_synchronises_no_more_often_than_it_reads(name):
    cpu = full_batch(16, 6)
    with count_host_reads() as reads:
        _call(cpu, name)
    gpu = on_device(cpu, "cuda")
    _call(gpu, name)  # warm-up: first calls initialise kernels and caches
    with count_cuda_syncs() as syncs:
        loss, _ = _call(gpu, name)
    assert loss.device.type == "cuda"
    seen = f"{name}: on the GPU {sorted(syncs.items())}; the stand-in {sorted(reads.items())}"
    assert sum(syncs.values()) <= sum(reads.values()), seen
