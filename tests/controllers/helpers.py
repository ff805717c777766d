"""Small builders for TokenBatch tests, and a threaded stand-in for several ranks."""

import itertools
import threading

import torch
from hypothesis import strategies as st

import controllers as C


@st.composite
def batches(draw, min_b=2, max_b=8, max_t=6, n_groups=None, binary=True, off_policy=False, full=False):
    """A random TokenBatch with group ids, rewards, some padding, and (optionally) old_logp ≠ logp.

    full=True also fills ref_logp, entropy_topp, answer ids, step_correct, guide, embedding and value (every
    optional field)."""
    b = draw(st.integers(min_b, max_b))
    t = draw(st.integers(1, max_t))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 4).requires_grad_()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.float64)
    k = n_groups or draw(st.integers(1, max(1, b // 2)))
    group = torch.arange(b) % k
    if binary:
        reward = torch.randint(0, 2, (b,), generator=g).to(torch.float64)
    else:
        reward = torch.randn(b, generator=g, dtype=torch.float64)
    old = logp.detach() + (0.3 * torch.randn(b, t, generator=g, dtype=torch.float64) if off_policy else 0.0)
    entropy = torch.rand(b, t, generator=g, dtype=torch.float64) * 2
    extra = {}
    if full:
        extra = {
            "ref_logp": logp.detach() + 0.2 * torch.randn(b, t, generator=g, dtype=torch.float64),
            "entropy_topp": (torch.rand(b, t, generator=g, dtype=torch.float64) * 1.5).requires_grad_(),
            "answer": torch.randint(0, 3, (b,), generator=g),
            "step_correct": torch.randint(0, 2, (b, t), generator=g).to(torch.float64),
            "guide": torch.rand(b, generator=g) < 0.3,
            "embedding": torch.rand(b, 4, generator=g, dtype=torch.float64),
            "value": torch.rand(b, t, generator=g, dtype=torch.float64),
        }
    return C.TokenBatch(
        logp=logp,
        old_logp=old,
        adv=torch.zeros(b, t, dtype=torch.float64),
        entropy=entropy,
        mask=mask,
        group=group,
        reward=reward,
        **extra,
    )


def pad(batch: C.TokenBatch, extra: int) -> C.TokenBatch:
    """Append ``extra`` padded positions to every sequence (junk values, mask 0)."""

    def cat(x, fill):
        return torch.cat([x, torch.full((x.shape[0], extra), fill, dtype=x.dtype)], dim=1)

    return C.TokenBatch(
        logp=cat(batch.logp, -3.0),
        old_logp=cat(batch.old_logp, -1.0),
        adv=cat(batch.adv, 5.0),
        entropy=cat(batch.entropy, 9.0),
        mask=cat(batch.mask, 0.0),
        group=batch.group,
        reward=batch.reward,
        length=batch.length,
        ref_logp=None if batch.ref_logp is None else cat(batch.ref_logp, 0.5),
        entropy_topp=None if batch.entropy_topp is None else cat(batch.entropy_topp, 7.0),
        answer=batch.answer,
        step_correct=None if batch.step_correct is None else cat(batch.step_correct, 1.0),
        guide=batch.guide,
        embedding=batch.embedding,
        value=None if batch.value is None else cat(batch.value, 3.0),
    )


def rows(batch: C.TokenBatch, lo: int, hi: int) -> C.TokenBatch:
    """Sequences lo..hi-1 of a batch (every field sliced)."""
    out = {}
    for f in (
        "logp",
        "old_logp",
        "adv",
        "entropy",
        "mask",
        "group",
        "reward",
        "length",
        "ref_logp",
        "entropy_topp",
        "answer",
        "step_correct",
        "guide",
        "embedding",
        "value",
    ):
        v = getattr(batch, f)
        out[f] = None if v is None else v[lo:hi]
    return C.TokenBatch(**out)


class ThreadGather(C.dist.Gather):
    """n threads act as n ranks: cat() exchanges tensors through a barrier, in rank order."""

    def __init__(self, n: int):
        self.n = n
        self.barrier = threading.Barrier(n)
        self.slots: list = [None] * n
        self.local = threading.local()

    def cat(self, x):
        r = self.local.rank
        self.slots[r] = x
        self.barrier.wait()
        out = torch.cat(self.slots)
        offset = sum(int(s.numel()) for s in self.slots[:r])
        self.barrier.wait()  # every rank has read before anyone writes the next exchange
        return out, offset


def run_ranks(batch: C.TokenBatch, cuts: list[int], fn):
    """Split the batch's rows at ``cuts``, run fn(chunk) on each chunk in its own thread as its own rank,
    with a ThreadGather installed; return the results in rank order."""
    bounds = [0, *cuts, batch.logp.shape[0]]
    chunks = [rows(batch, a, b) for a, b in itertools.pairwise(bounds)]
    hook = ThreadGather(len(chunks))
    results: list = [None] * len(chunks)
    errors: list = []

    def work(r):
        hook.local.rank = r
        try:
            results[r] = fn(chunks[r])
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)
            hook.barrier.abort()

    with C.dist.using(hook):
        threads = [threading.Thread(target=work, args=(r,)) for r in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results
