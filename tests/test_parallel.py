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


def _waits_for(flag, seconds=20.0):
    """Whether ``flag`` (a file) appeared within ``seconds``, and the process that waited."""
    import os
    import time

    deadline = time.monotonic() + seconds
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.path.exists(flag), os.getpid()


@pytest.mark.parametrize("jobs", [1, 2])
def test_meanwhile_runs_once_here_while_the_workers_run(jobs, tmp_path):
    """Source of truth: tasks that wait for a file only ``meanwhile`` writes. With workers,
    they see it while they run (meanwhile did not wait for them) in other processes; run
    here, meanwhile came first. It runs once, in this process."""
    import os

    flag, calls = tmp_path / "flag", []

    def meanwhile():
        calls.append(os.getpid())
        flag.write_text("")

    results = parallel.run_tasks([(_waits_for, (str(flag),)) for _ in range(3)], jobs, meanwhile=meanwhile)
    assert calls == [os.getpid()]
    assert all(seen for seen, _ in results)
    assert all(pid != os.getpid() for _, pid in results) == (jobs > 1)


def _made_here(key):
    """The process that ran the task, and the process and call that made the kept value."""
    import os

    return os.getpid(), parallel.kept(key, lambda: (os.getpid(), object().__repr__()))


@pytest.mark.parametrize("jobs", [1, 2])
def test_kept_values_are_made_once_per_process_and_let_go(jobs):
    """Source of truth: each task reports its process and the value it got; a kept value
    must come from the first task of its key in that process and be let go after the call."""
    tasks = [(_made_here, (key,)) for key in ("a", "b") * 6]
    results = parallel.run_tasks(tasks, jobs)
    for key in ("a", "b"):
        got = [made for (pid, made), (_, (k,)) in zip(results, tasks) if k == key]
        assert all(made[0] == pid for (pid, made), (_, (k,)) in zip(results, tasks) if k == key)
        assert len(set(got)) == len({made[0] for made in got}) <= jobs  # one value per process
    assert parallel._KEPT == {}
    again = parallel.run_tasks(tasks[:1], 1)
    assert again[0][1] not in [made for _, made in results]  # made anew by a new call


def _frozen_objects():
    import gc

    return gc.get_freeze_count()


def test_forked_workers_set_what_they_inherit_aside_from_the_garbage_collector():
    """A worker freezes the objects it inherits (``initializer=gc.freeze``), so that its
    collections never write to the pages it shares with this process. Source of truth: this
    process has frozen nothing, so a worker that did not freeze reports 0."""
    import gc

    assert gc.get_freeze_count() == 0
    counts = parallel.run_tasks([(_frozen_objects, ()) for _ in range(4)], 2)
    assert all(count > 1000 for count in counts)  # every module object of this process, at least
    assert gc.get_freeze_count() == 0  # and nothing here


def _collector_on():
    import gc

    return gc.isenabled()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_here_while_results_arrive_and_restored(enabled):
    """While this process only receives results its collector is off (each result unpickles
    into many objects that collections would walk again and again); the workers, forked
    before, keep it on; afterwards it is as it was (source of truth: gc.isenabled seen by
    each task, by the ``done`` callback here, and after the call)."""
    import gc

    here = []
    (gc.enable if enabled else gc.disable)()
    try:
        tasks = [(_collector_on, ()) for _ in range(4)]
        in_workers = parallel.run_tasks(tasks, 2, lambda _: here.append(gc.isenabled()))
        assert in_workers == [enabled] * 4 and here == [False] * 4
        assert gc.isenabled() == enabled
    finally:
        gc.enable()
