"""Trackers: every tracker accelerate supports is accepted when its package is installed and refused before
any work, naming the package, when it is not; the simulator mirrors its metrics to one (the trainer's
logging to TensorBoard is tested in tests/llm/test_train.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from entrolab.common import trackers


def _missing() -> str:
    gone = [t for t in trackers.PACKAGES if not trackers.installed(t)]
    if not gone:
        pytest.skip("every tracker package is installed here")
    return gone[0]


def test_names_aliases_and_auto(monkeypatch):
    assert trackers.resolve("comet") == "comet_ml" and trackers.resolve("none") == "none"
    assert set(trackers.PACKAGES) >= {
        "tensorboard",
        "wandb",
        "mlflow",
        "trackio",
        "comet_ml",
        "aim",
        "clearml",
    }
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    assert trackers.resolve("auto") == "none"
    assert trackers.problem("auto") is None


def test_unknown_and_missing_trackers_are_refused_in_one_line():
    assert trackers.problem("nosuch").startswith("got 'nosuch'; allowed: auto, none, tensorboard, wandb")
    name = _missing()
    why = trackers.problem(name)
    pkg = trackers.PACKAGES[name]
    assert why.startswith(f"got {name!r}, whose package {pkg} is not installed; allowed: pip install {pkg}")


def test_the_trainer_refuses_a_missing_tracker_before_work(tmp_path, capsys):
    from llm.train import main

    name = _missing()
    assert main(["--tracker", name, "--out-dir", str(tmp_path / "o"), "--sft-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: tracker: got {name!r}, whose package") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_the_simulator_refuses_a_missing_tracker_before_work(tmp_path, capsys):
    from sim.__main__ import main

    name = _missing()
    assert (
        main(
            [
                "run",
                "--preset",
                "quick",
                "--out-dir",
                str(tmp_path),
                "--name",
                "o",
                "--quiet",
                "--tracker",
                name,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: tracker: got {name!r}, whose package") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_the_simulator_mirrors_each_steps_mean_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sim.__main__ import main

    out = tmp_path / "tb"
    assert (
        main(
            [
                "run",
                "--preset",
                "quick",
                "--steps",
                "4",
                "--out-dir",
                str(out.parent),
                "--name",
                out.name,
                "--quiet",
                "--tracker",
                "tensorboard",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    events = list(out.rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    for key in ("entropy", "success", "policy/entropy"):
        logged = {e.step: e.value for e in acc.Scalars(key)}
        for step in range(4):
            vals = [r[key] for r in rows if r["step"] == step]
            assert logged[step] == pytest.approx(sum(vals) / len(vals), rel=1e-6)  # float32 in the event file
