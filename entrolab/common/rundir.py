"""One run lifecycle for the simulator (``sim run``) and the trainer (``llm.train``): what their run
directories share, written once.

- ``lock(run_dir, ...)``: an exclusive ``flock`` on ``RUN/.lock`` that keeps a second process out (released
  when the process ends), opened without following a symbolic link, so a lock planted as a link to another
  file never truncates that file.
- ``Signals``: SIGINT/SIGTERM stop the run at its next step boundary with a checkpoint; a second stops at once.
- ``changed_fields(saved, now)``: the config diff a resume refuses, named field by field (old → new).
- ``missing_steps(rows, expected)``: the logged steps a resumed run needs and the metrics file lacks (deleted
  or cut short beside good checkpoints); the hosts refuse to resume over such a hole (``hole_message``).
- ``run_metadata(config)``: what ``config.json`` records beside the config: commit, dirty flag, versions.
- ``MetricsLog`` and ``read_metrics``: ``metrics.jsonl`` appended one JSON row per line, the rows written after
  the last checkpoint (and a torn last line) dropped when a run resumes, and read back with a torn line left
  out.
- ``read_config_file``: a run's ``config.json`` as the fields of its config (``--config FILE``).
- ``disk_full(error)`` and ``disk_full_message``: the one-line reason when a write failed for want of space
  (``ENOSPC``, ``EDQUOT``, a file-size limit, or torch's serializer reporting a failed write), else None.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Iterable
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


def disk_full_message(error: BaseException, run_dir) -> str | None:
    """The one line a command prints when a run's write failed for want of space (``disk_full``), or None
    for any other error: the last checkpoint is intact, and the same command resumes once space is freed."""
    why = disk_full(error)
    if why is None:
        return None
    return f"error: out_dir: {why}; the last checkpoint in {run_dir} is intact: free space and rerun the same command to resume"


def read_config_file(path: str | Path, option: str = "--config") -> dict:
    """The config fields in a run's ``config.json`` (the trainer writes them at top level, the simulator under
    ``"config"`` beside the run's metadata); a one-line ValueError naming ``option`` when the file is missing
    or not such a JSON object."""
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


# -- signals ---------------------------------------------------------------------------------------------


class Signals:
    """SIGINT and SIGTERM during a run: the first is recorded (``signum``) and announced in one line, and
    the run stops at its next step boundary, saving a checkpoint; a second raises KeyboardInterrupt at once
    (the last checkpoint is intact). Handlers are installed only on the main thread (Python allows no other)
    and ``restore()`` puts the previous ones back. ``announce`` says whether this process prints the line
    (one rank of several does)."""

    def __init__(self, doing: str, announce: Callable[[], bool] = lambda: True):
        self.doing, self.announce = doing, announce
        self.signum: int | None = None
        self._old: dict = {}

    def install(self) -> Signals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and not self._old:
            self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        import signal

        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce():
            print(f"\nsignal {signum}: {self.doing}", file=sys.stderr)

    def __enter__(self) -> Signals:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()


# -- resume: the config diff ----------------------------------------------------------------------------------


def changed_fields(saved: dict, now: dict, ignore: Iterable[str] = (), defaults: dict | None = None) -> str:
    """The fields whose values differ between a saved config and this one, as ``name old → new`` joined by
    ", " ("" when none); fields in ``ignore`` may change; a field the saved config predates counts as its
    value in ``defaults`` (a run saved before the field existed resumes)."""
    skip, defaults = set(ignore), defaults or {}
    keys = sorted((set(saved) | set(now)) - skip)
    old = {k: saved.get(k, defaults.get(k)) for k in keys}
    return ", ".join(f"{k} {old[k]!r} → {now.get(k)!r}" for k in keys if old[k] != now.get(k))


# -- metadata ---------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The versions of Python and of the libraries a run's numbers depend on that are installed."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "torch", "transformers", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_metadata(config: dict, **extra) -> dict:
    """``config.json``'s contents: the config, the commit and whether the tree was dirty (a dirty tree's
    result cannot be made again from the commit alone), the versions, and ``extra``."""
    from entrolab.common.runio import git_dirty, git_sha

    return {"config": config, "git_sha": git_sha(), "git_dirty": git_dirty(), "versions": versions(), **extra}


# -- metrics ----------------------------------------------------------------------------------------------------

METRICS = "metrics.jsonl"


class MetricsLog:
    """``RUN/metrics.jsonl`` opened to append from step ``next_step``: rows at or after it (written after the
    last checkpoint) and a torn last line are dropped first, the torn line said in a note on stderr. ``write``
    appends one JSON row per line; ``flush`` makes the rows so far durable before a checkpoint."""

    def __init__(self, run_dir: Path, next_step: int, fresh: bool = False):
        from entrolab.common.runio import truncate_metrics

        self.path = Path(run_dir) / METRICS
        if fresh:
            self.path.unlink(missing_ok=True)
        note = truncate_metrics(self.path, next_step)
        if note:
            print(f"note: {note}", file=sys.stderr)
        self._fh = self.path.open("a")

    def write(self, row: dict, flush: bool = False) -> None:
        self._fh.write(json.dumps(row) + "\n")
        if flush:
            self._fh.flush()

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (a torn last line left out: ``runio.read_metrics_file``)."""
    from entrolab.common.runio import read_metrics_file

    return read_metrics_file(Path(run_dir) / METRICS)[0]
