"""Reference values (the results module of the tests): see analysis/reference_values.py,
where each block is headed by the exact call that produced it."""

from pathlib import Path

from analysis.reference_values import *  # noqa: F401,F403
from analysis.reference_values import bcg_effects, reference_csv  # noqa: F401 (re-exported)

shared_csv = reference_csv
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the originals, when present
