"""Schemas of the derived data (CONTRACT.md), checked with pandera before anything is written."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from analysis.errors import InputError
from analysis.settings import ARM_TYPES, PLAUSIBLE

__all__ = ["PARTICIPANTS", "OUTCOMES", "EXCLUSIONS", "VALUE_ISSUES", "validate", "load_backends"]

_binary = dict(nullable=True, checks=pa.Check.isin([0, 1]))
_score = dict(nullable=True, checks=pa.Check.in_range(0, 100))


def _plausible(name):
    low, high = PLAUSIBLE[name]
    return dict(nullable=True, checks=pa.Check.in_range(low, high))


PARTICIPANTS = pa.DataFrameSchema(
    {
        "trial_id": pa.Column(str),
        "participant_id": pa.Column(str, checks=pa.Check.str_length(min_value=1)),
        "arm": pa.Column(str),
        "exercise": pa.Column(int, checks=pa.Check.isin([0, 1])),
        "comparison": pa.Column(str, checks=pa.Check.isin(list(ARM_TYPES))),
        "age": pa.Column(float, **_plausible("age")),
        "female": pa.Column(float, **_binary),
        "bmi": pa.Column(float, **_plausible("bmi")),
        "heavy_work": pa.Column(float, **_binary),
        "medication": pa.Column(float, **_binary),
        "employed": pa.Column(float, **_binary),
        "education_post_secondary": pa.Column(float, **_binary),
        "duration_months": pa.Column(float, **_plausible("duration_months")),
        "pain_bl": pa.Column(float, **_score),
        "function_bl": pa.Column(float, **_score),
    },
    unique=["trial_id", "participant_id"],
    strict=True,
    ordered=True,
    checks=pa.Check(
        lambda d: (d.exercise == (d.comparison == "exercise")).all(), error="exercise must match comparison"
    ),
)

OUTCOMES = pa.DataFrameSchema(
    {
        "trial_id": pa.Column(str),
        "participant_id": pa.Column(str),
        "window": pa.Column(str, checks=pa.Check.isin(["short", "moderate", "long"])),
        "months": pa.Column(float, checks=pa.Check.in_range(0, 18, include_min=False)),
        "pain": pa.Column(float, **_score),
        "function": pa.Column(float, **_score),
        "recovered": pa.Column(float, **_binary),
    },
    unique=["trial_id", "participant_id", "window"],
    strict=True,
    ordered=True,
    checks=pa.Check(
        lambda d: d[["pain", "function", "recovered"]].notna().any(axis=1).all(),
        error="every visit holds at least one outcome value",
    ),
)


def _text(nullable=False, min_length=0):
    """A text column that may be empty: pandera's ``str`` rejects an empty object column, and a
    trial with nothing to log has empty logs."""
    return pa.Column(
        None,
        nullable=nullable,
        checks=pa.Check(
            lambda s: s.dropna().map(lambda v: isinstance(v, str) and len(v) >= min_length).all(),
            error=f"text of at least {min_length} characters",
        ),
    )


_located = {
    "trial_id": _text(min_length=1),
    "source_file": _text(min_length=1),
    "source_row": pa.Column(int, checks=pa.Check.ge(1)),
    "participant_id": _text(nullable=True),
}
_reason = _text(min_length=1)

# The two logs that account for every raw record (CONTRACT.md): where it came from and why.
EXCLUSIONS = pa.DataFrameSchema({**_located, "reason": _reason}, strict=True, ordered=True)
VALUE_ISSUES = pa.DataFrameSchema(
    {**_located, "column": _text(min_length=1), "value": _text(nullable=True), "reason": _reason},
    strict=True,
    ordered=True,
)


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema, name: str) -> pd.DataFrame:
    """Validate; a failure is a bug or a bad input the checks upstream missed: say which."""
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.head(5)
        detail = "; ".join(f"column {r.column}: {r.check} failed for {r.failure_case!r}" for r in cases.itertuples())
        raise InputError(f"derived {name} failed validation: {detail}", file=f"data/derived/{name}.csv") from None


def load_backends() -> None:
    """Have pandera load its validation backends now rather than at the first validation: it
    imports them (and hypothesis, for its data strategies) then, 0.15 s. ``all`` calls this
    while a child process writes the demo data, so that harmonise does not wait for it."""
    pa.DataFrameSchema({}).validate(pd.DataFrame())
