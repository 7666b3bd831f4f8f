"""Python's garbage collector set aside around work that makes many long-lived objects and no
garbage (loading modules, receiving results): its passes over them cost time and find nothing."""

from __future__ import annotations

import gc
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused():
    """The collector off for the block, then on again if it was on before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
