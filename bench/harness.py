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


@contextlib.contextmanager
def count_host_reads():
    """Counts host reads of tensor values inside the block (a CUDA-free stand-in for counting device
    synchronisations: it patches ``torch.Tensor``'s reading methods and restores them after)."""
    import torch

    counts: collections.Counter = collections.Counter()
    orig = {n: getattr(torch.Tensor, n) for n in HOST_READS}

    def wrap(name):
        f = orig[name]

        def counted(self, *a, **k):
            counts[name] += 1
            return f(self, *a, **k)

        return counted

    for n in HOST_READS:
        setattr(torch.Tensor, n, wrap(n))
    try:
        yield counts
    finally:
        for n, f in orig.items():
            setattr(torch.Tensor, n, f)
