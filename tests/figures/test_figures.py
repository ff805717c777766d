"""Every figure script runs with ``quick=True`` (Agg backend, temp dir), writes its three files, and its data
pass the figure's own numeric criterion — checked against theory or against an identity, never pixels.

The criteria are on the data read back from the CSV where possible, so the file is what is tested.
"""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest

import figures
import theory
from entrolab.common.verdict import QUICK_MARK
from figures import _common as fc
from figures.__main__ import main, make_one


def made(number: int, tmp_path) -> tuple[fc.Result, dict]:
    """Make figure ``number`` (quick) in tmp_path; check the files; return (rows read back, meta)."""
    mod = figures.load(number)
    meta = make_one(number, tmp_path, quick=True, seed=0)
    stem = tmp_path / mod.__name__.split(".")[-1]
    for suffix in (".png", ".csv", ".json"):
        assert stem.with_suffix(suffix).stat().st_size > 0, suffix
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with stem.with_suffix(".csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == mod.COLUMNS
        rows = [{k: _parse(v) for k, v in r.items()} for r in reader]
    assert rows
    # a quick budget is no finding: the verdict is inconclusive and the budget is marked; the rule's own
    # verdict is kept for the figure's tests (returned as "verdict")
    assert meta["verdict"] == fc.INCONCLUSIVE and meta["budget"] == QUICK_MARK
    assert meta["finding"].startswith(QUICK_MARK.upper())
    assert meta["verdict_at_quick_budget"] in fc.VERDICTS
    assert meta["claim"] and meta["finding"]
    assert meta["settings"] == {"quick": True, "seed": 0}
    assert json.loads(stem.with_suffix(".json").read_text()) == meta
    return fc.Result(rows, meta), {**meta, "verdict": meta["verdict_at_quick_budget"]}


def _parse(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def test_every_figure_has_a_test():
    names = {f"test_fig{n:02d}" for n in figures.modules()}
    assert len(names) == 18
    missing = names - set(globals())
    assert not missing


def test_every_module_follows_the_contract():
    for n in figures.modules():
        mod = figures.load(n)
        assert mod.__doc__ and len(mod.__doc__) > 200, n  # the caption
        assert isinstance(mod.TITLE, str) and mod.TITLE
        assert callable(mod.compute) and callable(mod.plot)
        assert len(set(mod.COLUMNS)) == len(mod.COLUMNS)


# -- figure by figure ---------------------------------------------------------------------------------


def test_fig01(tmp_path):
    res, meta = made(1, tmp_path)
    slopes = figures.load(1).error_slopes(res)  # recomputed from the CSV
    assert abs(slopes["first"] - 2) <= 0.2
    assert abs(slopes["second"] - 3) <= 0.2
    assert slopes == pytest.approx(meta["slopes"], abs=1e-9)
    # at the smallest η the first-order prediction matches the exact change to O(η²)
    eta = min(res.values("eta"))
    assert np.abs(res.col("exact_dH", eta=eta) - res.col("first_order_dH", eta=eta)).max() < 10 * eta**2


def test_fig02(tmp_path):
    res, meta = made(2, tmp_path)
    u, A, bump = res.col("log_pi_plus_H"), res.col("adv"), res.col("dH_bump_per_eps")
    pi, H = res.col("pi_a"), res.col("entropy")
    assert np.allclose(u, np.log(pi) + H, atol=1e-12)
    decided = (np.abs(u) > 1e-2) & (np.abs(A) > 1e-9)
    assert (np.sign(bump) == -np.sign(A * u))[decided].all()  # Thm 1's table, for the one-arm bump
    # first order: ΔH/ε → −A·π_a(log π_a + H)
    assert np.allclose(bump, -A * pi * u, atol=1e-3)
    g, grad = res.col("g_a"), res.col("dH_grad_per_eps")
    assert np.allclose(grad, -A * g, atol=1e-3)  # the gradient step: −A·g(a) (docs/theory.md §1.3)
    assert meta["quadrant_sign"] == {
        "likely, A>0": -1,
        "likely, A<0": 1,
        "unlikely, A>0": 1,
        "unlikely, A<0": -1,
    }


def test_fig03(tmp_path):
    res, meta = made(3, tmp_path)
    ref = {"series": "reference bandit", "update": "PG"}
    assert res.col("entropy", **ref)[0] == pytest.approx(
        float(theory.entropy(np.asarray([2.0, 1.0, 0.5, -2.0])))
    )
    for key, v in meta["turns"].items():
        assert abs(v["peak_step"] - v["flip_step"]) <= 1, key
        assert v["H_peak"] > v["H0"], key
    # ΔH has the sign of −Cov on nearly every step (first order; exceptions only where Cov ≈ 0)
    assert min(meta["sign_agreement_frac"].values()) >= 0.95
    # the reference PG run is the theory trajectory: H(t+1) − H(t) ≈ −η·Cov to first order
    H, cov = res.col("entropy", **ref), res.col("cov_pg", **ref)
    assert np.corrcoef(np.diff(H), -cov[:-1])[0, 1] > 0.99


def test_fig04(tmp_path):
    res, meta = made(4, tmp_path)
    for algo, f in meta["fits"].items():
        H, R = res.col("entropy_mean", algorithm=algo), res.col("success_mean", algorithm=algo)
        assert np.allclose(
            res.col("fit_R", algorithm=algo), theory.entropy_law_predict(H, f["a"], f["b"]), atol=1e-9
        )
        assert f["ceiling"] == pytest.approx(f["b"] - f["a"])
        assert f["rmse_fit"] == pytest.approx(
            float(np.sqrt(np.mean((res.col("fit_R", algorithm=algo) - R) ** 2))), abs=1e-9
        )
        assert f["rmse_fit"] < 0.05, algo  # the in-sample law fits
    pred_ok = max(f["rmse_pred"] for f in meta["fits"].values()) <= 0.03
    assert (meta["verdict"] == fc.APPROX) == pred_ok


def test_fig05(tmp_path):
    res, meta = made(5, tmp_path)
    for env in res.values("env"):
        H, R = res.col("entropy_mean", env=env), res.col("success_mean", env=env)
        c = res.col("entropy_consumed_frac", env=env)
        assert c[0] == 0 and c[-1] == pytest.approx(1.0)
        assert np.allclose(c, (H[0] - H) / (H[0] - H[-1]))
        assert np.allclose(res.col("gain_frac", env=env), (R - R[0]) / (R[-1] - R[0]))
        at = round(figures.load(5).MARK * (len(H) - 1))
        assert meta["shares_at_mark"][env]["entropy_consumed_frac"] == pytest.approx(c[at])
        assert H[-1] < H[0] and R[-1] > R[0]  # every setting trains


def test_fig06(tmp_path):
    res, meta = made(6, tmp_path)
    for prompt in ("hard", "easy"):
        b, sur = res.col("b", prompt=prompt), res.col("surrogate_dH", prompt=prompt)
        exp, true = res.col("expected_dH", prompt=prompt), res.col("true_dH", prompt=prompt)
        assert (np.diff(sur) > 0).all()  # the surrogate is strictly increasing in b
        assert np.ptp(exp) <= 1e-9  # the expected true update does not depend on b
        assert np.abs(exp - true).max() <= 1e-9  # and equals theory.qae_true_dH
        # the surrogate meets the truth exactly at b = p_π (the gap η(b − p_π)C is linear in b)
        slope, icpt = np.polyfit(b, sur - true, 1)
        assert -icpt / slope == pytest.approx(res.col("p_pi", prompt=prompt)[0], abs=1e-9)
        # Monte-Carlo mean of the sampled draws agrees with the exact expectation
        spread = res.col("draw_q95", prompt=prompt) - res.col("draw_q05", prompt=prompt)
        assert (np.abs(res.col("draw_mean_dH", prompt=prompt) - exp) < 0.2 * spread + 1e-12).all()
    assert meta["verdict"] == fc.SURROGATE


def test_fig07(tmp_path):
    res, _meta = made(7, tmp_path)
    h0 = {s: res.col("entropy_mean", series=s, step=0)[0] for s in res.values("series")}
    assert np.ptp(list(h0.values())) < 1e-12  # same initial policy
    z = {s: np.nanmean(res.col("adv/frac_zero_mean", series=s)) for s in res.values("series")}
    assert all(0 <= v <= 1 for v in z.values())
    # a quantile baseline zeroes the advantage of every response that equals it: far more zeros than GRPO's
    assert min(v for s, v in z.items() if s.startswith("QAE")) > z["GRPO (mean)"] + 0.2


def test_fig08(tmp_path):
    res, _ = made(8, tmp_path)
    h0 = [res.select(series=s, metric="entropy", step=0)[0]["mean"] for s in res.values("series")]
    assert np.ptp(h0) < 1e-12
    for s in res.values("series"):
        p = res.col("mean", series=s, metric="pass@k")
        assert (np.diff(p) >= -1e-12).all() and (p <= 1).all()  # pass@k is non-decreasing in k
        assert res.col("k", series=s, metric="pass@k").tolist() == list(figures.load(8).PASS_K)


def test_fig09(tmp_path):
    res, meta = made(9, tmp_path)
    for step in res.values("step"):
        m = res.col("mean_cov", step=step)
        assert (np.diff(m) <= 1e-12).all()  # top-k means fall as k grows
        assert m[0] > 10 * m[-2]  # top 0.02% far above top 50%
    assert all(v >= 100 for v in meta["ratio_top002_over_all"].values())


def test_fig10(tmp_path):
    res, meta = made(10, tmp_path)
    mod = figures.load(10)
    assert set(res.values("method")) == set(mod.SWEEPS)
    for method, spec in mod.SWEEPS.items():
        assert meta["sweeps"][method]["values"] == list(spec.values)
    H = res.col("entropy_mean")
    assert ((H >= 0) & (H <= math.log(4) + 1e-9)).all()
    assert np.ptp(res.col("entropy_mean", step=0)) < 1e-12


def test_fig11(tmp_path):
    res, meta = made(11, tmp_path)
    # both knobs at 0 are plain GRPO on the same draws: the fast path (entropy_bonus, separable) and the
    # per-run path (ref_kl) must give the same trajectory
    a = res.col("entropy_mean", knob="entropy_bonus coef", value=0.0)
    b = res.col("entropy_mean", knob="ref_kl beta", value=0.0)
    assert np.allclose(a, b, atol=1e-9)
    bonus = meta["sweeps"]["entropy_bonus coef"]
    assert bonus["H_end"][-1] > bonus["H_end"][0] + 0.01  # coef 1 raises entropy


def test_fig12(tmp_path):
    res, meta = made(12, tmp_path)
    st = meta["stats"]
    for setting in figures.load(12).SETTINGS:
        # the PI loop acts: its error is smaller than GRPO's own drift from the target
        assert st[f"{setting} / PI (bonus coef)"]["abs_error"] < st[f"{setting} / GRPO"]["abs_error"]
    assert np.ptp(res.col("entropy_mean", step=0)) < 1e-12


def test_fig13(tmp_path):
    res, meta = made(13, tmp_path)
    shares = res.col("entropy_mean", panel="distribution")
    assert shares.sum() == pytest.approx(1.0)  # the two histograms share one total
    assert meta["fork_frac_of_top20"] > meta["fork_token_frac"]  # forks are the high-entropy states
    assert np.ptp(res.col("entropy_mean", panel="training", x=0.0)) < 1e-12


def test_fig14(tmp_path):
    res, _meta = made(14, tmp_path)
    for s in res.values("series"):
        e = res.select(series=s)[0]["epochs"]
        assert np.allclose(res.col("optimizer_steps", series=s), res.col("step", series=s) * e)
    end = {s: res.col("entropy_mean", series=s)[-1] for s in res.values("series")}
    assert end["PPO 8 epochs"] < end["PPO 1 epoch"]  # more epochs per rollout, faster collapse


def test_fig15(tmp_path):
    from sim.envs import make_bandit

    res, _ = made(15, tmp_path)
    # the tracked arm is the rarest correct arm of the prior: its mean log-probability at step 0
    env_seed, _ = fc.seeds(0, 2)
    spec = make_bandit(n_prompts=32, n_arms=16, correct_frac=0.25, prior_scale=2.0, seed=env_seed)
    lp = theory.log_softmax(spec.prior)
    rare = np.where(spec.rewards > 0, spec.prior, np.inf).argmin(-1)
    expected = float(lp[np.arange(32), rare].mean())
    for s in res.values("series"):
        assert res.select(series=s, metric="log_p_rare_correct")[0]["mean"] == pytest.approx(
            expected, abs=1e-9
        )
        p = res.col("mean", series=s, metric="pass@k")
        assert (np.diff(p) >= -1e-12).all()


def test_fig16(tmp_path):
    res, _ = made(16, tmp_path)
    assert np.ptp(res.col("entropy_mean", step=0)) < 1e-12
    dH = res.col("dH_predicted_mean")
    assert np.isfinite(dH).all() and np.abs(dH).max() < 1.0


# -- the command ----------------------------------------------------------------------------------------


def test_fig18(tmp_path):
    """Every cell is the committed data's: the tabular verdict is figure 17's calibrated tabular row, the
    shared-parameter count is its other classes', and each language-model cell is its tier's JSON row."""
    mod = figures.load(18)
    res, meta = made(18, tmp_path)
    assert set(res.values("regime")) == set(mod.REGIMES) and res.values("claim_id") == list(mod.CLAIMS)
    with mod.MATRIX.open() as fh:
        matrix = [r for r in csv.DictReader(fh) if r["eta"] == "calibrated" and r["verdict"] != "n/a"]
    for r in res.select(regime="tabular"):
        want = [m["verdict"] for m in matrix if m["claim_id"] == r["claim_id"] and m["policy"] == "tabular"]
        assert [r["verdict"]] == want or (not want and r["verdict"] == "n/a"), r["claim_id"]
    for r in res.select(regime="shared parameters"):
        shared = [m for m in matrix if m["claim_id"] == r["claim_id"] and m["policy"] != "tabular"]
        if shared:
            assert (r["verdict"], r["worst"]) == mod.majority([m["verdict"] for m in shared])
    for regime, path in mod.LLM.items():
        cells = res.select(regime=regime)
        if not path.is_file():
            assert all(c["verdict"] == "n/a" for c in cells)
            continue
        rows = {x["id"]: x for x in json.loads(path.read_text())["rows"]}
        for c in cells:
            assert c["verdict"] == rows[c["claim_id"]]["verdict"] if c["claim_id"] in rows else "n/a"
    assert meta["inputs"]


def test_fig18_majority_of_the_shared_classes():
    """A shared-parameter cell takes the verdict more than half of the classes share, else inconclusive."""
    mod = figures.load(18)
    H, A, F, I = fc.HOLDS, fc.APPROX, fc.FAILS, fc.INCONCLUSIVE
    assert mod.majority([H, H, A, F, I]) == (H, 3)
    assert mod.majority([A, A, H, I, I]) == (A, 3)
    assert mod.majority([F, F, F, H, I]) == (F, 3)
    assert mod.majority([H, H, F, F, I]) == (I, 2)
    assert mod.majority([I, I, I, H, F]) == (I, 3)


def test_cli_subset_index_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    docs = tmp_path / "docs"
    assert main(["1", "6", "--quick", "--out-dir", str(out), "--docs", str(docs)]) == 0
    index = (out / "index.md").read_text()
    assert "## Figure 1" in index and "## Figure 6" in index and "## Figure 2" not in index
    assert (docs / "fig06_qae_prop42.png").exists() and (docs / "index.md").exists()
    mtime = (out / "fig01_lemma1.png").stat().st_mtime_ns
    assert main(["1", "--quick", "--out-dir", str(out)]) == 0  # done already: not recomputed
    assert (out / "fig01_lemma1.png").stat().st_mtime_ns == mtime
    assert "## Figure 6" in (out / "index.md").read_text()  # the gallery keeps what is in --out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["1", "--seed", "-1"], "error: --seed: got -1; allowed: an integer >= 0"),
        (
            ["1", "--out-dir", "/proc/entrolab"],
            "error: --out-dir: got '/proc/entrolab', which cannot be written (",
        ),
        (["1", "--docs", "/proc/entrolab"], "error: --docs: got '/proc/entrolab', which cannot be written ("),
    ],
)
def test_cli_bad_flags_are_one_line_before_work(argv, message, capsys, monkeypatch, tmp_path):
    made_any = []
    monkeypatch.setattr(sys.modules["figures.__main__"], "make_one", lambda *a, **k: made_any.append(a))
    assert main([*argv, *([] if "--out-dir" in argv else ["--out-dir", str(tmp_path)])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert made_any == []


def test_cli_rejects_unknown_figure(capsys):
    with pytest.raises(SystemExit):
        main(["99", "--out-dir", "/nonexistent"])
    assert "numbers: got [99]" in capsys.readouterr().err


def test_load_rejects_unknown_number():
    with pytest.raises(ValueError, match="figure: got 0"):
        figures.load(0)


def test_check_result_names_what_is_wrong():
    with pytest.raises(ValueError, match="verdict"):
        fc.check_result(
            fc.Result([{"a": 1}], {"claim": "c", "verdict": "maybe", "finding": "f"}), ("a",), "x"
        )
    with pytest.raises(ValueError, match="columns"):
        fc.check_result(
            fc.Result([{"b": 1}], {"claim": "c", "verdict": fc.HOLDS, "finding": "f"}), ("a",), "x"
        )
    assert sys.modules["matplotlib"].get_backend().lower() == "agg"


def test_fig17(tmp_path):
    """The quick matrix (M5 on two classes): the tabular cell is exactly the plain ``sim verify`` row."""
    from sim import verify

    res, meta = made(17, tmp_path)
    assert res.values("policy") == ["tabular", "loglinear-structured"]
    assert res.values("eta") == ["same", "calibrated"] and res.values("claim_id") == ["M5a", "M5b"]
    assert all(v in fc.VERDICTS for v in res.values("verdict"))
    plain = verify.run_all(seed=0, only=["M5"])
    for eta in ("same", "calibrated"):  # ρ = 1 for tabular: both tabular cells are the plain rows
        for p, tab in zip(plain, res.select(policy="tabular", eta=eta), strict=True):
            assert tab["verdict"] == p.verdict and tab["worst"] == pytest.approx(p.worst)
            assert tab["spread"] == pytest.approx(p.spread)
    (shared,) = res.select(policy="loglinear-structured", eta="calibrated", claim_id="M5a")
    assert shared["lr_gain_lo"] > 1 and meta["lr_gain"]["tabular"] == [1.0, 1.0]
    assert set(meta["passk"]["calibrated"]) == {"tabular", "loglinear-structured"}
    assert meta["passk"]["same"]["tabular"]["k"][-1] == 256
    cal = [r for r in res.rows if r["eta"] == "calibrated"]
    held = {fc.HOLDS, fc.APPROX}
    # a change of verdict is a finding each way: holds on one class, fails on another
    changed = any(
        {r["verdict"] in held for r in cal if r["claim_id"] == c and r["verdict"] in (*held, fc.FAILS)}
        == {True, False}
        for c in ("M5a", "M5b")
    )
    assert meta["verdict"] == (fc.HOLDS if changed else fc.FAILS)


def test_slow_figures_are_skipped_by_default_and_keep_their_docs_copy(tmp_path, monkeypatch):
    real = figures.modules()
    monkeypatch.setattr(figures, "modules", lambda: {1: real[1], 17: real[17]})
    out, docs = tmp_path / "out", tmp_path / "docs"
    docs.mkdir()
    stem = docs / real[17]
    stem.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n")
    stem.with_suffix(".csv").write_text("claim_id,policy,verdict,worst,measured\n")
    meta = {"title": "m", "verdict": "holds", "claim": "c", "finding": "f", "code": "old",
            "settings": {"quick": False, "seed": 0}}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["--quick", "--out-dir", str(out), "--docs", str(docs)]) == 0
    index = (out / "index.md").read_text()
    assert "## Figure 1" in index and "## Figure 17" in index  # 17 not recomputed, its copy kept
    assert "| 17 | [m](#figure-17) | holds (earlier code: rerun) |" in index
    assert json.loads((out / f"{real[17]}.json").read_text())["code"] == "old"


def test_regenerating_a_figure_leaves_the_committed_files_unchanged(tmp_path):
    """The files --docs receives (PNG, CSV, JSON, the gallery) are the same bytes when the same code makes the
    figure again: no wall time or date in them (wall times go to --out's seconds.json, never committed)."""
    out, docs = tmp_path / "out", tmp_path / "docs"

    def make() -> dict[str, bytes]:
        assert main(["1", "2", "--out-dir", str(out), "--docs", str(docs), "--force"]) == 0
        return {f.name: f.read_bytes() for f in sorted(docs.iterdir())}

    first = make()
    assert set(first) == {f"{figures.modules()[n]}{s}" for n in (1, 2) for s in (".png", ".csv", ".json")} | {
        "index.md"
    }
    seconds = json.loads((out / "seconds.json").read_text())
    assert set(seconds) == {"1", "2"} and all(v >= 0 for v in seconds.values())
    assert make() == first
