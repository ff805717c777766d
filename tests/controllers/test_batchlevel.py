"""Dynamic sampling, the accuracy-band filter and overlong shaping."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from tests.controllers.helpers import batches


@given(batches(binary=True, max_b=12))
def test_dynamic_sampling_drops_exactly_the_all_equal_groups(batch):
    keep = C.mixed_groups(batch.reward, batch.group)
    for gid in torch.unique(batch.group):
        sel = batch.group == gid
        mixed = bool(batch.reward[sel].max() > batch.reward[sel].min())
        assert bool((keep[sel] == mixed).all())
    t = C.get("dynamic_sampling").terms(batch, {})
    torch.testing.assert_close(t.mask, keep.to(torch.float64)[:, None].expand_as(batch.mask))
    n_dropped = len({int(g) for g, k in zip(batch.group, keep, strict=True) if not k})
    assert t.metrics["n_groups_dropped"] == n_dropped


@given(batches(binary=True, max_b=12))
def test_dynamic_sampling_equals_loss_on_the_kept_rows(batch):
    """Dropping groups through the pipeline = computing the loss on the kept sequences alone."""
    g = torch.Generator().manual_seed(0)
    b = batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=torch.float64) * batch.mask)
    keep = C.mixed_groups(b.reward, b.group)
    loss, m = C.policy_loss(b, [C.get("dynamic_sampling"), C.get("entropy_bonus", coef=0.1)])
    kept = b.replace(mask=b.mask * keep.to(torch.float64)[:, None])
    ref, _ = C.policy_loss(kept, [C.get("entropy_bonus", coef=0.1)])
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    assert m["loss/frac_tokens_kept"] == pytest.approx(float(kept.mask.sum()) / max(float(b.mask.sum()), 1.0))


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.floats(0.0, 2.0))
def test_overlong_penalty_piecewise(lengths, factor):
    c = C.get("overlong_shaping", max_len=30, cache_len=10, penalty_factor=factor)
    L = torch.tensor(lengths)
    pen = c.penalty(L)
    for length, p in zip(lengths, pen.tolist(), strict=True):
        expect = 0.0 if length <= 20 else ((20 - length) / 10 if length <= 30 else -1.0)
        assert p == pytest.approx(factor * expect)


def test_overlong_shaping_runs_before_the_advantage():
    x = torch.zeros(4, 3, dtype=torch.float64)
    b = C.TokenBatch(
        logp=x, old_logp=x, adv=x, entropy=x, mask=torch.ones_like(x),
        reward=torch.ones(4, dtype=torch.float64), length=torch.tensor([5, 20, 25, 35]), group=torch.zeros(4, dtype=torch.long),
    )  # fmt: skip
    # the shaping is listed after grpo, yet rewards are shaped first: all-correct group gets non-zero advantages
    pipe = C.Pipeline([C.get("dr_grpo"), C.get("overlong_shaping", max_len=30, cache_len=10)])
    shaped = torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(pipe.advantages(b)[:, 0], shaped - shaped.mean())


def test_overlong_bad_input():
    with pytest.raises(
        ValueError, match=r"^overlong_shaping\.cache_len: got 50; allowed: an integer in \[1, max_len = 30\]"
    ):
        C.get("overlong_shaping", max_len=30, cache_len=50)
    with pytest.raises(ValueError, match=r"^overlong_shaping\.max_len: got 1.5"):
        C.get("overlong_shaping", max_len=1.5)


@given(batches(binary=True, max_b=12), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_acc_filter_keeps_exactly_the_groups_in_the_band(batch, a, b):
    lo, hi = min(a, b), max(a, b)
    t = C.get("acc_filter", lo=lo, hi=hi).terms(batch, {})
    for gid in torch.unique(batch.group):
        sel = batch.group == gid
        rate = float(batch.reward[sel].mean())
        expect = float(lo <= rate <= hi)
        assert bool((t.mask[sel] == expect).all()), (rate, lo, hi)


@given(batches(binary=True, max_b=12))
def test_acc_filter_with_open_unit_band_is_dynamic_sampling(batch):
    ours = C.get("acc_filter", lo=0.0, hi=1.0, open_ends=True).terms(batch, {}).mask
    dapo = C.get("dynamic_sampling").terms(batch, {}).mask
    torch.testing.assert_close(ours, dapo)


def test_acc_filter_bad_band_names_the_field():
    with pytest.raises(ValueError, match=r"acc_filter\.hi: got 0\.2; allowed: \[0\.5, 1\.0\]"):
        C.get("acc_filter", lo=0.5, hi=0.2)
