"""Stage timings in the log, which `--verbose` shows and benchmarks/run.py reads."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

__all__ = ["timed_stage", "log_stage", "log_task"]

log = logging.getLogger("analysis")


@contextmanager
def timed_stage(name: str):
    """Log "timing: <name> <seconds> s" once the stage has finished."""
    start = time.perf_counter()
    yield
    log_stage(name, time.perf_counter() - start)


def log_stage(name: str, seconds: float):
    """Log a stage's time measured elsewhere (e.g. summed over its tasks in other processes)."""
    log.info("timing: %s %.2f s", name, seconds)


def log_task(name: str, seconds: float):
    """Log one task's time (a part of a stage run in a pool), for finding the longest ones."""
    log.info("task %s took %.2f s", name, seconds)
