"""Fault injection on a trainer's run directory: nothing already written is lost, a broken checkpoint is
skipped for the newest complete one (and the run resumes to the uninterrupted result), and a second
trainer on the same directory is refused with the holder's pid."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from llm.config import PRESETS
from llm.train import Trainer, checkpoint_problem, read_metrics, train


def cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path), name="r", sft_steps=0, steps=6, checkpoint_every=2, keep_checkpoints=3,
                eval_every=0, tracker="none", prompts_per_step=4, group_size=4)  # fmt: skip
    return dataclasses.replace(PRESETS["tiny-copy"], **{**base, **kw})


def _rows(c):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(c.run_dir)]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    c = cfg(tmp_path_factory.mktemp("whole"))
    train(c, progress=False)
    return _rows(c)


def test_metrics_without_a_checkpoint_are_not_overwritten(tmp_path):
    c = cfg(tmp_path)
    train(c, progress=False, stop_after=3)
    before = (c.run_dir / "metrics.jsonl").read_text()
    for p in (c.run_dir / "checkpoints").iterdir():
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    with pytest.raises(ValueError, match=r"^resume: .*metrics.jsonl holds 3 metric rows but no usable checkpoint; "
                       r"allowed: --resume never \(start over, discarding them\), or a new --name$"):  # fmt: skip
        Trainer(c, progress=False)
    assert (c.run_dir / "metrics.jsonl").read_text() == before
    train(dataclasses.replace(c, resume="never"), progress=False)  # the explicit choice starts over
    assert len(read_metrics(c.run_dir)) == 6


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate pytorch_model.bin", r"pytorch_model.bin has \d+ bytes, \d+ when saved"),
        ("delete optimizer.bin", "optimizer.bin is missing"),
        ("garble trainer.json", "trainer.json is not JSON"),
        ("delete trainer.json", "no trainer.json"),
        ("randomize pytorch_model.bin", "pytorch_model.bin differs from what was saved"),
        ("randomize optimizer.bin", "optimizer.bin differs from what was saved"),
        ("drop trainer.json:history", "trainer.json has no 'history'"),
        ("drop trainer.json:config", "trainer.json has no 'config'"),
        ("retype trainer.json:step", "trainer.json's 'step' is a str, not a int"),
        ("retype trainer.json:controller_state", "trainer.json's 'controller_state' is a str, not a dict"),
    ],
)
def test_a_broken_latest_checkpoint_falls_back_to_the_previous(damage, reason, tmp_path, whole, capsys):
    c = cfg(tmp_path)
    train(c, progress=False, stop_after=4)
    newest = c.run_dir / "checkpoints" / "step_000004"
    verb, name = damage.split(" ", 1)
    name, _, key = name.partition(":")
    f = newest / name
    if verb == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif verb == "randomize":  # the same size, other bytes: only the digest tells
        f.write_bytes(os.urandom(f.stat().st_size))
    elif verb in ("drop", "retype"):
        info = json.loads(f.read_text())
        info.pop(key) if verb == "drop" else info.__setitem__(key, str(info[key]))
        f.write_text(json.dumps(info))
    elif verb == "garble":
        f.write_text('{"step": 4, "contr\x01')
    else:
        f.unlink()
    assert checkpoint_problem(newest) is not None
    trainer = Trainer(c, progress=False)
    assert trainer.resume_from.name == "step_000002"
    err = capsys.readouterr().err
    assert "resume: skipped checkpoint step_000004: " in err and re.search(reason, err)
    trainer.run()
    assert _rows(c) == whole  # resumed from step 2 to the uninterrupted run's metrics


def test_a_second_trainer_on_the_same_run_is_refused(tmp_path):
    c = cfg(tmp_path)
    first = Trainer(c, progress=False)
    with pytest.raises(
        ValueError, match=rf"^name: run directory .*/r is in use by process {os.getpid()}; allowed"
    ):
        Trainer(c, progress=False)
    first.run(stop_after=1)  # finishing releases the lock
    second = Trainer(c, progress=False)
    second.release()


def test_checkpoints_record_their_files():
    """Each checkpoint's trainer.json lists its files and their sizes (what checkpoint_problem checks)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        c = cfg(Path(d), steps=2)
        train(c, progress=False)
        (ck,) = sorted((c.run_dir / "checkpoints").glob("step_*"))[-1:]
        files = json.loads((ck / "trainer.json").read_text())["files"]
        assert {"pytorch_model.bin", "optimizer.bin", "scheduler.bin"} <= set(files)
        assert all((ck / n).stat().st_size == size for n, size in files.items())
        assert checkpoint_problem(ck) is None


