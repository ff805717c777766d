"""entrolab.common.heap: glibc's thresholds set once per process, or left alone when asked."""

import subprocess
import sys

import pytest

from entrolab.common import heap

_PROBE = """
import ctypes
from entrolab.common import heap
on = heap.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
p = libc.malloc(64 << 20)  # 64 MiB: far above glibc's default mmap threshold (128 KiB, at most 32 MiB)
print(on, "heap" if p < libc.sbrk(0) else "mmap")
"""


def _probe(env_value: str | None) -> list[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["ENTROLAB_HEAP"] = env_value
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env=env)
    return run.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_blocks_come_from_the_heap_once_set():
    """A 64 MiB malloc is served from the heap (below the program break) once the thresholds are set,
    and by its own mmap with glibc's defaults (``ENTROLAB_HEAP=os``)."""
    assert _probe(None) == ["True", "heap"]
    assert _probe("os") == ["False", "mmap"]


def test_decided_once_per_process(monkeypatch):
    monkeypatch.setattr(heap, "_done", None)
    monkeypatch.setenv("ENTROLAB_HEAP", "os")
    assert heap.keep_freed_memory() is False
    monkeypatch.delenv("ENTROLAB_HEAP")
    assert heap.keep_freed_memory() is False
