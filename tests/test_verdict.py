"""``entrolab.common.verdict``'s three-way rule for comparisons over seeds: exact identities against scipy's t
interval, metamorphic relations (mirror, shift), bounds of each outcome, the seed count that decides, and
the errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from entrolab.common.verdict import (
    ALPHA,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    MIN_SEEDS,
    UNTESTABLE,
    combine,
    judge,
    seeds_to_decide,
    sweep,
    sweep_verdict,
    t_interval,
    untestable,
)

values = st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=20)
offsets = st.floats(-5, 5, allow_nan=False)


def test_each_outcome_of_greater():
    up = np.array([1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.8, 1.05])
    assert judge(up, what="x").verdict == HOLDS
    assert judge(-up, what="x").verdict == FAILS
    noisy = np.array([0.3, -0.2, 0.4, -0.1, 0.2, -0.3, 0.25, 0.0])
    j = judge(noisy, what="x")
    assert j.verdict == INCONCLUSIVE and j.seeds_needed and j.seeds_needed > len(noisy)
    assert judge(up[:4], what="x").verdict == INCONCLUSIVE  # below MIN_SEEDS, whatever the numbers
    # a positive effect below the smallest effect the claim means: the equivalence side fails it
    small = 0.01 + 0.001 * np.arange(8)
    assert judge(small, what="x", bar=0.5).verdict == FAILS
    assert judge(small, what="x", bar=0.0).verdict == HOLDS


def test_each_outcome_of_equivalent_and_less():
    near = np.array([0.01, -0.01, 0.02, 0.0, 0.01, -0.02, 0.0, 0.01])
    assert judge(near, what="x", kind="equivalent", margin=0.1).verdict == HOLDS
    assert judge(near + 1, what="x", kind="equivalent", margin=0.1).verdict == FAILS
    assert judge(near * 20, what="x", kind="equivalent", margin=0.1).verdict == INCONCLUSIVE
    rmse = np.array([0.01, 0.012, 0.011, 0.009, 0.01, 0.013])
    assert judge(rmse, what="x", kind="less", bar=0.03, null=0.03).verdict == HOLDS
    assert judge(rmse + 0.1, what="x", kind="less", bar=0.03, null=0.03).verdict == FAILS


def test_sweeps_and_combinations():
    base = np.zeros(8)
    rising = [base, base + 1 + 0.01 * np.arange(8), base + 2 + 0.02 * np.arange(8)]
    assert sweep_verdict(sweep(rising, ["a", "b", "c"], what="H")) == HOLDS
    reversal = [base, base + 2 + 0.01 * np.arange(8), base + 1 + 0.02 * np.arange(8)]  # up, then down
    assert sweep_verdict(sweep(reversal, ["a", "b", "c"], what="H")) == FAILS
    flat = [base + 0.1 * np.sin(np.arange(8) + i) for i in range(3)]
    assert sweep_verdict(sweep(flat, ["a", "b", "c"], what="H")) == INCONCLUSIVE
    h, f, i, u = (judge(x, what="x") for x in (rising[1], -rising[1], flat[1] - flat[0], rising[1]))
    assert combine([h, u]) == HOLDS and combine([h, i]) == INCONCLUSIVE and combine([h, i, f]) == FAILS
    assert combine([h, f, untestable("x", "why")]) == UNTESTABLE
    assert untestable("x", "no group splits").text() == "x: untestable here (no group splits)"


@settings(max_examples=200)
@given(values, st.floats(0.01, 0.3))
def test_interval_is_scipys_t_interval(x, alpha):
    m, lo, hi, n = t_interval(x, alpha)
    x = np.asarray(x)
    assert n == len(x) and m == pytest.approx(x.mean())
    if np.std(x) > 0:
        ref = stats.t.interval(1 - 2 * alpha, n - 1, loc=x.mean(), scale=stats.sem(x))
        assert (lo, hi) == pytest.approx(ref, rel=1e-9, abs=1e-9)


@settings(max_examples=200)
@given(values, st.floats(0, 3), offsets)
def test_mirror_and_shift_keep_the_verdict(x, bar, c):
    x = np.asarray(x)
    g = judge(x, what="x", bar=bar)
    mirrored = judge(-x, what="x", kind="less", bar=-bar)
    assert mirrored.verdict == g.verdict and mirrored.estimate == pytest.approx(-g.estimate)
    shifted = judge(x + c, what="x", bar=bar + c, null=c)
    assert (
        shifted.verdict == g.verdict
        or math.isclose(g.lo, 0, abs_tol=1e-9)
        or math.isclose(g.hi, bar, abs_tol=1e-9)
    )


@settings(max_examples=300)
@given(values, st.floats(0, 3), st.sampled_from(["greater", "less", "equivalent"]))
def test_each_verdict_stays_inside_its_bounds(x, bar, kind):
    kw = {"margin": bar + 0.1} if kind == "equivalent" else {"bar": bar if kind == "greater" else -bar}
    j = judge(np.asarray(x), what="x", kind=kind, **kw)
    assert j.verdict in (HOLDS, FAILS, INCONCLUSIVE)
    if j.n < MIN_SEEDS:
        assert j.verdict == INCONCLUSIVE
    if j.verdict == HOLDS and kind == "greater":
        assert j.estimate >= j.bar and j.lo > j.null
    if j.verdict == FAILS and kind == "greater":
        assert j.hi < j.bar
    if j.verdict == HOLDS and kind == "equivalent":
        assert -j.margin < j.lo <= j.hi < j.margin
    if j.verdict == INCONCLUSIVE and j.seeds_needed is not None:
        assert j.seeds_needed > j.n or j.n < MIN_SEEDS


@settings(max_examples=100)
@given(st.floats(-2, 2), st.floats(0.05, 3), st.floats(0, 1), st.integers(2, 30))
def test_the_seeds_needed_are_the_fewest_that_decide(m, sd, bar, n_from):
    n = seeds_to_decide("greater", m, sd, bar, 0.0, 0.0, ALPHA, n_from)
    if n is None:
        return
    assert n >= max(2, n_from)
    half = stats.t.ppf(1 - ALPHA, n - 1) * sd / math.sqrt(n)
    assert (m >= bar and m - half > 0) or m + half < bar  # decided at n
    if n - 1 >= max(2, n_from):
        half = stats.t.ppf(1 - ALPHA, n - 2) * sd / math.sqrt(n - 1)
        assert not ((m >= bar and m - half > 0) or m + half < bar)  # and not one seed earlier


def test_a_judged_sample_of_the_predicted_size_decides():
    """Metamorphic: a sample with the observed mean and spread, at the size seeds_needed names, is decided."""
    x = np.array([0.3, -0.2, 0.4, -0.1, 0.2, -0.3, 0.25, 0.05])
    j = judge(x, what="x")
    n = j.seeds_needed
    z = stats.norm.ppf((np.arange(n) + 0.5) / n)
    y = x.mean() + np.std(x, ddof=1) * (z - z.mean()) / np.std(z, ddof=1)
    assert judge(y, what="x").verdict != INCONCLUSIVE


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"kind": "more"}, "kind: got 'more'; allowed: greater, less, equivalent"),
        ({"bar": -1.0}, "bar: got -1.0; allowed: a value on the claimed side of null = 0.0"),
        ({"kind": "equivalent"}, "margin: got 0.0; allowed: a number > 0 for kind 'equivalent'"),
        ({"alpha": 0.7}, "alpha: got 0.7; allowed: 0 < alpha < 0.5"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(kw, message):
    with pytest.raises(ValueError) as e:
        judge(np.ones(6), what="x", **kw)
    assert str(e.value) == message


def test_the_committed_json_holds_no_wall_time():
    """run_all records each check's seconds for the console; to_json leaves them out, so the same code and
    seed write the same file however long the checks took."""
    from entrolab.common.verdict import Row, run_all, to_json

    def check(rng):
        return Row("X1", "c", "s", "set", 1, "m", float(rng.random()), 1.0, "holds", details={"k": 1})

    one, two = run_all({"X1": check}, seed=3), run_all({"X1": check}, seed=3)
    one[0].details["seconds"], two[0].details["seconds"] = 0.5, 9.0
    assert to_json(one, 3) == to_json(two, 3)
    assert '"k": 1' in to_json(one, 3) and "seconds" not in to_json(one, 3)


def test_a_checks_seed_comes_from_its_id_not_its_position():
    from entrolab.common.verdict import Row, run_all

    def check(rid):
        return lambda rng: Row(rid, "c", "s", "set", 1, "m", float(rng.random()), 1.0, "holds")

    ab = {r.id: r.worst for r in run_all({"A1": check("A1"), "B1": check("B1")}, seed=5)}
    ba = {r.id: r.worst for r in run_all({"C1": check("C1"), "B1": check("B1"), "A1": check("A1")}, seed=5)}
    assert ab["A1"] == ba["A1"] and ab["B1"] == ba["B1"]  # registration order and other checks do not matter
    assert ab["A1"] != ab["B1"]  # ids give different streams
    other = {r.id: r.worst for r in run_all({"A1": check("A1")}, seed=6)}
    assert other["A1"] != ab["A1"]  # and so does the root seed
