"""Schemas of the derived data (CONTRACT.md), checked with pandera before anything is written."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from analysis.errors import InputError
from analysis.settings import ARM_TYPES, PLAUSIBLE

__all__ = ["PARTICIPANTS", "OUTCOMES", "validate"]

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
)


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema, name: str) -> pd.DataFrame:
    """Validate; a failure is a bug or a bad input the checks upstream missed: say which."""
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.head(5)
        detail = "; ".join(f"column {r.column}: {r.check} failed for {r.failure_case!r}" for r in cases.itertuples())
        raise InputError(f"derived {name} failed validation: {detail}", file=f"data/derived/{name}.csv") from None
