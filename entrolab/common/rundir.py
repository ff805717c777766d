"""What the simulator's and the trainer's run directories share: the lock that keeps a second process out,
the check that the metrics a checkpoint continues are all there, and one line for a disk that fills up.

- ``lock(run_dir, ...)``: an exclusive ``flock`` on ``RUN/.lock`` (released when the process ends), opened
  without following a symbolic link, so a lock planted as a link to another file never truncates that file.
- ``missing_steps(rows, expected)``: the logged steps a resumed run needs and the metrics file lacks (deleted
  or cut short beside good checkpoints); the hosts refuse to resume over such a hole.
- ``disk_full(error)``: the one-line reason when a write failed for want of space (``ENOSPC``, ``EDQUOT``, a
  file-size limit, or torch's serializer reporting a failed write), else None.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

LOCK = ".lock"
_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large for the file-size limit"}  # fmt: skip
_TORCH_WRITE = ("file write failed", "PytorchStreamWriter failed", "unexpected pos", "iostream error")


def lock(run_dir: Path, option: str, busy_option: str, rerun: str) -> int:
    """Hold ``run_dir/.lock``; returns its file descriptor (close it to release). A second holder is refused
    naming the first's pid; a lock that is a symbolic link, or a directory that cannot be written, is
    refused too. ``option`` names the command's run-directory option, ``busy_option`` the one to change
    when the directory is busy, and ``rerun`` how to pick another."""
    import fcntl

    path = Path(run_dir) / LOCK
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(
                f"{option}: {path} is a symbolic link (to {os.readlink(path)!r}); allowed: a run directory "
                "whose .lock is a plain file (remove the link)"
            ) from None
        raise ValueError(
            f"{option}: cannot write the run directory {run_dir} ({e.strerror}); allowed: a writable directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ValueError(
            f"{busy_option}: run directory {run_dir} is in use by process {holder}; allowed: wait for it to finish, "
            f"or {rerun}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def missing_steps(rows: Iterable[dict], expected: Iterable[int]) -> list[int]:
    """The steps in ``expected`` that no row of ``rows`` carries, sorted."""
    have = {r.get("step") for r in rows}
    return sorted(set(expected) - have)


def hole_message(metrics: Path, missing: list[int], checkpoint: str, restart: str) -> str:
    """The one line a host raises when a checkpoint continues metrics that are not all there."""
    shown = ", ".join(map(str, missing[:5])) + (f", … ({len(missing)} in all)" if len(missing) > 5 else "")
    return (
        f"resume: {metrics} lacks the rows of steps [{shown}] that {checkpoint} continues (deleted or cut "
        f"short); allowed: {restart}"
    )


def disk_full(error: BaseException) -> str | None:
    """Why ``error`` is a write that failed for want of space, in words, or None."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:  # torch wraps the OSError of a failed write
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            where = f" writing {e.filename}" if e.filename else ""
            return f"{_FULL[e.errno]}{where}"
        if isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITE):
            return (
                f"a checkpoint write failed ({str(e).splitlines()[0][:100]}), most likely for want of space"
            )
        e = e.__cause__ or e.__context__
    return None


def read_config_file(path: str | Path, option: str = "--config") -> dict:
    """The config fields in a run's ``config.json`` (the trainer writes them at top level, the simulator under
    ``"config"`` beside the run's metadata); a one-line ValueError naming ``option`` when the file is missing
    or not such a JSON object."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(
            f"{option}: cannot read {str(path)!r} ({e.strerror}); allowed: a run's config.json"
        ) from None
    except ValueError as e:
        raise ValueError(f"{option}: {str(path)!r} is not JSON ({e}); allowed: a run's config.json") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise ValueError(f"{option}: {str(path)!r} holds {type(data).__name__}; allowed: a run's config.json")
    return data