def test_a_torn_last_metrics_line_is_dropped_and_the_run_resumes(tmp_path, whole, capsys):
    """A crash mid-write leaves half a JSON line: the rerun drops it (and says so), keeps every complete row
    and resumes to the uninterrupted result."""
    c = cfg(tmp_path)
    train(c, progress=False, stop_after=4)
    with (c.run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "policy/entropy": 0.5, "reward/me')
    train(c, progress=False)
    assert (
        "metrics.jsonl:5: a torn last line (a write cut off mid-line) was left out" in capsys.readouterr().err
    )
    assert _rows(c) == whole


def test_a_corrupt_metrics_line_is_named_before_any_work(tmp_path):
    c = cfg(tmp_path)
    train(c, progress=False, stop_after=4)
    path = c.run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20] + "#" + lines[1][21:]
    path.write_text("\n".join(lines) + "\n")
    before = path.read_text()
    with pytest.raises(
        ValueError, match=r"metrics.jsonl:2: not a JSON line \(.*\); allowed: one JSON object per line$"
    ):
        Trainer(c, progress=False)
    assert path.read_text() == before


def test_lost_or_cut_metrics_beside_good_checkpoints_are_never_resumed_over(tmp_path, whole, capsys):
    """A checkpoint continues the rows before it: with metrics.jsonl deleted or holed, resuming would leave
    holes in the record. The newest checkpoint whose rows are all there is used; with none, one line."""
    c = cfg(tmp_path)
    train(c, progress=False, stop_after=4)
    path = c.run_dir / "metrics.jsonl"
    saved = path.read_text()
    lines = saved.splitlines(keepends=True)
    for kept, missing in (([], "0, 1, 2, 3"), ([lines[1], lines[2]], "0, 3"), (lines[:1] + lines[2:], "1")):
        path.write_text("".join(kept))
        with pytest.raises(ValueError, match=rf"^resume: .*metrics.jsonl lacks the rows of steps \[{missing}\] that "
                           r"checkpoint step_000004 continues \(deleted or cut short\); allowed: --resume never"):  # fmt: skip
            Trainer(c, progress=False)
        assert path.read_text() == "".join(kept)
    path.write_text("".join(lines[:3]))  # cut short after step 2: the checkpoint at step 2 continues it
    trainer = Trainer(c, progress=False)
    assert trainer.resume_from.name == "step_000002"
    assert (
        "skipped checkpoint step_000004: metrics.jsonl lacks 1 of the 4 rows before it"
        in capsys.readouterr().err
    )
    trainer.run()
    assert _rows(c) == whole


def test_a_lock_that_is_a_symbolic_link_is_not_followed(tmp_path):
    c = cfg(tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    c.run_dir.mkdir(parents=True)
    (c.run_dir / ".lock").symlink_to(victim)
    with pytest.raises(
        ValueError, match=r"^out_dir: .*/r/.lock is a symbolic link \(to '.*precious.txt'\); allowed"
    ):
        Trainer(c, progress=False)
    assert victim.read_text() == "keep me"


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, whole):
    """The checkpoint at step 4 cannot be written (a file-size limit below the optimizer file's size stands
    in for a full disk): one line, exit 1, the checkpoint at step 2 intact; the rerun resumes to the
    uninterrupted metrics."""
    import resource
    import subprocess
    import sys

    c = cfg(tmp_path)
    train(c, progress=False, stop_after=2)
    limit = (c.run_dir / "checkpoints" / "step_000002" / "optimizer.bin").stat().st_size // 2

    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    argv = ["--preset", "tiny-copy", "--out-dir", str(tmp_path), "--name", "r", "--sft-steps", "0", "--steps", "6",
            "--checkpoint-every", "2", "--keep-checkpoints", "3", "--eval-every", "0", "--tracker", "none",
            "--prompts-per-step", "4", "--group-size", "4"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "llm.train", *argv], capture_output=True, text=True, timeout=600,
                          preexec_fn=set_limit)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and not ln.startswith("train r:")]
    assert (
        lines[-1].startswith("error: out_dir: ")
        and "free space and rerun the same command to resume" in lines[-1]
    )
    assert "Traceback" not in proc.stderr
    assert checkpoint_problem(c.run_dir / "checkpoints" / "step_000002") is None
    train(c, progress=False)
    assert _rows(c) == whole
