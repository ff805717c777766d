"""``python -m figures.runs``: the data behind every panel is the metrics file's (a real trainer run with a
stateful controller, a real simulator run), a run in progress plots, and bad input stops in one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import theory
from figures import runs as FR


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    """A tiny trainer run: PI control (a controller state), evaluations, the realised ΔH."""
    from llm.config import PRESETS
    from llm.train import train

    root = tmp_path_factory.mktemp("trainer")
    cfg = dataclasses.replace(
        PRESETS["tiny-copy"], name="pi", out_dir=str(root), sft_steps=20, steps=5, prompts_per_step=4, group_size=4,
        max_new_tokens=5, eval_every=2, eval_prompts=4, eval_samples=4, checkpoint_every=0, tracker="none",
        controllers=("grpo", "ppo_clip", "pi_control"), hp=("pi_control.target=0.5",),
    )  # fmt: skip
    train(cfg, progress=False)
    return cfg.run_dir


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    from sim.config import SimConfig
    from sim.presets import PRESETS
    from sim.run import run

    out = tmp_path_factory.mktemp("sim") / "tree"
    cfg = dataclasses.replace(PRESETS["tree-grpo"], runs=4, steps=12)
    run(cfg, out, progress=False)
    assert isinstance(cfg, SimConfig)
    return out


def _rows(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines() if x]


def _one(data, panel, run, name):
    got = [s for s in data[panel] if s.run == run and s.name == name]
    assert len(got) == 1, (panel, name, [s.name for s in data[panel]])
    return got[0]


def test_trainer_panels_are_the_metrics_columns(trainer_run):
    rows = _rows(trainer_run)
    run = FR.load_run(trainer_run, "pi")
    assert run.kind == "trainer" and run.note == ""
    data = FR.panel_data([run])
    trained = [r for r in rows if "policy/entropy" in r]
    ent = _one(data, "entropy", "pi", "training batch")
    assert ent.y == [r["policy/entropy"] for r in trained]
    assert ent.lo == [r["policy/entropy_q10"] for r in trained] and ent.hi == [
        r["policy/entropy_q90"] for r in trained
    ]
    held = _one(data, "entropy", "pi", "held-out")
    evals = [r for r in rows if "eval/entropy" in r]
    assert (
        held.x == [r["step"] for r in evals]
        and held.y == [r["eval/entropy"] for r in evals]
        and len(evals) >= 3
    )
    assert _one(data, "reward", "pi", "reward/mean").y == [r["reward/mean"] for r in trained]
    assert _one(data, "pass_at_k", "pi", "pass@4").y == [r["eval/pass@4"] for r in evals]
    sc = _one(data, "dH_scatter", "pi", "predicted vs realised")
    paired = [r for r in rows if "policy/dH_realized" in r]
    assert sc.x == [r["policy/dH_pred_pg_per_lr"] for r in paired] and sc.y == [
        r["policy/dH_realized"] for r in paired
    ]
    assert sc.extra["corr"] == pytest.approx(np.corrcoef(sc.x, sc.y)[0, 1])
    for q in FR.QUADRANTS:
        assert _one(data, "quadrants", "pi", q).y == [r[f"policy/frac_{q}"] for r in trained]
    law = _one(data, "law", "pi", "ceiling b − a")
    assert law.y == [r["law/ceiling"] for r in rows if "law/ceiling" in r] and law.y
    states = {s.name for s in data["state"]}
    assert states and all(n.startswith("pi_control/") for n in states)
    for s in data["state"]:
        assert s.y == [r[f"state/{s.name}"] for r in rows if f"state/{s.name}" in r]


def test_sim_panels_are_means_over_runs_with_a_band(sim_run):
    rows = _rows(sim_run)
    run = FR.load_run(sim_run)
    assert run.kind == "sim"
    data = FR.panel_data([run])
    steps = sorted({r["step"] for r in rows})
    by = {s: [r for r in rows if r["step"] == s] for s in steps}
    ent = _one(data, "entropy", run.label, "entropy (exact)")
    assert ent.x == steps
    assert ent.y == pytest.approx([np.mean([r["entropy"] for r in by[s]]) for s in steps])
    assert ent.lo == pytest.approx([np.percentile([r["entropy"] for r in by[s]], 10) for s in steps])
    assert ent.hi == pytest.approx([np.percentile([r["entropy"] for r in by[s]], 90) for s in steps])
    assert _one(data, "reward", run.label, "success (exact)").y == pytest.approx(
        [np.mean([r["success"] for r in by[s]]) for s in steps]
    )
    big = max(int(k[5:]) for k in rows[0] if k.startswith("pass@"))
    assert _one(data, "pass_at_k", run.label, f"pass@{big}").y == pytest.approx(
        [np.mean([r[f"pass@{big}"] for r in by[s]]) for s in steps]
    )
    sc = _one(data, "dH_scatter", run.label, "predicted vs realised")
    assert sc.x == [r["dH_predicted"] for r in rows] and sc.y == [r["dH_realized"] for r in rows]
    h, r_ = ent.y, _one(data, "reward", run.label, "success (exact)").y
    law = _one(data, "law", run.label, "ceiling b − a")
    a, b = theory.fit_entropy_law(np.asarray(h), np.asarray(r_))
    assert law.y[-1] == pytest.approx(b - a) and law.x == steps[2:]


def test_several_runs_share_axes_and_keep_their_colour(trainer_run, sim_run, tmp_path):
    out = tmp_path / "plots"
    assert FR.main([str(trainer_run), str(sim_run), "--out-dir", str(out), "--label", "llm", "toy"]) == 0
    index = (out / "index.md").read_text()
    for panel in ("entropy", "reward", "pass_at_k", "dH_scatter", "dH_time", "quadrants", "law", "state"):
        assert (out / f"{panel}.png").stat().st_size > 1000 and f"![{panel}]({panel}.png)" in index
    payload = json.loads((out / "panels.json").read_text())
    assert {s["run"] for s in payload["entropy"]} == {"llm", "toy"}
    assert {s["run"] for s in payload["state"]} == {"llm"}  # the simulator logs no controller state here


def test_a_run_in_progress_plots_without_its_torn_line(trainer_run, tmp_path, capsys):
    import shutil

    live = tmp_path / "live"
    shutil.copytree(trainer_run, live, ignore=shutil.ignore_patterns("checkpoints", "model", "sft"))
    n = len(_rows(live))
    with (live / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 9, "policy/entr')
    run = FR.load_run(live)
    assert len(run.rows) == n and "torn last line" in run.note and "metrics.jsonl:" in run.note
    assert FR.main([str(live), "--out-dir", str(tmp_path / "o")]) == 0
    assert "note:" in capsys.readouterr().err


def test_a_bad_line_inside_the_file_is_named(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        FR.load_run(d)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/nonexistent/run"], "error: RUN: got '/nonexistent/run', which has no metrics.jsonl"),
        (["RUN", "--label", "a", "b"], "error: --label: got 2 labels for 1 runs; allowed: one per RUN"),
        (["RUN", "--out-dir", "/proc/x"], "error: --out-dir: cannot write to '/proc/x'"),
        (["RUN", "RUN"], "error: RUN: two runs are labelled alike"),
        (["EMPTY"], "error: RUN: got 'EMPTY', whose metrics.jsonl has no complete row yet"),
    ],
)  # fmt: skip
def test_bad_input_stops_in_one_line(argv, message, trainer_run, tmp_path, capsys):
    empty = tmp_path / "empty"  # a run that has not logged a step: no panel to draw
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    message = message.replace("EMPTY", str(empty))
    argv = [str(trainer_run) if a == "RUN" else str(empty) if a == "EMPTY" else a for a in argv]
    if "--out-dir" not in argv:
        argv += ["--out-dir", str(tmp_path / "o")]
    assert FR.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
