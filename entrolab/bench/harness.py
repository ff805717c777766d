"""Shared benchmark plumbing: machine facts, load checks, timing, appending results."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load_per_cpu() -> float:
    """1-minute load average divided by the CPU count (0 where the OS has no load average)."""
    try:
        return os.getloadavg()[0] / max(os.cpu_count() or 1, 1)
    except OSError:
        return 0.0


def machine() -> dict:
    import numpy as np
    import torch

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        sha = "unknown"
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git": sha,
    }


def timed(fn: Callable[[], object], repeat: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls (after the caller's warm-up)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def sync_for(device: str) -> Callable[[], None] | None:
    """What ``timed`` calls after each run so that GPU work is counted: ``torch.cuda.synchronize`` on a
    CUDA device, nothing on the CPU."""
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else None


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


class LoadWatch:
    """Reads the load before and during a benchmark; ``noisy`` if another process competed for the CPU.
    Our own process adds up to one unit of load per thread it uses, which the threshold allows for."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.samples = [load_per_cpu()]

    def sample(self) -> None:
        self.samples.append(load_per_cpu())

    @property
    def noisy(self) -> bool:
        return self.samples[0] > self.threshold

    def report(self) -> dict:
        return {
            "load_before": round(self.samples[0], 3),
            "load_max": round(max(self.samples), 3),
            "noisy": self.noisy,
        }


def append(name: str, record: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return path


HOST_READS = ("__float__", "__bool__", "__int__", "__index__", "item", "tolist", "numpy")
"""the tensor methods through which the host reads a device value (each one a synchronisation on a GPU)"""

SIZE_OPS = ("bincount", "nonzero", "argwhere", "masked_select")
"""ops whose output size depends on the values: on a GPU each reads that size back (a synchronisation)
whatever the caller does with the result; counted on ``torch`` and on ``torch.Tensor``"""


def _is_mask(i) -> bool:
    import torch

    return isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)


def _mask_index(index) -> bool:
    """True where an index holds a boolean mask (its selection's size must be read on the host)."""
    return _is_mask(index) or (isinstance(index, tuple) and any(_is_mask(i) for i in index))


@contextlib.contextmanager
def count_host_reads():
    """Counts, inside the block, every call that makes a GPU wait for the device, on CPU tensors (a
    CUDA-free stand-in, checked against torch's own count on a GPU by tests/controllers/test_gpu_syncs.py):
    host reads of tensor values (``HOST_READS``), ``torch.unique`` / ``unique_consecutive`` (whose sizes are
    read), the ``SIZE_OPS``, ``repeat_interleave`` by a tensor without ``output_size``, and indexing or
    assignment through a boolean mask. It patches those methods and restores them after."""
    import torch

    counts: collections.Counter = collections.Counter()
    patched: list[tuple[object, str, object, bool]] = []

    def patch(owner, name, counted_when=None):
        f = getattr(owner, name)
        own = name in vars(owner)

        def counted(*a, **k):
            if counted_when is None or counted_when(a, k):
                counts[name] += 1
            return f(*a, **k)

        patched.append((owner, name, f, own))
        setattr(owner, name, counted)

    for n in HOST_READS:
        patch(torch.Tensor, n)
    for n in ("unique", "unique_consecutive"):  # the Tensor methods call these
        patch(torch, n)
    for n in SIZE_OPS:
        patch(torch, n)
        patch(torch.Tensor, n)

    def by_tensor(a, k):  # repeats given as a tensor, with no output_size to skip the read
        repeats = a[1] if len(a) > 1 else k.get("repeats")
        return isinstance(repeats, torch.Tensor) and k.get("output_size") is None

    patch(torch, "repeat_interleave", by_tensor)
    patch(torch.Tensor, "repeat_interleave", by_tensor)
    patch(torch.Tensor, "__getitem__", lambda a, k: _mask_index(a[1]))
    patch(torch.Tensor, "__setitem__", lambda a, k: _mask_index(a[1]))
    try:
        yield counts
    finally:
        for owner, name, f, own in reversed(patched):
            if own:
                setattr(owner, name, f)
            else:
                delattr(owner, name)


SYNC_WARNING = "called a synchronizing CUDA operation"


@contextlib.contextmanager
def count_cuda_syncs():
    """Counts the device synchronisations torch makes inside the block on a CUDA device, keyed by the
    Python line that made each (torch's sync debug mode flags every synchronising CUDA call: host reads,
    size-dependent kernels such as ``nonzero``/``unique``/boolean indexing, blocking host↔device copies).
    Where the host-read stand-in above sees only reads, this sees them all; it needs a GPU."""
    import warnings

    import torch

    counts: collections.Counter = collections.Counter()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    for w in caught:
        if SYNC_WARNING in str(w.message):
            counts[f"{Path(w.filename).name}:{w.lineno}"] += 1
