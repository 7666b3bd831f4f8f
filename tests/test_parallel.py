"""analysis.parallel: tasks in forked processes read the data they were given and give the
results of a serial run, in task order (source of truth: the same tasks run in this process)."""

import pytest

from analysis import parallel


def _scaled(name, factor):
    return [factor * x for x in parallel.shared(name)]


def _fails(i):
    if i in (2, 3):
        raise ValueError(f"task {i}")
    return i


@pytest.mark.parametrize("jobs", [1, 2])
def test_tasks_read_the_shared_data_and_let_it_go(jobs):
    data = {"numbers": list(range(1000)), "other": [1.5]}
    tasks = [(_scaled, ("numbers", f)) for f in range(5)] + [(_scaled, ("other", 2))]
    finished = []
    results = parallel.run_tasks(tasks, jobs, finished.append, data)
    assert results == [[f * x for x in range(1000)] for f in range(5)] + [[3.0]]
    assert sorted(finished) == list(range(6))
    with pytest.raises(KeyError):
        parallel.shared("numbers")


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_first_failing_task_in_order_raises_and_the_data_is_let_go(jobs):
    with pytest.raises(ValueError, match="task 2"):
        parallel.run_tasks([(_fails, (i,)) for i in range(5)], jobs, data={"numbers": [1]})
    with pytest.raises(KeyError):
        parallel.shared("numbers")
