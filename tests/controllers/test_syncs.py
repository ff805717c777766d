"""Host synchronisations per ``policy_loss`` call (issue: a GPU-friendly loss). On a GPU every read of a
device value on the host (``float``, ``bool``, ``int``, ``.item()``, ``.tolist()``) waits for the device, and
so does every op whose output size depends on the values (``unique``, ``bincount``, ``nonzero``, boolean
indexing); a CUDA-free stand-in counts those calls on CPU tensors, so the budget below cannot regress
unseen. tests/controllers/test_gpu_syncs.py checks the stand-in against torch's own count on a GPU."""

from __future__ import annotations

import pytest
import torch

import controllers as C
from entrolab.bench.harness import count_host_reads
from tests.controllers.test_edge_batches import full_batch, pipeline

count_reads = count_host_reads  # the bench's counter: entrolab/bench/RESULTS.md reports the same numbers


def test_the_counter_counts():
    with count_reads() as c:
        float(torch.tensor(1.0))
        bool(torch.tensor(True))
        torch.tensor([1.0]).tolist()
    assert sum(c.values()) == 3


def test_the_counter_counts_size_dependent_ops_and_restores_torch():
    x = torch.arange(6.0)
    before = (torch.Tensor.__getitem__, torch.unique, torch.Tensor.bincount)
    with count_reads() as c:
        x[x > 2]  # 1: a boolean mask
        x[1:3]  # a slice: no read
        x[torch.tensor([0, 1])]  # an integer index: no read
        y = x.clone()
        y[y > 2] = 0.0  # 1
        x.unique()  # 1 (Tensor.unique calls torch.unique: counted once)
        torch.bincount(torch.tensor([0, 2]))  # 1
        x.nonzero()  # 1
        x.repeat_interleave(torch.tensor([1] * 6))  # 1: repeats as a tensor, no output_size
        x.repeat_interleave(torch.tensor([1] * 6), output_size=6)  # sized: no read
        x.repeat_interleave(2)  # no read
    assert sum(c.values()) == 6, dict(c)
    assert (torch.Tensor.__getitem__, torch.unique, torch.Tensor.bincount) == before
    assert "__getitem__" not in vars(torch.Tensor)


def test_groups_are_indexed_once_per_call_and_as_torch_unique_does():
    from controllers.agg import dense_groups, shared_groups

    g = torch.tensor([7, 3, 7, 9, 3])
    with count_reads() as c, shared_groups():
        a, n = dense_groups(g)
        b, m = dense_groups(g)
    assert sum(c.values()) == 1 and a is b and n == m == 3
    assert torch.equal(a, torch.unique(g, return_inverse=True)[1])
    with shared_groups():
        dense_groups(g)
        g[0] = 3  # modified in place: indexed again
        assert torch.equal(dense_groups(g)[0], torch.tensor([0, 0, 1, 2, 0]))  # was [1, 0, 1, 2, 0]
    assert dense_groups(torch.zeros(0, dtype=torch.long))[1] == 0
    with torch.inference_mode():
        frozen = torch.tensor([4, 4, 1])
    with shared_groups():  # an inference tensor has no version counter: indexed each time, not cached
        assert torch.equal(dense_groups(frozen)[0], torch.tensor([1, 1, 0])) and dense_groups(frozen)[1] == 2


def test_a_batch_is_validated_in_one_read():
    b = full_batch(8, 5)
    with count_reads() as c:
        C.TokenBatch(**{f: getattr(b, f) for f in b.__dataclass_fields__})
    assert sum(c.values()) == 1, dict(c)
    with count_reads() as c:
        b.replace(adv=torch.ones_like(b.adv))
    assert sum(c.values()) == 1, dict(c)


def test_the_default_pipeline_reads_back_twice():
    """GRPO + PPO clip: the group count (torch.unique) and the one read-back of every metric."""
    b = full_batch(16, 6)
    pipe = C.Pipeline([C.get("grpo"), C.get("ppo_clip")])
    with count_reads() as c:
        C.policy_loss(b, pipe)
    assert sum(c.values()) <= 2, dict(c)


BUDGET = 16
"""synchronisations per call for any controller with GRPO and PPO clip (a global token selection needs its
sizes on the host: SENT, with three, is the most, at 15)"""


@pytest.mark.parametrize("name", C.names())
def test_every_controller_stays_within_the_budget(name):
    b = full_batch(16, 6)
    pipe = pipeline(name)
    state = pipe.init()
    with count_reads() as c:
        C.policy_loss(b, pipe, state, generator=torch.Generator().manual_seed(0))
    assert sum(c.values()) <= BUDGET, (name, dict(c))
