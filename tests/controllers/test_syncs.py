"""Host synchronisations per ``policy_loss`` call (issue: a GPU-friendly loss). On a GPU every read of a
device value on the host (``float``, ``bool``, ``int``, ``.item()``, ``.tolist()``) waits for the device; a
CUDA-free stand-in counts those calls on CPU tensors, so the budget below cannot regress unseen."""

from __future__ import annotations

import pytest
import torch

import controllers as C
from bench.harness import count_host_reads
from tests.controllers.test_edge_batches import full_batch, pipeline

count_reads = count_host_reads  # the bench's counter: bench/RESULTS.md reports the same numbers


def test_the_counter_counts():
    with count_reads() as c:
        float(torch.tensor(1.0))
        bool(torch.tensor(True))
        torch.tensor([1.0]).tolist()
    assert sum(c.values()) == 3


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
"""reads per call for any controller with GRPO and PPO clip (selections need their sizes on the host)"""


@pytest.mark.parametrize("name", C.names())
def test_every_controller_stays_within_the_budget(name):
    b = full_batch(16, 6)
    pipe = pipeline(name)
    state = pipe.init()
    with count_reads() as c:
        C.policy_loss(b, pipe, state, generator=torch.Generator().manual_seed(0))
    assert sum(c.values()) <= BUDGET, (name, dict(c))
