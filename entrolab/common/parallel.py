"""Independent tasks on worker processes (``--workers N``): each worker a fresh interpreter (spawn) with one
torch thread, the results in task order. The simulator's verification checks and claims-matrix cells are
small tensors driven from Python: one process uses about one core whatever its thread count, so N workers
on N cores run N cells at once. Tasks must pickle: a module-level function and plain arguments."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers, name: str = "workers") -> int:
    """``workers`` as an int ≥ 1, or a one-line ValueError naming the argument."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{name}: got {workers!r}; allowed: an integer >= 1 (worker processes)")
    return workers


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # N workers share N cores; more threads each would only contend


def map_tasks(
    fn: Callable,
    tasks: Sequence[tuple],
    workers: int = 1,
    finished: Callable[[int, object], None] | None = None,
) -> list:
    """``[fn(*t) for t in tasks]``, on ``workers`` processes when more than one (tasks are handed out in
    order, so put the long ones first). ``finished(i, result)`` after task i is done (in completion order),
    in this process: e.g. to save the result at once, so an interrupted run keeps it. An exception in a task is
    raised here, after the tasks not yet started are cancelled."""
    check_workers(workers)
    if workers == 1 or len(tasks) <= 1:
        out = []
        for i, t in enumerate(tasks):
            out.append(fn(*t))
            if finished is not None:
                finished(i, out[-1])
        return out
    results: list = [None] * len(tasks)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker
    ) as pool:
        futures = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        try:
            for f in as_completed(futures):
                i = futures[f]
                results[i] = f.result()
                if finished is not None:
                    finished(i, results[i])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results
