"""The derived-data schemas reject what CONTRACT.md rules out (each check can fail)."""

import pandas as pd
import pandera.pandas as pa
import pytest

from analysis.errors import InputError
from analysis.ingest.harmonise import EXCLUSION_COLUMNS, VALUE_ISSUE_COLUMNS
from analysis.ingest.schema import EXCLUSIONS, OUTCOMES, VALUE_ISSUES, validate


def _visit(pain, function, recovered):
    return pd.DataFrame({"trial_id": ["T1"], "participant_id": ["1"], "window": ["short"], "months": [3.0],
                         "pain": [pain], "function": [function], "recovered": [recovered]})


def test_a_visit_without_any_outcome_value_is_rejected():
    """Issue 15: outcomes.csv holds only visits with at least one outcome value."""
    OUTCOMES.validate(_visit(40.0, float("nan"), float("nan")))
    with pytest.raises(InputError, match="at least one outcome value"):
        validate(_visit(float("nan"), float("nan"), float("nan")), OUTCOMES, "outcomes")


def test_empty_logs_are_valid():
    """A trial with nothing to exclude has empty logs; they must still pass."""
    EXCLUSIONS.validate(pd.DataFrame([], columns=EXCLUSION_COLUMNS).astype({"source_row": "int64"}))
    VALUE_ISSUES.validate(pd.DataFrame([], columns=VALUE_ISSUE_COLUMNS).astype({"source_row": "int64"}))


def test_a_log_row_without_its_source_or_reason_is_rejected():
    good = ("T1", "T1.csv", 3, "17", "pain_0", "-99", "missing_code")
    VALUE_ISSUES.validate(pd.DataFrame([good], columns=VALUE_ISSUE_COLUMNS))
    for i, bad in [(1, ""), (2, 0), (6, "")]:
        row = list(good)
        row[i] = bad
        with pytest.raises(pa.errors.SchemaError):
            VALUE_ISSUES.validate(pd.DataFrame([row], columns=VALUE_ISSUE_COLUMNS))


@pytest.mark.parametrize("jobs", [1, 2])
def test_derived_tables_validated_side_by_side_fail_as_in_order(demo_run, jobs, monkeypatch):
    """Source of truth: the serial order (participants, outcomes, exclusions, value issues).
    harmonise validates the four tables in ``jobs`` processes (here whatever their size); the
    demo's pass, and with a bad outcome and a bad log row the error raised is the outcomes'
    (the first bad table in that order), naming the table, the column and the value."""
    from analysis import pipeline
    from analysis.pipeline import _validate_derived

    monkeypatch.setattr(pipeline, "POOLED_ROWS", 0)

    tables = {name: demo_run.tables[name].copy() for name in ("participants", "outcomes", "exclusions",
                                                               "value_issues")}
    _validate_derived(tables, jobs)
    tables["outcomes"].loc[3, "pain"] = 250.0
    tables["value_issues"].loc[0, "source_row"] = -5
    with pytest.raises(InputError, match=r"derived outcomes failed validation: column pain.*250"):
        _validate_derived(tables, jobs)
