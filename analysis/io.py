"""Deterministic, atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["write_csv", "write_text", "read_csv"]

FLOAT_FORMAT = "%.10g"  # 10 significant digits: far below any instrument's resolution


def _atomic(path, write) -> Path:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(df: pd.DataFrame, path) -> Path:
    return _atomic(path, lambda fh: df.to_csv(fh, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


def write_text(text: str, path) -> Path:
    return _atomic(path, lambda fh: fh.write(text))


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"trial_id": str, "participant_id": str})
