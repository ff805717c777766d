"""entrolab.common.rundir: the run-directory lock, the metrics-hole check and the full-disk reason."""

from __future__ import annotations

import errno
import os

import pytest

from entrolab.common import rundir


def test_the_lock_refuses_a_second_holder_and_a_symbolic_link(tmp_path):
    fd = rundir.lock(tmp_path / "run", "out", "name", "a new --name")
    try:
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
        with pytest.raises(ValueError, match=rf"^name: run directory .*/run is in use by process {os.getpid()}; "
                           "allowed: wait for it to finish, or a new --name$"):  # fmt: skip
            rundir.lock(tmp_path / "run", "out", "name", "a new --name")
    finally:
        os.close(fd)
    os.close(rundir.lock(tmp_path / "run", "out", "name", "x"))  # released: taken again
    target = tmp_path / "other"
    target.write_text("data")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / ".lock").symlink_to(target)
    with pytest.raises(ValueError, match=r"^out: .*/link/.lock is a symbolic link \(to '.*other'\)"):
        rundir.lock(tmp_path / "link", "out", "name", "x")
    assert target.read_text() == "data"


def test_missing_steps_and_the_message():
    assert rundir.missing_steps([{"step": 0}, {"step": 2}, {"step": 2}], range(4)) == [1, 3]
    assert rundir.missing_steps([{"step": 0}], []) == []
    msg = rundir.hole_message("m.jsonl", list(range(9)), "checkpoint x", "--fresh")
    assert msg == ("resume: m.jsonl lacks the rows of steps [0, 1, 2, 3, 4, … (9 in all)] that checkpoint x "
                   "continues (deleted or cut short); allowed: --fresh")  # fmt: skip


def test_disk_full_reads_the_errno_and_torchs_wrapped_failures():
    assert (
        rundir.disk_full(OSError(errno.ENOSPC, "No space left", "/x/y"))
        == "no space left on the device writing /x/y"
    )
    assert (
        rundir.disk_full(OSError(errno.EFBIG, "File too large")) == "file too large for the file-size limit"
    )
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "quota")
    assert rundir.disk_full(wrapped) == "disk quota exceeded"
    assert "most likely for want of space" in rundir.disk_full(
        RuntimeError("[enforce fail] unexpected pos 704 vs 598")
    )
    assert rundir.disk_full(OSError(errno.EACCES, "denied")) is None
    assert rundir.disk_full(RuntimeError("CUDA error")) is None


def test_changed_fields_names_each_field_old_to_new():
    saved, now = (
        {"lr": 0.5, "seed": 0, "steps": 10},
        {"lr": 0.25, "seed": 3, "steps": 20, "agg": "token-mean"},
    )
    assert rundir.changed_fields(saved, now, ignore={"steps"}, defaults={"agg": "token-mean"}) == (
        "lr 0.5 → 0.25, seed 0 → 3"
    )  # a field the saved config predates counts as its default
    assert rundir.changed_fields(saved, saved) == ""
    assert rundir.changed_fields({"a": 1}, {}) == "a 1 → None"


def test_metrics_log_drops_rows_after_the_checkpoint_and_a_torn_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": 2}\n{"step": 3, "x"')
    with rundir.MetricsLog(tmp_path, next_step=2) as log:
        log.write({"step": 2, "y": 1.5}, flush=True)
    assert rundir.read_metrics(tmp_path) == [{"step": 0}, {"step": 1}, {"step": 2, "y": 1.5}]
    assert "torn last line" in capsys.readouterr().err
    with rundir.MetricsLog(tmp_path, next_step=0, fresh=True) as log:
        pass
    assert path.read_text() == ""


def test_signals_record_the_first_and_stop_at_the_second(capsys):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with rundir.Signals("finishing this step") as s:
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.signum == signal.SIGTERM
        assert "signal 15: finishing this step" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_run_metadata_and_config_files(tmp_path):
    meta = rundir.run_metadata({"lr": 0.1}, note="x")
    assert meta["config"] == {"lr": 0.1} and meta["note"] == "x"
    assert {"git_sha", "git_dirty"} <= set(meta) and {"python", "numpy", "torch"} <= set(meta["versions"])
    (tmp_path / "sim.json").write_text('{"config": {"lr": 0.1}, "git_sha": "abc"}')
    (tmp_path / "train.json").write_text('{"lr": 0.2}')
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert rundir.read_config_file(tmp_path / "sim.json") == {"lr": 0.1}
    assert rundir.read_config_file(tmp_path / "train.json") == {"lr": 0.2}
    with pytest.raises(ValueError, match=r"^--config: '.*bad.json' holds list; allowed: a run's config.json"):
        rundir.read_config_file(tmp_path / "bad.json")


def test_disk_full_message_is_one_line_and_only_for_a_full_disk():
    line = rundir.disk_full_message(OSError(errno.ENOSPC, "No space left"), "runs/a")
    assert line == (
        "error: out_dir: no space left on the device; the last checkpoint in runs/a is intact: free space and "
        "rerun the same command to resume"
    )
    assert rundir.disk_full_message(OSError(errno.EACCES, "denied"), "runs/a") is None


def test_both_hosts_run_the_one_lifecycle():
    """The simulator's loop and the trainer's hold no copy of the lifecycle: each reaches rundir for the lock,
    signals, metadata, metrics and the config diff, and neither installs signal handlers or opens
    metrics.jsonl itself."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in ("sim/run.py", "llm/train.py", "llm/checkpoint.py"):
        text = (root / path).read_text()
        assert "signal.signal(" not in text and "metrics_path.open" not in text, path
    for path, uses in (("sim/run.py", ("rundir.lock", "rundir.Signals", "rundir.MetricsLog", "rundir.run_metadata",
                                       "rundir.changed_fields", "trackers.start")),
                       ("llm/train.py", ("rundir.lock", "rundir.Signals", "rundir.MetricsLog", "rundir.run_metadata",
                                         "trackers.start")),
                       ("llm/checkpoint.py", ("rundir.changed_fields", "rundir.missing_steps"))):  # fmt: skip
        text = (root / path).read_text()
        assert all(u in text for u in uses), (path, [u for u in uses if u not in text])
