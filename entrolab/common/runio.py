"""Run files shared by ``python -m sim run``, ``python -m llm.train`` and the figures: atomic writes (temp file +
rename, so an interrupted write never leaves a half file), the git SHA, and metric-row truncation on
resume (rows written after the last checkpoint are dropped, then recomputed)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path


def git_sha() -> str:
    """HEAD of the checkout this package lives in, or "unknown"."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except Exception:
        return "unknown"


def git_dirty() -> bool | None:
    """Whether the checkout this package lives in has uncommitted changes to tracked files (None: no git).
    A result made from a dirty tree cannot be reproduced from ``git_sha`` alone."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout
    except Exception:
        return None
    return bool(out.strip())


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_fingerprint(
    *extra: Path,
    packages: tuple[str, ...] = ("entrolab/common", "theory", "sim", "controllers"),
    leave_out=(),
) -> str:
    """sha256 (16 hex digits) of the sources of ``packages``, subpackages included (by default the common,
    theory, sim and controllers sources: what a simulator result depends on), minus the files named in
    ``leave_out`` (paths relative to the project root), plus the files in ``extra``: a saved result is
    reused only while this matches."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    files = list(extra)
    skip = {root / p for p in leave_out}
    for pkg in packages:
        files += sorted(f for f in (root / pkg).rglob("*.py") if f not in skip)
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temp file and a rename."""
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_json(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def read_metrics_file(path: str | Path) -> tuple[list[dict], str]:
    """The rows of a ``metrics.jsonl`` and a note (empty when none). A torn last line (a write cut off by a
    crash: no newline at its end and not valid JSON) is left out and the note says so; any other line that
    is not a JSON object with a "step" is an error naming the file and line."""
    pairs, note = _metric_lines(path)
    return [r for _, r in pairs], note


def _metric_lines(path: str | Path) -> tuple[list[tuple[str, dict]], str]:
    path = Path(path)
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    rows, note = [], ""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # the last line, without its newline: cut off mid-write
                note = f"{path}:{i + 1}: a torn last line (a write cut off mid-line) was left out"
                break
            raise ValueError(
                f"{path}:{i + 1}: not a JSON line ({e.msg}); allowed: one JSON object per line"
            ) from None
        if not isinstance(row, dict) or "step" not in row:
            raise ValueError(f"{path}:{i + 1}: a row without 'step'; allowed: metrics rows of entrolab runs")
        rows.append((line, row))
    return rows, note


def truncate_metrics(path: Path, next_step: int) -> str:
    """Drop metric rows at or after ``next_step`` (written after the last checkpoint) and a torn last line;
    returns the note of ``read_metrics_file`` (empty when nothing was torn)."""
    if not path.exists():
        return ""
    pairs, note = _metric_lines(path)
    keep = [line for line, r in pairs if r["step"] < next_step]  # the lines as written, byte for byte
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
    return note


def cannot_write(folder: str | Path, create: bool = True) -> str | None:
    """Why a file cannot be written in ``folder``, in the system's words, or None when it can. With
    ``create`` the folder (and its parents) is made if missing; without, a missing folder is a reason."""
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            return "no such directory"
        probe = folder / f".write_probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def available_mb(device) -> float | None:
    """Memory free for a new allocation on ``device`` in MB (MemAvailable on CPU), or None if unknown."""
    if device.type == "cuda":  # a torch.device: torch is loaded (common never imports it itself)
        import sys

        return sys.modules["torch"].cuda.mem_get_info(device)[0] / 2**20
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM from /proc (Linux), which starts afresh at exec.
    (``ru_maxrss`` does not: a child started from a big process inherits that process's peak.) Falls
    back to ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    scale = 2**20 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def is_band(value) -> bool:
    """True for () or a pair (lo, hi) of real numbers with 0 <= lo <= hi <= 1 (an accuracy band)."""
    band = tuple(value) if isinstance(value, list | tuple) else None
    if band is None:
        return False
    return not band or (
        len(band) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in band)
        and 0.0 <= band[0] <= band[1] <= 1.0
    )
