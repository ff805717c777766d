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
