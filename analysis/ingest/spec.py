"""Trial specifications (data/specs/<trial_id>.yaml): what an analyst writes after reading
a trial's data dictionary. Validated on load; errors name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis.errors import InputError
from analysis.ingest.instruments import INSTRUMENTS

# libyaml's safe loader where PyYAML was built with it (the same documents, ten times faster)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["TrialSpec", "load_spec", "load_specs", "code_key", "code_keys", "distinct_code_keys"]


_WHOLE_WITH_ZEROS = re.compile(r"^(-?\d+)[.,]0+$")


def code_key(value) -> str:
    """Normalise a raw code so that 1, 1.0, '1', '1.0' and ' 1 ' compare equal (a text file
    written from a numeric column says '-99.0' where the spec says -99); text such as '007'
    is kept as it is."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    whole = _WHOLE_WITH_ZEROS.match(text)
    return whole.group(1) if whole else text


def distinct_code_keys(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's number among the column's distinct values (-1 where missing) and each
    distinct value's code_key: a lookup of codes then works on the few distinct values and
    takes the rows' results by their numbers (an eighth of the cost of a pandas map)."""
    numbers, distinct = pd.factorize(values)
    return numbers, [code_key(v) for v in distinct.tolist()]  # tolist: as iterating gives them, five times faster


def code_keys(values: pd.Series) -> pd.Series:
    """code_key for a whole column (None where missing), each distinct value normalised once."""
    numbers, keys = distinct_code_keys(values)
    return pd.Series(np.array(keys + [None], dtype=object)[numbers], index=values.index, dtype=object)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


FORMATS = ("csv", "xlsx", "sav", "dta", "sas7bdat", "xpt")


class Source(_Model):
    """One table of a trial: a file, or a sheet of a workbook."""

    file: str
    format: Literal["csv", "xlsx", "sav", "dta", "sas7bdat", "xpt"]
    delimiter: str = ","
    decimal: Literal[".", ","] = "."
    sheet: str | int | None = None
    layout: Literal["wide", "long"] = "wide"
    encoding: str = "utf-8"
    participant_id: str | None = None  # this table's id column, when it is named differently

    @property
    def label(self) -> str:
        """How the table is named in logs: the file, and the sheet when one is given."""
        return self.file if self.sheet is None else f"{self.file}[{self.sheet}]"


class LongLayout(_Model):
    time_column: str
    time_values: dict[str, float] = Field(description="raw visit code -> months since randomisation (0 = baseline)")

    @field_validator("time_values", mode="before")
    @classmethod
    def _keys(cls, v):
        return {code_key(k): val for k, val in (v or {}).items()}


class Arm(_Model):
    column: str
    labels: dict[str, Literal["exercise", "none_usual_care", "other_conservative"]]
    names: dict[str, str] = {}

    @field_validator("labels", "names", mode="before")
    @classmethod
    def _keys(cls, v):
        return {code_key(k): val for k, val in (v or {}).items()}


class Outcome(_Model):
    instrument: str
    baseline: str
    followup: dict[float, str] = {}  # wide layout: months -> column
    column: str | None = None  # long layout: the one column holding every visit

    @field_validator("instrument")
    @classmethod
    def _known(cls, v):
        if v not in INSTRUMENTS:
            raise ValueError(f"unknown instrument {v!r}; known instruments: {', '.join(INSTRUMENTS)}")
        return v


class Coded(_Model):
    column: str
    codes: dict[str, Literal[0, 1]]
    missing: list[str] = []  # raw codes that mean "not known" (e.g. 9)

    @field_validator("codes", mode="before")
    @classmethod
    def _keys(cls, v):
        return {code_key(k): val for k, val in (v or {}).items()}

    @field_validator("missing", mode="before")
    @classmethod
    def _missing(cls, v):
        return [code_key(x) for x in (v or [])]


class Age(_Model):
    column: str | None = None
    birth_year: str | None = None
    birth_date: str | None = None
    enrolment_date: str | None = None
    # how the dates are written, as for datetime.strptime (e.g. "%d/%m/%Y"); ISO dates
    # (2008-03-01) and Excel date cells need none. Never guessed: an ambiguous date stops `check`.
    date_format: str | None = None

    @model_validator(mode="after")
    def _one_way(self):
        if not self.column and not ((self.birth_year or self.birth_date) and self.enrolment_date):
            raise ValueError("give either column, or birth_year (or birth_date) and enrolment_date")
        if self.birth_year and self.birth_date:
            raise ValueError("give birth_year or birth_date, not both")
        return self


class Bmi(_Model):
    column: str | None = None
    height: str | None = None
    height_unit: Literal["cm", "m"] = "cm"
    weight: str | None = None
    weight_unit: Literal["kg", "lb"] = "kg"

    @model_validator(mode="after")
    def _one_way(self):
        if not self.column and not (self.height and self.weight):
            raise ValueError("give either column, or height and weight")
        return self


class Duration(_Model):
    column: str
    unit: Literal["days", "weeks", "months", "years"] = "months"


class Covariates(_Model):
    age: Age | None = None
    female: Coded | None = None
    bmi: Bmi | None = None
    heavy_work: Coded | None = None
    medication: Coded | None = None
    employed: Coded | None = None
    education_post_secondary: Coded | None = None
    duration_months: Duration | None = None


class TrialSpec(_Model):
    trial_id: str
    title: str = ""
    # one table (source), or several joined on the participant id (sources): the first of
    # them lists every randomised participant, and each column is read from the first table
    # that has it
    source: Source | None = None
    sources: list[Source] | None = None
    long: LongLayout | None = None
    participant_id: str
    drop_identifying: list[str] = []
    # codes that mean "not known": in every column, and in single columns (raw values as in
    # the file, e.g. -99, 999, "."); such values become missing and are logged, never excluded
    missing_values: list[str] = []
    missing_values_by_column: dict[str, list[str]] = {}
    # participants the spec excludes (participant id: reason), e.g. consent withdrawn
    exclude: dict[str, str] = {}
    arm: Arm
    outcomes: dict[Literal["pain", "function"], Outcome]
    covariates: Covariates = Covariates()
    risk_of_bias: Literal["low", "some_concerns", "high"]
    setting: str = ""
    notes: str = ""

    @field_validator("missing_values", mode="before")
    @classmethod
    def _codes(cls, v):
        return [code_key(x) for x in (v or [])]

    @field_validator("missing_values_by_column", mode="before")
    @classmethod
    def _codes_by_column(cls, v):
        return {str(col): [code_key(x) for x in (codes or [])] for col, codes in (v or {}).items()}

    @field_validator("exclude", mode="before")
    @classmethod
    def _exclude_keys(cls, v):
        return {code_key(k): str(reason) for k, reason in (v or {}).items()}

    @model_validator(mode="after")
    def _consistent(self):
        if (self.source is None) == (self.sources is None):
            raise ValueError("give either source (one table) or sources (several tables), not both or neither")
        if self.sources is not None and not self.sources:
            raise ValueError("sources: list at least one table")
        has_long = any(s.layout == "long" for s in self.tables)
        if has_long and self.long is None:
            raise ValueError("a table has layout long, so a 'long' section (time_column, time_values) is required")
        for name, out in self.outcomes.items():
            if INSTRUMENTS[out.instrument].domain != name:
                raise ValueError(
                    f"outcomes.{name}: instrument {out.instrument!r} measures "
                    f"{INSTRUMENTS[out.instrument].domain}, not {name}"
                )
            if has_long and not out.column:
                raise ValueError(f"outcomes.{name}.column is required for a long layout")
            if not has_long and not out.followup:
                raise ValueError(f"outcomes.{name}.followup (months: column) is required for a wide layout")
        kinds = set(self.arm.labels.values())
        if "exercise" not in kinds:
            raise ValueError("arm.labels: no label maps to 'exercise'")
        return self

    @property
    def tables(self) -> list[Source]:
        """The trial's tables, in the order the spec lists them."""
        return [self.source] if self.source is not None else list(self.sources)

    def missing_codes(self, column: str) -> set[str]:
        """The raw codes (normalised with code_key) that mean "not known" in ``column``."""
        return set(self.missing_values) | set(self.missing_values_by_column.get(column, []))

    def columns(self) -> dict[str, str]:
        """Every raw column the spec names, with the spec field that names it."""
        cols = {self.participant_id: "participant_id", self.arm.column: "arm.column"}
        if self.long:
            cols[self.long.time_column] = "long.time_column"
        for name, out in self.outcomes.items():
            cols[out.baseline] = f"outcomes.{name}.baseline"
            if out.column:
                cols[out.column] = f"outcomes.{name}.column"
            for m, c in out.followup.items():
                cols[c] = f"outcomes.{name}.followup.{m:g}"
        for cov, spec in self.covariates:
            if spec is None:
                continue
            for field, value in spec:
                if field in ("column", "birth_year", "birth_date", "enrolment_date", "height", "weight") and value:
                    cols[value] = f"covariates.{cov}.{field}"
        return cols


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"field {loc or '(top level)'}: {msg}")
    return "; ".join(parts)


def load_spec(path) -> TrialSpec:
    """Read and validate one spec; every problem becomes an InputError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the spec ({exc.strerror})", file=path) from None
    try:
        raw = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"YAML syntax error{where}: {problem}", file=path) from None
    if not isinstance(raw, dict):
        raise InputError("the spec must be a YAML mapping (field: value)", file=path, found=type(raw).__name__)
    try:
        spec = TrialSpec.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"invalid spec: {_format_validation(exc)}", file=path, trial=raw.get("trial_id")) from None
    if spec.trial_id != path.stem:
        raise InputError("trial_id must equal the file name", file=path, trial=spec.trial_id,
                         expected=f"trial_id: {path.stem}", found=spec.trial_id)
    return spec


def load_specs(spec_dir) -> list[TrialSpec]:
    spec_dir = Path(spec_dir)
    paths = sorted(p for p in spec_dir.glob("*.yaml") if not p.name.startswith("_"))
    if not paths:
        raise InputError("no trial specs found", file=spec_dir, expected="one <trial_id>.yaml per trial")
    return [load_spec(p) for p in paths]
