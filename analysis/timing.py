"""Stage timings in the log, which `--verbose` shows and benchmarks/run.py reads."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

__all__ = ["timed_stage"]

log = logging.getLogger("analysis")


@contextmanager
def timed_stage(name: str):
    """Log "timing: <name> <seconds> s" once the stage has finished."""
    start = time.perf_counter()
    yield
    log.info("timing: %s %.2f s", name, time.perf_counter() - start)
