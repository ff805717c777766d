"""TokenBatch validation and agg_loss."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from tests.controllers.helpers import batches


def _ok(**over):
    base = dict(
        logp=torch.zeros(2, 3),
        old_logp=torch.zeros(2, 3),
        adv=torch.zeros(2, 3),
        entropy=torch.zeros(2, 3),
        mask=torch.ones(2, 3),
    )
    base.update(over)
    return C.TokenBatch(**base)


@pytest.mark.parametrize("field", ["logp", "old_logp", "adv", "entropy"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_named(field, bad):
    t = torch.zeros(2, 3)
    t[1, 2] = bad
    with pytest.raises(ValueError, match=rf"{field}: contains .* at index \(1, 2\)"):
        _ok(**{field: t})


_EDGE = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    5e-324,
    1e38,
    -1e38,
    3e38,
    1e308,
    -1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
]


@given(
    vals=st.lists(st.one_of(st.sampled_from(_EDGE), st.floats(allow_nan=True)), min_size=6, max_size=6),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16, torch.float16]),
)
def test_refused_iff_some_entry_is_not_finite(vals, dtype):
    """The cheap screen (a sum) never lets a non-finite entry through, and a sum of finite entries that
    overflows (1e308 + 1e308, or any float32 value above the float16 range) is not refused."""
    adv = torch.tensor(vals, dtype=torch.float64).to(dtype).reshape(2, 3)
    finite = bool(torch.isfinite(adv).all())
    if finite:
        _ok(adv=adv, logp=torch.zeros(2, 3, dtype=dtype), old_logp=torch.zeros(2, 3, dtype=dtype))
    else:
        with pytest.raises(ValueError, match=r"adv: contains .*allowed: finite values"):
            _ok(adv=adv, logp=torch.zeros(2, 3, dtype=dtype), old_logp=torch.zeros(2, 3, dtype=dtype))


def test_overflowing_sum_of_finite_values_is_accepted():
    big = torch.full((2, 3), 1e308, dtype=torch.float64)
    assert torch.isinf(big.sum())
    _ok(adv=big, entropy=big.abs(), logp=torch.zeros(2, 3, dtype=torch.float64))


def test_shape_and_mask_and_group_checks():
    with pytest.raises(ValueError, match=r"adv: shape \(2, 2\); allowed: the shape of logp \(2, 3\)"):
        _ok(adv=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"mask: contains 0\.5"):
        _ok(mask=torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="group: dtype"):
        _ok(group=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"reward: got \(3,\)"):
        _ok(reward=torch.zeros(3))
    with pytest.raises(ValueError, match="logp: got"):
        _ok(logp=torch.zeros(3))


def _brute(per, mask, mode):
    b, t = per.shape
    if mode == "token-mean":
        n = mask.sum()
        return (per * mask).sum() / n if n > 0 else torch.tensor(0.0)
    if mode == "seq-mean-token-sum-norm":
        n_seq = int((mask.sum(-1) > 0).sum())
        return (per * mask).sum() / (max(n_seq, 1) * t)
    vals = []
    for i in range(b):
        n = mask[i].sum()
        if n == 0:
            continue
        s = (per[i] * mask[i]).sum()
        vals.append(s / n if mode == "seq-mean-token-mean" else s)
    return sum(vals) / len(vals) if vals else torch.tensor(0.0)


@given(batches(), st.sampled_from(C.AGG_MODES))
def test_agg_matches_brute_force(batch, mode):
    per = batch.entropy * 3 - 1
    assert float(C.agg_loss(per, batch.mask, mode)) == pytest.approx(
        float(_brute(per, batch.mask, mode)), abs=1e-12
    )


@given(batches(), st.sampled_from(C.AGG_MODES), st.integers(1, 4))
def test_agg_padding_invariant(batch, mode, extra):
    per = batch.entropy * 3 - 1
    padded = torch.cat([per, torch.full((per.shape[0], extra), 7.0, dtype=per.dtype)], 1)
    pmask = torch.cat([batch.mask, torch.zeros(per.shape[0], extra, dtype=per.dtype)], 1)
    norm = per.shape[1]
    a = C.agg_loss(per, batch.mask, mode, norm_len=norm)
    b = C.agg_loss(padded, pmask, mode, norm_len=norm)
    assert float(a) == pytest.approx(float(b), abs=1e-12)
    # all-padding rows change nothing either
    rows = torch.cat([per, torch.ones(2, per.shape[1], dtype=per.dtype)], 0)
    rmask = torch.cat([batch.mask, torch.zeros(2, per.shape[1], dtype=per.dtype)], 0)
    assert float(C.agg_loss(rows, rmask, mode)) == pytest.approx(
        float(C.agg_loss(per, batch.mask, mode)), abs=1e-12
    )


def test_agg_all_masked_and_bad_mode():
    assert float(C.agg_loss(torch.ones(2, 3), torch.zeros(2, 3), "seq-mean-token-mean")) == 0.0
    with pytest.raises(ValueError, match="agg: got 'mean'; allowed: token-mean"):
        C.agg_loss(torch.ones(2, 3), torch.ones(2, 3), "mean")


_SPECIAL = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324, -5e-324, 1e308, -1e308, 1.0, -1.0]


@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(_SPECIAL)), max_size=300
    ),
    st.sampled_from([torch.float64, torch.float32]),
)
def test_sort_values_is_torch_sort(values, dtype):
    """The integer-key sort returns torch.sort's values, NaN last, ±0 and infinities in place."""
    from controllers.agg import sort_values

    x = torch.tensor(values * (4096 // max(len(values), 1) + 1), dtype=dtype)  # ≥ 4096: the integer keys
    got, want = sort_values(x), torch.sort(x).values
    assert got.dtype == x.dtype and got.shape == x.shape
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    ok = ~torch.isnan(want)
    assert torch.equal(got[ok], want[ok])  # −0.0 == 0.0


def test_sort_values_keeps_other_dtypes_and_large_inputs():
    from controllers.agg import sort_values

    x = torch.randn(300_000, dtype=torch.float64)
    assert torch.equal(sort_values(x), torch.sort(x).values)
    h = torch.randn(50).to(torch.bfloat16)
    assert torch.equal(sort_values(h), torch.sort(h).values)


def test_telemetry_quantiles_follow_the_right_continuous_definition():
    # 0.1·30 = 3.0000000000000004 in floating point; inf{x : F(x) ≥ 0.1} over 0..29 is the 3rd value, 2.0.
    from controllers.agg import masked_quantiles

    x = torch.arange(30.0)[None, :]
    assert masked_quantiles(x, torch.ones_like(x), (0.1, 0.5, 0.9)) == [2.0, 14.0, 26.0]


# -- Dr. GRPO's aggregation against the engines' own formulas, written out ------------------------------
# verl 0.9.1 ``core_algos.agg_loss`` (read from its wheel) and TRL 1.16.0 ``GRPOTrainer._compute_loss``
# (loss_type="dr_grpo"). Until this test was added, entrolab returned Σ/L, B times too large.


def _verl_091(loss_mat, loss_mask, mode, loss_scale_factor=None):
    """verl 0.9.1 agg_loss with dp_size = 1 and the global batch given by this batch."""
    if mode == "token-mean":
        return (loss_mat * loss_mask).sum() / loss_mask.sum()
    if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        seq_losses = torch.sum(loss_mat * loss_mask, dim=-1)
        seq_mask = (torch.sum(loss_mask, dim=-1) > 0).float().to(loss_mat.dtype)
        loss = (seq_losses * seq_mask).sum() / seq_mask.sum()
        if mode == "seq-mean-token-sum-norm":
            loss = loss / (loss_mask.shape[-1] if loss_scale_factor is None else loss_scale_factor)
        return loss
    seq_count = torch.sum(loss_mask, dim=-1)
    seq_losses = torch.sum(loss_mat * loss_mask, dim=-1) / (seq_count + 1e-8)
    seq_mask = (seq_count > 0).to(loss_mat.dtype)
    return (seq_losses * seq_mask).sum() / seq_mask.sum()


def _trl_dr_grpo(per_token_loss, completion_mask, max_completion_length):
    """TRL 1.16.0, loss_type="dr_grpo": (per_token_loss * completion_mask).sum() /
    (per_token_loss.size(0) * max_completion_length)."""
    return (per_token_loss * completion_mask).sum() / (per_token_loss.size(0) * max_completion_length)


@given(batches(), st.sampled_from(C.AGG_MODES))
def test_agg_equals_verl_091(batch, mode):
    per = batch.entropy * 3 - 1
    if float(batch.mask.sum()) == 0:
        return  # verl divides 0 by 0 here; ours is 0 (tested above)
    ours = C.agg_loss(per, batch.mask, mode)
    # verl's seq-mean-token-mean adds 1e-8 to each token count: a relative difference of 1e-8 at most
    assert float(ours) == pytest.approx(float(_verl_091(per, batch.mask, mode)), rel=1e-7, abs=1e-12)


@given(batches(), st.integers(0, 6))
def test_dr_grpo_agg_equals_trl_and_verl_with_a_constant_length(batch, extra):
    """Every row non-empty (TRL counts every row); L = the max completion length, wider than T."""
    mask = batch.mask.clone()
    mask[:, 0] = 1.0
    per = batch.entropy * 3 - 1
    L = per.shape[1] + extra
    ours = C.agg_loss(per, mask, "seq-mean-token-sum-norm", norm_len=L)
    assert float(ours) == pytest.approx(float(_trl_dr_grpo(per, mask, L)), rel=1e-12, abs=1e-15)
    verl = _verl_091(per, mask, "seq-mean-token-sum-norm", loss_scale_factor=L)
    assert float(ours) == pytest.approx(float(verl), rel=1e-12, abs=1e-15)


def test_dr_grpo_agg_is_not_b_times_too_large():
    """The defect this pins: 16 sequences of 4 tokens of loss 1 gave 16 (Σ/L), not 1 (Σ/(B·L))."""
    per, mask = torch.ones(16, 4, dtype=torch.float64), torch.ones(16, 4, dtype=torch.float64)
    assert float(C.agg_loss(per, mask, "seq-mean-token-sum-norm")) == pytest.approx(1.0, abs=1e-15)


@given(
    st.integers(1, 40), st.integers(1, 6), st.sampled_from([torch.float64, torch.float32]), st.integers(0, 99)
)
def test_shared_mask_means_are_masked_mean_to_the_bit(B, T, dtype, seed):
    from controllers.agg import masked_mean
    from controllers.loss import _masked_cov, _masked_means

    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, T, generator=g, dtype=dtype), torch.randn(B, T, generator=g, dtype=dtype)
    m = (torch.rand(B, T, generator=g) < 0.7).to(dtype)
    mean = _masked_means(m, dtype)
    assert torch.equal(mean(x), masked_mean(x, m))
    assert torch.equal(mean(x.double()), masked_mean(x.double(), m))  # another dtype: masked_mean itself
    assert torch.equal(_masked_cov(x, y, m, mean), _masked_cov(x, y, m))


def test_derived_copies_fields_and_refuses_unknown_ones():
    b = _ok()
    d = b.derived(adv=torch.ones(2, 3))
    assert type(d) is C.TokenBatch and d.adv.sum() == 6 and d.logp is b.logp and b.adv.sum() == 0
    assert all(getattr(d, f) is getattr(b, f) for f in b.__dataclass_fields__ if f != "adv")
    with pytest.raises(ValueError, match=r"derived: unknown fields \['advantage'\]"):
        b.derived(advantage=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"logp: got \(6,\)"):
        b.derived(logp=torch.zeros(6))
