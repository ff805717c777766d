"""Fault injection on the simulator's run directory (``python -m sim run --out``): a second simulator is
refused, a symbolic-link lock is never followed, metrics that no checkpoint continues are never replaced in
silence, a checkpoint with a hole in its metrics is refused, a checkpoint that is not the simulator's is
one line, and a full disk is one line after which the rerun resumes to the uninterrupted result."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time

import torch

from sim.__main__ import main
from sim.run import read_metrics


def _argv(out, *extra, steps=4, every=2):
    return ["run", "--preset", "quick", "--steps", str(steps), "--checkpoint-every", str(every), "--out-dir",
            str(out.parent), "--name", out.name, "--quiet", *extra]  # fmt: skip


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_a_second_simulator_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "q"
    cmd = [sys.executable, "-m", "sim", *_argv(out, steps=100000, every=0)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
            time.sleep(0.05)
        before = metrics.read_text()
        assert main(_argv(out, "--lr", "0.25", steps=10)) == 2
        err = _err(capsys)
        assert err.startswith(
            f"error: name: run directory {out} is in use by process {proc.pid}; allowed: wait"
        ), err
        assert metrics.read_text().startswith(before)  # the first run's rows are still there, growing
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert main(_argv(out, steps=4)) == 2  # its checkpoint is of another config (steps 100000): named
    assert "another config (checkpoint_every 0 → 2, steps 100000 → 4)" in _err(capsys)


def test_a_lock_that_is_a_symbolic_link_is_not_followed(tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    out = tmp_path / "q"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    assert main(_argv(out)) == 2
    assert _err(capsys).startswith(f"error: out_dir: {out / '.lock'} is a symbolic link (to {str(victim)!r})")
    assert victim.read_text() == "keep me" and not (out / "metrics.jsonl").exists()


def test_metrics_without_a_checkpoint_are_not_replaced_by_another_config(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(_argv(out)) == 0
    (out / "checkpoint.pt").unlink()
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(_argv(out, "--lr", "0.25")) == 2
    err = _err(capsys)
    assert err.startswith(f"error: out_dir: '{out}' holds the metrics of a run with another config (lr 0.5 → 0.25) and "
                          "no checkpoint.pt to continue; allowed: --resume never")  # fmt: skip
    assert (out / "metrics.jsonl").read_text() == before
    assert main(_argv(out)) == 0  # the same config reruns (it is deterministic) ...
    assert (out / "metrics.jsonl").read_text() == before
    assert main(_argv(out, "--lr", "0.25", "--resume", "never")) == 0  # ... and --no-resume starts over


def test_a_checkpoint_whose_metrics_are_lost_or_cut_is_refused(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(_argv(out, steps=6, every=3)) == 0
    whole = read_metrics(out)
    metrics = out / "metrics.jsonl"
    saved = metrics.read_text()
    lines = saved.splitlines(keepends=True)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["config"]["steps"] = 8  # continue the finished run: the checkpoint is at step 6
    torch.save(ckpt, out / "checkpoint.pt")
    for kept, missing in (
        ([], "0, 1, 2, 3, 4, … (6 in all)"),  # deleted
        ([ln for ln in lines if '"step": 3,' not in ln], "3"),  # a hole
        ([ln for ln in lines if '"step": 0,' not in ln and '"step": 5,' not in ln], "0, 5"),
        (lines[:8], "1, 2, 3, 4, 5"),  # cut short
    ):
        metrics.write_text("".join(kept))
        capsys.readouterr()
        assert main(_argv(out, steps=8, every=3)) == 2
        err = _err(capsys)
        assert err.startswith(f"error: resume: {metrics} lacks the rows of steps [{missing}] that checkpoint.pt "
                              "(step 6) continues (deleted or cut short); allowed: --resume never"), err  # fmt: skip
        assert metrics.read_text() == "".join(kept)
    metrics.write_text(saved)
    assert main(_argv(out, steps=8, every=3)) == 0
    assert read_metrics(out)[: len(whole)] == whole


def test_a_checkpoint_that_is_not_the_simulators_is_one_line(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(_argv(out)) == 0
    good = torch.load(out / "checkpoint.pt", weights_only=False)
    for bad, needle in (
        ({k: v for k, v in good.items() if k != "config"}, "is not a simulator checkpoint (got ["),
        ({k: v for k, v in good.items() if k != "step"}, "is not a simulator checkpoint (got ["),
        ({**good, "step": "4"}, "is not a simulator checkpoint"),
        ([1, 2, 3], "is not a simulator checkpoint (got list;"),
        ({"config": good["config"], "step": 4}, "holds a config and step but not this simulator's state"),
    ):
        torch.save(bad, out / "checkpoint.pt")
        capsys.readouterr()
        assert main(_argv(out)) == 2
        err = _err(capsys)
        assert err.startswith(f"error: out_dir: {out / 'checkpoint.pt'} ") and needle in err, err


def _limit_file_size(nbytes):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))  # Python ignores SIGXFSZ: writes fail

    return set_limit


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, capsys):
    """A write past the file-size limit fails as a full disk does (the portable stand-in for a small
    tmpfs): one line, exit 1; once space is back the same command resumes to the uninterrupted metrics."""
    argv = _argv(tmp_path / "whole", steps=60, every=10)
    assert main(argv) == 0
    size = (tmp_path / "whole" / "metrics.jsonl").stat().st_size
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "sim", *_argv(cut, steps=60, every=10)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(size // 2)
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: out_dir: file too large for the file-size limit"
    ), lines
    assert "free space and rerun the same command to resume" in lines[0]
    assert main(_argv(cut, steps=60, every=10)) == 0
    assert read_metrics(cut) == read_metrics(tmp_path / "whole")
