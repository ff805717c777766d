"""entrolab.common.parallel: tasks on worker processes give the results of the plain loop, in task order."""

from __future__ import annotations

import os

import pytest

from entrolab.common import parallel


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise RuntimeError(f"task {x} failed")
    return x


def test_results_in_task_order_whatever_the_workers():
    tasks = [(x,) for x in range(7)]
    done: list[int] = []
    two = parallel.map_tasks(square_and_pid, tasks, workers=2, finished=lambda i, r: done.append(i))
    one = parallel.map_tasks(square_and_pid, tasks, workers=1)
    assert [r[0] for r in two] == [r[0] for r in one] == [x * x for x in range(7)]
    assert sorted(done) == list(range(7))
    assert {r[1] for r in two}.isdisjoint({os.getpid()})  # ran on other processes
    assert {r[1] for r in one} == {os.getpid()}


def test_a_failing_task_raises_here():
    with pytest.raises(RuntimeError, match="task 3 failed"):
        parallel.map_tasks(fail_on, [(x, 3) for x in range(5)], workers=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused_before_work(bad):
    with pytest.raises(ValueError, match=r"workers: got .*; allowed: an integer >= 1"):
        parallel.map_tasks(square_and_pid, [(1,)], workers=bad)


def test_default_workers_is_a_core_count():
    assert 1 <= parallel.default_workers() <= (os.cpu_count() or 1)
