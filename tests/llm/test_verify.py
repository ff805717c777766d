"""``python -m llm.verify``: the quick tier end to end, the pairing of arms, the cell cache, the flags, and
verdicts that can go either way on numbers made to decide them."""

from __future__ import annotations

import dataclasses
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from common.verdict import FAILS, HOLDS
from llm import verify as V


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick study (every claim, 2 seeds), shared by the tests that read it."""
    root = tmp_path_factory.mktemp("llm_verify")
    out = root / "table.json"
    assert V.main(["--quick", "--cache", str(root / "cache"), "--json", str(out), "--quiet"]) == 0
    return root, json.loads(out.read_text())


def test_quick_runs_every_claim_and_writes_the_table(quick):
    _, table = quick
    ids = {r["id"] for r in table["rows"]}
    assert ids == {"M5a", "M5b", "M6a", "M6b", "M6c", "M7", "M8a", "M10", "M11a", "M11b", "M11c", "M22",
                   "LM1", "LM2", "LM3", "LM4", "LM5"}  # fmt: skip
    assert all(r["n"] == 2 and r["verdict"] in ("holds", "fails", "approximate") for r in table["rows"])
    assert table["quick"] is True and table["tier"] == "tiny"


def test_arms_of_a_seed_share_the_warm_start_and_the_first_rollout(quick):
    """Paired seeds: every arm of a seed starts from one warm start, so the first rollout (drawn before any
    update) and the held-out evaluation at step 0 are the same in every arm; another seed differs."""
    root, _ = quick
    cells = [
        json.loads(p.read_text()) for p in (root / "cache" / "quick" / "tiny" / "cells").glob("*/cell.json")
    ]
    assert len(cells) >= 2 * len(V.ARMS)
    by_seed: dict[int, set] = {}
    for c in cells:  # the first rollout's reward, and the held-out evaluation before any update
        held_out = {k: v for k, v in c["eval_first"].items() if k.startswith("eval/")}
        first = (c["series"]["reward/mean"][0], json.dumps(held_out, sort_keys=True))
        by_seed.setdefault(c["seed"], set()).add(first)
    assert all(len(v) == 1 for v in by_seed.values())
    assert by_seed[0] != by_seed[1]
    warm = {os.path.realpath(p) for p in (root / "cache" / "quick" / "tiny" / "cells").glob("*seed0*/*/sft")}
    assert len(warm) == 1


def test_finished_cells_are_reused_and_code_changes_invalidate_them(quick, monkeypatch):
    root, _ = quick
    trained = []
    st = V.Study(V.QUICK, root / "cache" / "quick", progress=trained.append)
    st.cell("grpo", 0)
    assert trained == []  # from the cache
    cfg = V.arm_config(V.QUICK, "grpo", 0, V.ARMS["grpo"])
    assert V.cell_key(cfg, "code A") != V.cell_key(cfg, "code B")
    assert V.cell_key(cfg, "code A") != V.cell_key(V.arm_config(V.QUICK, "grpo", 1, {}), "code A")


def test_an_interrupted_cell_resumes(tmp_path):
    """A cell stopped after 2 of 4 rollouts (its checkpoint at 2) finishes with the same numbers as one
    that ran through."""
    from llm.train import train

    st = V.Study(V.QUICK, tmp_path / "a")
    whole = st.cell("grpo", 0)
    st2 = V.Study(V.QUICK, tmp_path / "b")
    cfg = V.arm_config(V.QUICK, "grpo", 0, V.ARMS["grpo"])
    run_root = st2.root / "cells" / f"grpo-seed0-{V.cell_key(cfg, st2.code)}"
    sft = run_root / cfg.name / "sft"
    sft.parent.mkdir(parents=True)
    os.symlink(st2.warm(0).resolve(), sft)
    train(dataclasses.replace(cfg, out_dir=str(run_root)), progress=False, stop_after=2)
    resumed = st2.cell("grpo", 0)
    assert resumed["series"] == whole["series"] and resumed["eval_last"] == whole["eval_last"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "M99"], "error: --only: unknown claim ids ['M99']; allowed:"),
        (["--quick", "--model", "smollm2"], "error: --quick: got --model smollm2; allowed: --quick with --model tiny"),
        (["--seed", "-1"], "error: --seed: got -1; allowed: an integer >= 0"),
        (["--json", "/nonexistent/dir/x.json"], "error: --json: directory /nonexistent/dir does not exist"),
    ],
)  # fmt: skip
def test_bad_flags_stop_before_any_work(argv, message, capsys, tmp_path):
    assert V.main([*argv, "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


# -- verdicts on made-up numbers: each claim can hold and can fail ---------------------------------------------


class FakeStudy:
    """A Study whose cells are made up: ``values[arm]`` is the per-seed final held-out entropy (and
    pass@k = that number for every k)."""

    def __init__(self, values, series=None, covs=None):
        self.values, self.series, self.covs = values, series or {}, covs or {}
        self.tier = SimpleNamespace(
            setting="made up", base=SimpleNamespace(eval_samples=4), off=V.TIERS["tiny"].off,
            bonus_coefs=V.BONUS_COEFS, probe_rollouts=3,
        )  # fmt: skip

    def probe(self, seed):
        return {"cov": self.covs[seed]}

    def cell(self, arm, seed):
        v = float(self.values.get(arm, [0.5] * 8)[seed])
        last = {"eval/entropy": v, **{f"eval/pass@{k}": v for k in range(1, 5)}}
        return {"eval_last": last, "eval_first": last, "series": self.series.get((arm, seed), {})}

    def ends(self, arm, key, seeds):
        return np.array([self.cell(arm, s)["eval_last"][key] for s in seeds])


def test_m5_holds_when_nsr_keeps_more_and_fails_when_not():
    seeds = list(range(6))
    up = FakeStudy({"psr": [0.1, 0.2, 0.1, 0.2, 0.1, 0.2], "nsr": [0.9, 1.0, 0.9, 1.0, 0.9, 1.0]})
    assert [r.verdict for r in V.psr_nsr(up, seeds)] == [HOLDS, HOLDS]
    same = FakeStudy({"psr": [0.5, 0.6, 0.5, 0.6, 0.5, 0.6], "nsr": [0.6, 0.5, 0.6, 0.5, 0.6, 0.5]})
    assert [r.verdict for r in V.psr_nsr(same, seeds)] == [FAILS, FAILS]


def test_l2_holds_when_the_prediction_tracks_the_realised_change():
    rng = np.random.default_rng(0)
    seeds = list(range(4))

    def series(noise):
        pred = rng.normal(size=50)
        return {"policy/dH_pred_pg_per_lr": pred.tolist(), "policy/dH_pred_npg_per_lr": pred.tolist(),
                "policy/dH_realized": (0.01 * pred + noise * rng.normal(size=50)).tolist()}  # fmt: skip

    tracks = FakeStudy({}, {("grpo", s): series(0.001) for s in seeds})
    assert V.covariance_tracks_dh(tracks, seeds).verdict == HOLDS
    noise = FakeStudy({}, {("grpo", s): series(10.0) for s in seeds})
    assert V.covariance_tracks_dh(noise, seeds).verdict == FAILS


def test_tail_means_take_the_top_share_and_at_least_one_value():
    x = np.arange(1000.0)
    means = V.tail_means(x, (0.0002, 0.01, 0.5, 1.0))
    assert means == [999.0, float(np.mean(x[-10:])), float(np.mean(x[500:])), float(np.mean(x))]


def test_lm4_holds_for_a_heavy_tail_and_fails_for_a_normal_one():
    rng = np.random.default_rng(1)
    seeds = list(range(4))
    normal = FakeStudy({}, covs={s: rng.normal(size=5000).tolist() for s in seeds})
    row = V.heavy_tail(normal, seeds)
    assert row.verdict == FAILS and 2.7 < row.worst < 3.3  # a normal's top 2% / top 50% is 3.0
    heavy = FakeStudy({}, covs={s: (rng.standard_t(1.5, size=5000)).tolist() for s in seeds})
    assert V.heavy_tail(heavy, seeds).verdict == HOLDS


def test_lm5_holds_for_a_v_that_ends_above_its_start_and_fails_without_the_rise():
    seeds = list(range(4))
    t = np.linspace(0, 1, 60)

    def series(curve):
        out = {("grpo", s): {"policy/entropy": (1 - 0.5 * t).tolist()} for s in seeds}
        for arm in ("fork_bonus", "fork_bonus_share"):
            out |= {(arm, s): {"policy/entropy": (curve + 0.01 * s * np.sin(7 * t)).tolist()} for s in seeds}
        return out

    v_up = FakeStudy({}, series(1 - 1.6 * t + 1.8 * t**2))  # dips to about 0.64, ends at 1.2
    assert V.fork_v(v_up, seeds).verdict == HOLDS
    v_flat = FakeStudy({}, series(1 - 1.6 * t + 1.2 * t**2))  # dips, ends at 0.6: below its start
    assert V.fork_v(v_flat, seeds).verdict == FAILS
    rising = FakeStudy({}, series(1 + 0.5 * t))  # ends above its start without a dip
    assert V.fork_v(rising, seeds).verdict == FAILS
