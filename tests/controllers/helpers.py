"""Small builders for TokenBatch tests."""

import torch
from hypothesis import strategies as st

import controllers as C


@st.composite
def batches(draw, min_b=2, max_b=8, max_t=6, n_groups=None, binary=True, off_policy=False):
    """A random TokenBatch with group ids, rewards, some padding, and (optionally) old_logp ≠ logp."""
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
    return C.TokenBatch(
        logp=logp,
        old_logp=old,
        adv=torch.zeros(b, t, dtype=torch.float64),
        entropy=entropy,
        mask=mask,
        group=group,
        reward=reward,
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
    )
