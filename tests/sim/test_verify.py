"""``python -m sim verify``: cheap rows run for real, the table and JSON, and a must-hold row that fails
when the simulator's step is wrong."""

import dataclasses
import json

import numpy as np
import pytest

import theory
from entrolab.common.verdict import Registry, Row
from sim import matrix, verify
from sim.__main__ import main
from sim.checks import _base, kernel, steps
from sim.run import SimConfig, Simulator


def test_cheap_rows_hold_and_write_json(tmp_path, capsys):
    out = tmp_path / "sim.json"
    assert main(["verify", "--only", "M1", "M4", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "M1    holds" in text and "M4    holds" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["id"] for r in rows] == ["M1", "M4"]
    assert all(r["ok"] and r["verdict"] == "holds" for r in rows)
    assert rows[0]["worst"] < 1e-12
    assert rows[0]["spread"] is None  # an identity's worst case has no spread; strict JSON (no NaN)


def test_sampled_baseline_identity_row():
    (row,) = verify.run_all(only=["M3"])
    assert row.verdict == "holds" and row.worst < 1e-9
    assert 0.2 < row.details["p_sum_g_nonneg"] < 0.8


def test_a_wrong_step_fails_a_must_hold_row(monkeypatch, capsys):
    """M1 compares with theory.pg_dz: a theory step off by a factor makes the row fail and verify exit 1."""
    monkeypatch.setattr(theory, "pg_dz", lambda z, r, lr: 1.01 * theory.dynamics.pg_dz(z, r, lr))
    assert main(["verify", "--only", "M1", "--quiet"]) == 1
    assert "MUST HOLD" in capsys.readouterr().out


def test_lemma1_row_on_every_family_is_first_order():
    (row,) = verify.run_all(only=["M2"])
    assert row.verdict == "holds"
    cases = {f"{f}/{u}" for f in steps.FAMILIES for u in ("exact_pg", "exact_npg", "grpo")}
    assert set(row.details) - {"seconds"} == cases
    for meds in (row.details[c] for c in cases):  # the gap falls ten-fold per decade of η
        ratios = np.asarray(meds[:-1]) / np.asarray(meds[1:])
        assert np.all((ratios > 5) & (ratios < 20))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["verify", "--only", "M99"], "--only: unknown row ids ['M99']"),
        (["verify", "--json", "/no/such/dir/x.json"], "--json: directory /no/such/dir does not exist"),
    ],
)
def test_verify_bad_input(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_versus_rows_hold_on_a_paired_gain_on_both_environments_and_fail_on_a_loss():
    rng = np.random.default_rng(0)

    def traj(level, noise):
        e = level + noise * rng.standard_normal(16)
        return {"entropy": np.stack([e, e]), "success": np.stack([e, e])}

    base = traj(1.0, 0.0)
    up = {"bandit": {"m": traj(1.5, 0.01), "b": base}, "token_tree": {"m": traj(1.2, 0.01), "b": base}}
    row = _base._versus_row("X", "c", "s", up, "m", "b", "entropy")
    assert row.verdict == "holds" and row.worst == pytest.approx(0.2, abs=0.02)
    # no effect on one environment: the comparison there is undecided, and so is the claim
    flat = {"bandit": up["bandit"], "token_tree": {"m": traj(1.0, 0.0) | {"entropy": base["entropy"] + 0.01 * (-1.0) ** np.arange(16)}, "b": base}}  # fmt: skip
    assert _base._versus_row("X", "c", "s", flat, "m", "b", "entropy").verdict == "inconclusive"
    down = _base._versus_row("X", "c", "s", up, "m", "b", "entropy", sign=-1)
    assert down.verdict == "fails" and [t["verdict"] for t in down.tests] == ["fails", "fails"]
    assert {"M13", "M14", "M15", "M16", "M17", "M18", "M19", "M20"} <= set(verify.CHECKS)


def test_kernel_row_holds_on_every_policy_class_and_fails_for_a_wrong_kernel(monkeypatch):
    (row,) = verify.run_all(only=["M21"])
    assert row.verdict == "holds" and row.must_hold
    assert set(row.details) - {"seconds"} == set(kernel.KERNEL_CLASSES)
    assert row.details["tabular"]["cross_share"] == 0.0
    assert all(0 < row.details[k]["cross_share"] < 1 for k in kernel.KERNEL_CLASSES if k != "tabular")
    real = theory.kernel_dH_split
    monkeypatch.setattr(theory, "kernel_dH_split", lambda *a: tuple(1.05 * x for x in real(*a)))
    (bad,) = verify.run_all(only=["M21"])
    assert bad.verdict == "fails"


def test_matrix_cells_json_and_classes_that_do_not_fit(tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(
        [
            "verify",
            "--matrix",
            "--only",
            "M5",
            "--policies",
            "tabular",
            "transformer",
            "--json",
            str(out),
            "--cache",
            str(tmp_path / "cells"),
            "--quiet",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == [
        "M5-tabular-same-seed0.json", "M5-transformer-same-seed0.json",
    ]  # fmt: skip
    text = capsys.readouterr().out
    assert "M5a" in text and "—" in text and "M5a/transformer: policy: got 'transformer' on bandit" in text
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert payload["calibrate_lr"] is False
    assert [(r["claim_id"], r["policy"]) for r in rows] == [
        ("M5a", "tabular"), ("M5b", "tabular"), ("M5a", "transformer"), ("M5b", "transformer"),
    ]  # fmt: skip
    plain = verify.run_all(only=["M5"])
    for r, p in zip(rows, plain, strict=False):
        assert r["verdict"] == p.verdict and r["worst"] == pytest.approx(p.worst)
        assert r["spread"] == pytest.approx(p.spread) and r["spread"] > 0 and r["lr_gain"] is None
        assert f"{p.worst:+.3g} ± {p.spread:.2g}" in text  # the cell: the number ± its spread
    assert len(plain[1].details["pass_ks"]) == 9 and plain[1].details["pass_ks"][-1] == 256
    assert rows[2]["verdict"] is None and rows[2]["policy_class"] == "transformer"
    with pytest.raises(ValueError, match=r"^matrix: unknown \['cnn'\]"):
        matrix.run_matrix(claims=("M5",), policy_labels=["cnn"])
    with pytest.raises(ValueError, match=r"^matrix: \['M1'\] do not run on shared parameters"):
        matrix.run_matrix(claims=("M1",), policy_labels=["tabular"])


def _tiny_registry(body):
    """A registry with one shared check ``MX`` whose body is ``body(rng, ctx)``."""
    reg = Registry("test")
    reg.register("MX", shared=True)(body)
    return reg


TINY = SimConfig(
    env="token_tree", env_kwargs={**_base.TREE, "seed": 3}, update="grpo", runs=2, steps=2, lr=1.0
)


def _tiny_row(h, **kw):
    return Row(id="MX", claim="c", source="s", setting="x", n=2, measured="m", worst=float(h.mean()),
               tolerance=0.0, verdict="holds", must_hold=False, spread=_base._se(h), **kw)  # fmt: skip


def test_calibrated_matrix_runs_each_class_at_lr_over_its_kernel_gain(capsys):
    """A one-config check in the matrix: with calibration each class's cell records the ρ its simulator
    computed (1 for tabular) and the table says so; without it no gain is recorded."""
    reg = _tiny_registry(lambda rng, ctx: _tiny_row(ctx.trajectory(TINY)["entropy"][-1]))
    labels = ["tabular", "loglinear-structured", "mlp"]
    cal = matrix.run_matrix(claims=("MX",), policy_labels=labels, calibrate_lr=True, registry=reg)
    plain = matrix.run_matrix(claims=("MX",), policy_labels=labels, registry=reg)
    for c, p in zip(cal, plain, strict=True):
        pol, kw = matrix.MATRIX_POLICIES[c.policy]
        rho = Simulator(dataclasses.replace(TINY, policy=pol, policy_kwargs=kw, calibrate_lr=True)).lr_gain
        assert c.lr_gain == (rho, rho) and p.lr_gain == ()
        assert (c.row.worst == p.row.worst) == (c.policy == "tabular")
    assert cal[0].lr_gain == (1.0, 1.0) and cal[2].lr_gain[0] > 1
    text = matrix.format_matrix(cal)
    assert "step sizes calibrated" in text and "mlp " + f"{cal[2].lr_gain[0]:.3g}" in text
    assert json.loads(matrix.matrix_json(cal, 0, calibrate_lr=True))["rows"][2]["lr_gain"] == list(
        cal[2].lr_gain
    )
    assert main(["verify", "--calibrate-lr", "--quiet"]) == 2
    assert "--calibrate-lr: allowed only with --matrix" in capsys.readouterr().err


def test_matrix_cells_are_saved_and_an_interrupted_matrix_resumes(monkeypatch, tmp_path):
    calls: list[str] = []

    def tiny(rng, ctx):
        t = ctx.trajectory(TINY)
        calls.append(ctx.policy)
        if ctx.policy == "tabular" and len(calls) == 2 and interrupt:  # mlp ran first: the costlier class
            raise KeyboardInterrupt
        h = t["entropy"][-1]
        return _tiny_row(h, details={"h": list(h)})

    reg = _tiny_registry(tiny)
    run = lambda **kw: matrix.run_matrix(claims=("MX",), policy_labels=labels, registry=reg, **kw)  # noqa: E731
    labels, cache = ["tabular", "mlp"], tmp_path / "cells"
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run(calibrate_lr=True, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == ["MX-mlp-calibrated-seed0.json"]  # the finished cell only
    interrupt = False
    first = run(calibrate_lr=True, cache_dir=cache)
    assert calls == ["mlp", "tabular", "tabular"]  # resumed: the mlp cell was read back
    again = run(calibrate_lr=True, cache_dir=cache)
    assert len(calls) == 3 and again == first  # every field read back the same (spread, lr_gain, details)
    plain = run(calibrate_lr=True)
    assert [c.row.worst for c in plain] == [c.row.worst for c in first] and len(calls) == 5
    run(calibrate_lr=False, cache_dir=cache)
    assert len(calls) == 7  # another step-size rule: other cells
    monkeypatch.setattr(matrix, "code_fingerprint", lambda: "other code")
    run(calibrate_lr=True, cache_dir=cache)
    assert len(calls) == 9  # saved by other code: recomputed


def test_the_matrix_hands_out_the_cells_that_took_longest_first(monkeypatch, tmp_path):
    """Each saved cell records its seconds; a later matrix (even with other code) starts with the cells
    that took longest, where they cannot set the tail, and returns its cells in the same order as ever."""
    calls: list[str] = []

    def tiny(rng, ctx):
        calls.append(ctx.policy)
        return _tiny_row(ctx.trajectory(TINY)["entropy"][-1])

    reg = _tiny_registry(tiny)
    labels, cache = ["tabular", "loglinear", "mlp"], tmp_path / "cells"
    first = matrix.run_matrix(claims=("MX",), policy_labels=labels, registry=reg, cache_dir=cache)
    assert calls == ["mlp", "loglinear", "tabular"]  # nothing timed yet: the costliest class first
    for label, seconds in (("tabular", 1.0), ("loglinear", None), ("mlp", 9.0)):
        f = cache / f"MX-{label}-same-seed0.json"
        assert isinstance(json.loads(f.read_text())["seconds"], float)
        f.write_text(json.dumps({**json.loads(f.read_text()), "seconds": seconds}))
    monkeypatch.setattr(matrix, "code_fingerprint", lambda: "other code")
    calls.clear()
    again = matrix.run_matrix(claims=("MX",), policy_labels=labels, registry=reg, cache_dir=cache)
    assert calls == ["loglinear", "mlp", "tabular"]  # never timed first, then the longest
    assert [(c.policy, c.row.worst) for c in again] == [(c.policy, c.row.worst) for c in first]


def test_a_shared_check_that_ignores_its_context_fails_instead_of_running_tabular():
    """The matrix passes each check an explicit context; a check registered shared=True that builds its
    simulators without it would silently give tabular cells, so the matrix stops."""
    reg = _tiny_registry(lambda rng, ctx: _tiny_row(_base.trajectory(TINY)["entropy"][-1]))
    with pytest.raises(
        RuntimeError, match="MX is registered shared=True but ran no simulator through its context"
    ):
        matrix.run_matrix(claims=("MX",), policy_labels=["mlp"], registry=reg)


def test_checks_are_registered_in_row_order():
    """run_all seeds each check by its position; the topics are imported so that M1..M22 come in order."""
    numbers = [int(rid[1:]) for rid in verify.CHECKS]
    assert numbers == sorted(numbers) and numbers[0] == 1 and len(set(numbers)) == len(numbers)
    assert set(matrix.matrix_claims()) <= {
        r for r, c in verify.REGISTRY.checks.items() if c.flags.get("shared")
    }


def test_shared_checks_reach_the_simulator_only_through_their_context():
    """Static: inside a check registered shared=True, no bare trajectory(...), Simulator(...) or
    SimConfig-to-simulator call bypasses the context (ctx.trajectory, _versus(rng, ctx, ...))."""
    import ast
    import inspect
    import textwrap

    for rid, c in verify.REGISTRY.checks.items():
        if not c.flags.get("shared"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(c.fn)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("trajectory", "Simulator"), f"{rid} calls {node.func.id} directly"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--seed", "-1"], "error: --seed: got -1; allowed: an integer >= 0"),
        (["verify", "--json", "/proc/x.json"], "error: --json: cannot write in /proc ("),
        (["verify", "--workers", "0"], "error: --workers: got 0; allowed: an integer >= 1"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_before_work(argv, message, capsys):
    from sim.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "checking" not in err


def _without_seconds(rows) -> list[str]:
    out = []
    for r in rows:
        d = dataclasses.asdict(r)
        d["details"] = {k: v for k, v in d["details"].items() if k != "seconds"}
        out.append(repr(d))
    return out


def test_checks_on_worker_processes_give_the_same_rows():
    """Each check has its own seed: run on two processes (one thread each) its rows are the same, in order."""
    from sim import verify

    only = ["M1", "M3", "M4", "M21"]
    one = verify.run_all(only=only)
    seen = []
    two = verify.run_all(only=only, workers=2, progress=seen.append)
    assert _without_seconds(two) == _without_seconds(one)
    assert sorted(seen) == sorted(f"{rid} done" for rid in only)


def test_matrix_cells_on_worker_processes_are_the_same(tmp_path):
    labels = ["tabular", "loglinear"]
    one = matrix.run_matrix(claims=("M10",), policy_labels=labels)
    two = matrix.run_matrix(claims=("M10",), policy_labels=labels, workers=2, cache_dir=tmp_path)
    assert [c.claim_id + c.policy for c in two] == [c.claim_id + c.policy for c in one]
    assert _without_seconds([c.row for c in two]) == _without_seconds([c.row for c in one])
    assert len(list(tmp_path.glob("*.json"))) == len(labels)  # each cell saved as it finished
    with pytest.raises(ValueError, match="workers: got 0; allowed: an integer >= 1"):
        matrix.run_matrix(claims=("M10",), policy_labels=labels, workers=0)
