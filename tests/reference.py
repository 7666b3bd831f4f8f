"""Reference values (the results module of the tests): see analysis/book/reference_values.py,
where each block is headed by the exact call that produced it; the reference data sets are
read by analysis/analyses/validation.py."""

from pathlib import Path

from analysis.analyses.validation import REFERENCE_DATA, bcg_effects, reference_csv  # noqa: F401 (re-exported)
from analysis.book.reference_values import *  # noqa: F401,F403

shared_csv = reference_csv
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the originals, when present
