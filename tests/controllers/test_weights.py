"""Token-weight controllers: Clip-Cov, top-entropy (80/20), STEER, off-policy mask; global selection."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from controllers.select import count_frac
from controllers.surrogates import ppo_clipped
from tests.controllers.helpers import batches, pad, run_ranks


def _adv(batch, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return batch.replace(
        adv=scale * torch.randn(batch.logp.shape, generator=g, dtype=batch.logp.dtype) * batch.mask
    )


def _valid_cov(batch):
    """Brute force in numpy: the Clip-Cov statistic over the valid tokens."""
    m = batch.mask.numpy().astype(bool)
    lp = batch.logp.detach().numpy()
    a = batch.adv.numpy()
    cov = (lp - lp[m].mean()) * (a - a[m].mean())
    return cov, m


@given(batches(max_b=10, max_t=8, off_policy=True), st.floats(0.0, 1.0), st.integers(0, 100))
def test_clip_cov_detaches_at_most_ceil_frac_n_and_only_candidates(batch, frac, seed):
    b = _adv(batch, seed)
    c = C.get("clip_cov", frac=frac, lb=-0.5, ub=2.0)
    sel = c.select(b, torch.Generator().manual_seed(seed)).numpy()
    cov, m = _valid_cov(b)
    cand = m & (cov > -0.5) & (cov < 2.0)
    assert not (sel & ~cand).any()
    n = int(m.sum())
    assert sel.sum() == min(math.ceil(frac * n - 1e-9 * max(1.0, frac * n)), int(cand.sum()))


@given(
    batches(max_b=10, max_t=8, off_policy=True),
    st.floats(0.5, 20.0),
    st.floats(0.5, 20.0),
    st.integers(0, 100),
)
def test_clip_cov_batch_mean_bounds_are_multiples_of_the_mean_cov(batch, lb, width, seed):
    """bounds="batch_mean": the candidates are exactly those of the absolute bounds lb·m, ub·m, m the batch's
    mean Cov (none when m ≤ 0); and scaling the advantages by c > 0 leaves them unchanged (the absolute
    bounds do not have this invariance)."""
    b = _adv(batch, seed)
    ub = lb + width
    rel = C.get("clip_cov", frac=1.0, lb=lb, ub=ub, bounds="batch_mean")
    cov, m = _valid_cov(b)
    mean = float(cov[m].mean()) if m.any() else 0.0
    want = m & (cov > lb * mean) & (cov < ub * mean) & (mean > 0)
    assert (rel.candidates(b).numpy() == want).all()
    # the invariance is exact in real numbers; in floats it holds where rounding cannot move a token across a
    # bound or the mean across zero (equal advantages leave a covariance of pure rounding, ~1e-17)
    c = np.asarray(cov[m], dtype=float)
    scale = float(np.abs(c).max()) if c.size else 0.0
    near = float(np.abs(np.concatenate([c - lb * mean, c - ub * mean])).min()) if c.size else math.inf
    if abs(mean) > 1e-9 * scale and near > 1e-9 * scale:
        scaled = b.replace(adv=7.5 * b.adv)
        assert (rel.candidates(scaled).numpy() == rel.candidates(b).numpy()).all()


def test_clip_cov_rejects_unknown_bounds():
    with pytest.raises(
        ValueError, match=r"clip_cov.bounds: got 'relative'; allowed: 'absolute', 'batch_mean'"
    ):
        C.get("clip_cov", bounds="relative")


@given(batches(max_b=10, max_t=8, off_policy=True), st.integers(0, 100))
def test_clip_cov_excludes_ppo_clipped_tokens_of_the_pipeline(batch, seed):
    b = _adv(batch, seed)
    pipe = C.Pipeline(
        [C.get("ppo_clip", eps_lo=0.05, eps_hi=0.05), C.get("clip_cov", frac=1.0, lb=-1e9, ub=1e9)]
    )
    clip_cov = pipe.controllers[1]
    assert (clip_cov.eps_lo, clip_cov.eps_hi) == (0.05, 0.05)  # bound from the pipeline's ppo_clip
    sel = clip_cov.select(b, torch.Generator().manual_seed(seed))
    clipped = ppo_clipped(b, 0.05, 0.05)
    assert not bool((sel & clipped).any())
    assert bool((sel | clipped | ~b.mask.bool()).all())  # frac = 1, wide bounds: every other token


@given(batches(max_b=10, max_t=8), st.integers(0, 1000))
def test_clip_cov_same_generator_seed_same_selection(batch, seed):
    b = _adv(batch)
    c = C.get("clip_cov", frac=0.3, lb=-5.0, ub=5.0)
    s1 = c.select(b, torch.Generator().manual_seed(seed))
    s2 = c.select(b, torch.Generator().manual_seed(seed))
    assert torch.equal(s1, s2)


def test_clip_cov_draw_is_uniform_over_candidates():
    """Each of the 10 equal candidates is chosen with probability 3/10 (chi-square-free check: ±5σ)."""
    logp = torch.linspace(-3, -0.1, 10, dtype=torch.float64)[None].repeat(2, 1)
    adv = torch.linspace(-1, 1, 10, dtype=torch.float64)[None].repeat(2, 1)
    b = C.TokenBatch(
        logp=logp, old_logp=logp, adv=adv, entropy=torch.zeros_like(logp), mask=torch.ones_like(logp)
    )
    c = C.get("clip_cov", frac=0.15, lb=-100.0, ub=100.0)  # ⌈0.15·20⌉ = 3 of 20 candidates
    g = torch.Generator().manual_seed(0)
    counts = sum(c.select(b, g).to(torch.float64) for _ in range(2000))
    p = 3 / 20
    sd = math.sqrt(2000 * p * (1 - p))
    assert torch.all((counts - 2000 * p).abs() < 5 * sd)


@given(batches(max_b=10, max_t=8), st.sampled_from([0.05, 0.2, 0.5, 1.0]))
def test_top_entropy_keeps_ceil_rho_n_highest(batch, rho):
    keep = C.get("top_entropy", rho=rho).keep(batch).numpy()
    m = batch.mask.numpy().astype(bool)
    ent = batch.entropy.numpy()
    k = max(1, count_frac(rho, int(m.sum())))
    assert keep.sum() == k  # random float entropies are distinct
    assert ent[keep].min() >= np.sort(ent[m])[::-1][:k].min()
    assert not (keep & ~m).any()


@given(batches(max_b=10, max_t=8), st.sampled_from([0.05, 0.2, 0.5, 0.8]))
def test_top_entropy_bottom_side_keeps_lowest_and_complements_top(batch, rho):
    m = batch.mask.numpy().astype(bool)
    ent = batch.entropy.numpy()
    n = int(m.sum())
    low = C.get("top_entropy", rho=rho, side="bottom").keep(batch).numpy()
    k = max(1, count_frac(rho, n))
    assert low.sum() == k
    assert ent[low].max() <= np.sort(ent[m])[:k].max()
    assert not (low & ~m).any()
    # metamorphic: the bottom ρ and the top 1 − ρ cover every valid token, overlapping in at most one
    high = C.get("top_entropy", rho=1 - rho, side="top").keep(batch).numpy() if rho < 1 else np.zeros_like(m)
    assert ((low | high) == m).all()
    assert (low & high).sum() <= 1


def test_top_entropy_rejects_unknown_side():
    with pytest.raises(ValueError, match="side"):
        C.get("top_entropy", side="middle")


def test_top_entropy_keeps_ties_at_threshold():
    ent = torch.tensor([[1.0, 1.0, 1.0, 0.5]], dtype=torch.float64)
    b = C.TokenBatch(logp=-ent, old_logp=-ent, adv=ent, entropy=ent, mask=torch.ones_like(ent))
    assert C.get("top_entropy", rho=0.25).keep(b).tolist() == [[True, True, True, False]]


@given(batches(max_b=8, max_t=6, off_policy=True), st.sampled_from(["exp", "linear"]))
def test_steer_weights_match_formula_and_bounds(batch, mode):
    b = _adv(batch)
    c = C.get("steer", mode=mode, w_min=0.8)
    w = c.weights(b)
    m = b.mask.bool()
    lp = b.logp.detach()
    p = lp.exp()
    omega = (b.adv / b.old_logp.exp() * p * (1 - p) * (lp + b.entropy)).abs()[m]
    hi, lo = float(omega.max()), float(omega.min())
    if mode == "exp":
        k = -math.log(0.8) / max(hi, 0.02)
        ref = torch.clamp(torch.exp(-k * omega), 0.8, 1.0)
    else:
        ref = torch.full_like(omega, 1.0) if hi == lo else 1.0 - (omega - lo) * 0.2 / (hi - lo)
    torch.testing.assert_close(w[m], ref)
    assert bool(((w >= 0.8 - 1e-12) & (w <= 1.0 + 1e-12)).all())


@given(batches(max_b=8, max_t=6, off_policy=True), st.floats(0.0, 0.5))
def test_offpolicy_mask_matches_eq9(batch, delta):
    b = _adv(batch)
    w = C.get("offpolicy_mask", delta=delta).terms(b, {}).weight
    for i in range(b.logp.shape[0]):
        mi = b.mask[i].bool()
        if not mi.any():
            continue
        kl = float((b.old_logp[i] - b.logp[i].detach())[mi].mean())
        a = float(b.adv[i][mi].mean())
        expect = 0.0 if (a < 0 and kl > delta) else 1.0
        assert bool((w[i] == expect).all())


WEIGHT_CONTROLLERS = [
    ("clip_cov", {"frac": 0.2, "lb": -1.0, "ub": 1.0}),
    ("top_entropy", {}),
    ("steer", {}),
    ("steer", {"mode": "linear"}),
    ("offpolicy_mask", {"delta": 0.05}),
    ("ppo_clip", {}),
]


@pytest.mark.parametrize(("name", "hp"), WEIGHT_CONTROLLERS)
@given(batch=batches(max_b=8, max_t=6, off_policy=True))
def test_weights_in_unit_interval(name, hp, batch):
    t = C.get(name, **hp).terms(_adv(batch), C.get(name, **hp).init(), torch.Generator().manual_seed(0))
    if t.weight is not None:
        assert bool(((t.weight >= 0) & (t.weight <= 1)).all())


SELECTORS = [
    ("clip_cov", {"frac": 0.3, "lb": -2.0, "ub": 2.0}, "weight"),
    ("top_entropy", {"rho": 0.3}, "weight"),
    ("steer", {}, "weight"),
    ("kl_cov", {"frac": 0.3}, "penalty"),
    ("sent", {"frac": 0.2, "low_entropy_frac": 0.6}, "penalty"),
]


@pytest.mark.parametrize(("name", "hp", "field"), SELECTORS)
@given(batch=batches(min_b=4, max_b=10, max_t=6, off_policy=True), data=st.data())
def test_selection_does_not_depend_on_how_ranks_split_the_batch(name, hp, field, batch, data):
    """The same tokens are selected whether the batch is whole or split over 2-3 ranks (gather hook)."""
    b = _adv(batch, seed=1)
    c = C.get(name, **hp)
    whole = getattr(c.terms(b, c.init(), torch.Generator().manual_seed(7)), field).detach()
    n = b.logp.shape[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=2)))
    parts = run_ranks(
        b,
        cuts,
        lambda chunk: getattr(c.terms(chunk, c.init(), torch.Generator().manual_seed(7)), field).detach(),
    )
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "hp", "field"), SELECTORS)
@given(batch=batches(max_b=8, max_t=5, off_policy=True), extra=st.integers(1, 3))
def test_selection_ignores_padding(name, hp, field, batch, extra):
    b = _adv(batch, seed=2)
    c = C.get(name, **hp)
    a = getattr(c.terms(b, c.init(), torch.Generator().manual_seed(3)), field).detach()
    p = getattr(c.terms(pad(b, extra), c.init(), torch.Generator().manual_seed(3)), field).detach()
    m = b.mask.bool()
    torch.testing.assert_close(p[:, : a.shape[1]][m], a[m], rtol=0, atol=1e-12)


def test_no_torch_quantile_in_controllers():
    """torch.quantile fails above 2^24 elements; every quantile here is a sort or kthvalue."""
    import ast
    import pathlib

    offenders = []
    for path in pathlib.Path(C.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("quantile", "nanquantile"):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
