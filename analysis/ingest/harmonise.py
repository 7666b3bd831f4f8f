"""Harmonisation: raw trial tables + specs -> one validated master data set.

Intention to treat: a randomised participant leaves the master data only when it is unknown
who they are or which arm they were randomised to (missing or duplicate identifier, missing
arm, or an exclusion the spec states); such records go to the exclusion log with a reason.
Any other unusable value (a missing-value code, a number out of range, an implausible BMI,
an unreadable date) is set missing for that variable only and logged in the value log.
Every raw row is accounted for: in the master data, in the exclusion log, or (a visit that
cannot be used) in the value log. Problems with a spec or a whole file stop the run with an
InputError, and so does a spec that looks wrong (one reason hitting more than a tenth of a
trial's records or of a column's values).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputError
from analysis.ingest.guards import cross_trial_problems, spec_problems
from analysis.ingest.instruments import INSTRUMENTS
from analysis.ingest.readers import is_excel_serial
from analysis.ingest.records import Records, TrialState, assign_windows, build_records, display, read_tables
from analysis.ingest.spec import TrialSpec, code_key, code_keys, distinct_code_keys, load_specs
from analysis.parallel import run_tasks
from analysis.settings import PLAUSIBLE, RECOVERY_THRESHOLD, RECOVERY_TOLERANCE, WINDOWS

__all__ = ["TrialResult", "harmonise_trial", "harmonise_all", "assign_windows", "derive_age", "derive_bmi",
           "spec_problems", "cross_trial_problems", "PARTICIPANT_COLUMNS", "OUTCOME_COLUMNS", "EXCLUSION_COLUMNS",
           "VALUE_ISSUE_COLUMNS", "EXCLUSION_REASONS", "VALUE_REASONS"]

PARTICIPANT_COLUMNS = [
    "trial_id", "participant_id", "arm", "exercise", "comparison", "age", "female", "bmi",
    "heavy_work", "medication", "employed", "education_post_secondary", "duration_months",
    "pain_bl", "function_bl",
]
OUTCOME_COLUMNS = ["trial_id", "participant_id", "window", "months", "pain", "function", "recovered"]
EXCLUSION_COLUMNS = ["trial_id", "source_file", "source_row", "participant_id", "reason"]
VALUE_ISSUE_COLUMNS = ["trial_id", "source_file", "source_row", "participant_id", "column", "value", "reason"]
VISIT_COLUMNS = ["trial_id", "participant_id", "window", "months", "pain", "function"]
# why a record is not a participant of the master data (CONTRACT.md)
EXCLUSION_REASONS = ("missing_id", "duplicate_id", "missing_arm", "excluded_by_spec", "unknown_id")
# why a single value was set missing, or a visit record not used
VALUE_REASONS = ("missing_code", "declared_missing", "non_numeric", "out_of_range", "implausible_age",
                 "implausible_bmi", "implausible_height", "implausible_weight", "implausible_duration",
                 "invalid_date", "duplicate_visit", "no_baseline", "missing_visit", "followup_outside_windows")
# Numeric tolerance for a value that is a hair outside its range through floating point.
_EPS = 1e-9
_NON_NUMERIC_STOP = 0.5  # above this share of unreadable values a column is a spec problem
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?$")


@dataclass
class TrialResult:
    spec: TrialSpec
    participants: pd.DataFrame
    outcomes: pd.DataFrame
    exclusions: pd.DataFrame
    value_issues: pd.DataFrame
    log: list = field(default_factory=list)  # (step, detail)
    received: int = 0  # participant records found (one per identifier and its rows)
    excluded_codes: list = field(default_factory=list)  # first reason code of each excluded record
    visits: pd.DataFrame = None  # every observed follow-up inside a window (for sensitivity analyses)
    column_values: dict = field(default_factory=dict)  # column -> number of raw values read (for guards)
    # every raw row read, in reading order: its table (a number in ``sources``), its 1-based row
    # and whether it is behind a participant of the master data. Arrays, not sets of (file, row)
    # pairs: a worker sends the result to the main process, and unpickling those sets took
    # two thirds of the time a result took to arrive (1.7 s at a million participants)
    sources: list = field(default_factory=list)
    row_source: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    row_number: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    row_used: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def raw_rows(self) -> set:
        """Every (source_file, source_row) read."""
        return self._pairs(np.ones(len(self.row_number), bool))

    @property
    def used_rows(self) -> set:
        """The (source_file, source_row) behind the participants in the master data."""
        return self._pairs(self.row_used)

    def _pairs(self, rows) -> set:
        return set(zip([self.sources[s] for s in self.row_source[rows]], self.row_number[rows].tolist()))


# ----------------------------------------------------------------------------- derivations


def derive_age(birth_year, enrolment_date):
    """Age in years at enrolment from the birth year, taking mid-year (1 July) as the
    birthday: the expected value when only the year is known (error at most 0.5 year)."""
    by = pd.to_numeric(pd.Series(birth_year), errors="coerce").to_numpy(float)
    enrol = pd.to_datetime(pd.Series(enrolment_date), errors="coerce", format="ISO8601")
    out = np.full(len(by), np.nan)
    ok = ~np.isnan(by) & enrol.notna().to_numpy()
    # numpy calendar arithmetic, not pd.to_datetime: a miscoded year (-99, 9999) must give an
    # implausible age to be logged, not an out-of-bounds error
    year = (by[ok].astype(np.int64) - 1970).astype("datetime64[Y]")
    mid = year.astype("datetime64[M]") + np.timedelta64(6, "M")
    days = enrol[ok].to_numpy().astype("datetime64[D]") - mid.astype("datetime64[D]")
    out[ok] = days.astype(float) / 365.25
    return out


def _age_from_dates(birth, enrol):
    """Exact age in years between two date arrays (datetime64)."""
    return (enrol - birth).astype("timedelta64[D]").astype(float) / 365.25


def derive_bmi(height, weight, height_unit="cm", weight_unit="kg"):
    """BMI = weight (kg) / height (m)^2, after converting units (1 lb = 0.45359237 kg)."""
    h = np.asarray(height, float) / (100.0 if height_unit == "cm" else 1.0)
    w = np.asarray(weight, float) * (0.45359237 if weight_unit == "lb" else 1.0)
    return w / h**2


_MONTHS_PER = {"days": 12 / 365.25, "weeks": 12 / 52, "months": 1.0, "years": 12.0}


def _recovered(pain, function, threshold=RECOVERY_THRESHOLD):
    rec = ((pain <= threshold + RECOVERY_TOLERANCE) & (function <= threshold + RECOVERY_TOLERANCE)).astype(float)
    rec[np.isnan(pain) | np.isnan(function)] = np.nan
    return rec


# ----------------------------------------------------------------------------- values


def _set_missing(t: TrialState, records: Records, column: str, mask: np.ndarray, values, reason: str, label=None):
    """Log the flagged values of ``column`` as set missing (their raw row and participant)."""
    if not np.asarray(mask).any():
        return
    idx = np.flatnonzero(mask)
    rows = records.row_of[column][idx]
    t.issue(rows, records.pid.iloc[idx].to_numpy(), label or column, [values[i] for i in idx], reason)


def _decimal_comma(t: TrialState, column: str) -> bool:
    s = t.source_of(column)
    return s.format == "csv" and s.decimal == ","


def _numeric(t: TrialState, records: Records, column: str, field_name: str, label: str | None = None) -> np.ndarray:
    """Parse a column as numbers; an unreadable value is set missing (and logged), and a column
    that is mostly unreadable stops the run (the spec points at the wrong column)."""
    raw = records.rec[column]
    if raw.dtype.kind in "fiu":  # read as numbers already: nothing to strip or to fail
        values = raw.to_numpy(float)
        present = raw.notna().to_numpy()
    else:  # each distinct value is read once (a column holds far fewer than its rows)
        codes, distinct = pd.factorize(raw)  # a missing value gets code -1: the entries appended last
        text = [v.strip() if isinstance(v, str) else v for v in distinct.tolist()]
        if _decimal_comma(t, column):
            text = [v.replace(",", ".") if isinstance(v, str) else v for v in text]
        numbers = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(float)
        values = np.append(numbers, np.nan)[codes]
        present = ~np.array([v == "" for v in text] + [True], bool)[codes]  # neither blank nor missing
    bad = np.isnan(values) & present
    n_present = int(present.sum())
    t.column_values[label or column] = t.column_values.get(label or column, 0) + n_present
    if bad.any():
        if n_present and bad.sum() / n_present > _NON_NUMERIC_STOP:
            examples = ", ".join(repr(v) for v in pd.unique(raw[bad])[:5])
            raise t.error(f"column is not numeric ({bad.sum()} of {n_present} values unreadable)",
                          t.source_of(column), column=label or column, expected=f"numbers for {field_name}",
                          found=examples)
        _set_missing(t, records, column, bad, raw.to_numpy(), "non_numeric", label)
    return values


def _in_range(t, records, values, column, low, high, reason, label=None, shown=None):
    """Values outside [low, high] set missing and logged; returns the cleaned values.
    ``shown``: what the log shows for each value when it was derived from another column
    (e.g. the birth year behind a derived age), instead of the value itself."""
    bad = ~np.isnan(values) & ((values < low - _EPS) | (values > high + _EPS))
    if shown is None:  # the raw value as the log shows it, for the flagged rows only
        shown = np.full(len(values), None, dtype=object)
        shown[bad] = [display(float(v)) for v in values[bad]]
    _set_missing(t, records, column, bad, shown, reason, label)
    return np.where(bad, np.nan, values)


def _dates(t: TrialState, records: Records, column: str, date_format: str | None, field_name: str) -> np.ndarray:
    """Dates as datetime64[D]. Excel date cells and Excel serial numbers (in workbooks) are
    dates; text needs ``date_format`` unless it is ISO 8601 (2008-03-01). A text date without a
    format stops the run: day-first and month-first cannot be told apart, and are never guessed."""
    raw = records.rec[column]
    out = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[D]")
    present = raw.notna().to_numpy()
    t.column_values[column] = t.column_values.get(column, 0) + int(present.sum())
    source = t.source_of(column)
    is_date = np.array([isinstance(v, (datetime, pd.Timestamp)) for v in raw], bool)
    out[is_date] = pd.to_datetime(raw[is_date]).to_numpy().astype("datetime64[D]")
    numbers = pd.to_numeric(raw.where(~is_date), errors="coerce").to_numpy(float)
    if source.format == "xlsx":
        serial = ~is_date & is_excel_serial(numbers)
        out[serial] = (np.datetime64("1899-12-30") + numbers[serial].astype(int).astype("timedelta64[D]"))
        is_date |= serial
    text = present & ~is_date
    if text.any():
        strings = raw[text].map(lambda v: str(v).strip())
        if date_format is None:
            not_iso = ~strings.str.match(_ISO_DATE)
            if not_iso.any():
                examples = ", ".join(repr(v) for v in pd.unique(strings[not_iso])[:5])
                raise t.error("dates written as text need their format in the spec (day-first and month-first "
                              "cannot be told apart, and are never guessed)", source, column=column,
                              expected=f"ISO dates (2008-03-01) or {field_name}.date_format, e.g. '%d/%m/%Y'",
                              found=examples)
            parsed = pd.to_datetime(strings, errors="coerce", format="ISO8601")
        else:
            parsed = pd.to_datetime(strings, errors="coerce", format=date_format)
        out[text] = parsed.to_numpy().astype("datetime64[D]")
        bad = np.zeros(len(raw), bool)
        bad[np.flatnonzero(text)[parsed.isna().to_numpy()]] = True
        if bad.any():
            if bad.sum() / max(int(text.sum()), 1) > _NON_NUMERIC_STOP:
                examples = ", ".join(repr(v) for v in pd.unique(raw[bad])[:5])
                raise t.error(f"most dates do not match the format {date_format or 'ISO 8601'!r}", source,
                              column=column, expected=f"{field_name}.date_format to describe them", found=examples)
            _set_missing(t, records, column, bad, raw.to_numpy(), "invalid_date")
    return out


def _coded(t: TrialState, records: Records, spec_field, name) -> np.ndarray:
    """The 0/1 values of a coded covariate (NaN where missing or a missing code), looked up
    once per distinct raw value; a value without a code stops harmonisation."""
    numbers, keys = distinct_code_keys(records.rec[spec_field.column])
    known, missing_codes = spec_field.codes, set(spec_field.missing)
    unknown = [j for j, key in enumerate(keys) if key not in known and key not in missing_codes]
    if unknown:
        vals = sorted({keys[j] for j in unknown})
        raise t.error(f"value(s) {', '.join(map(repr, vals))} have no code in covariates.{name}.codes "
                      f"({int(np.isin(numbers, unknown).sum())} rows)", t.source_of(spec_field.column),
                      column=spec_field.column, expected=f"one of {sorted(spec_field.codes)} or a listed missing code")
    # number -1 (a missing value) takes the NaN at the end
    return np.array([float(known[key]) if key in known else np.nan for key in keys] + [np.nan])[numbers]


# ----------------------------------------------------------------------------- the trial


def _covariates(t: TrialState, records: Records, out: dict) -> None:
    """The covariates' harmonised values, added to ``out`` (column name: values)."""
    spec, n = t.spec, len(records.rec)
    cov = spec.covariates
    age = np.full(n, np.nan)
    if cov.age and cov.age.column:
        age = _numeric(t, records, cov.age.column, "age in years")
        age_col = cov.age.column
    elif cov.age:
        enrol = _dates(t, records, cov.age.enrolment_date, cov.age.date_format, "covariates.age")
        if cov.age.birth_year:
            by = _numeric(t, records, cov.age.birth_year, "birth year")
            age = derive_age(by, enrol)
            age_col = cov.age.birth_year
            t.log.append(("age derived", f"from {cov.age.birth_year} and {cov.age.enrolment_date} "
                                         "(birthday taken as 1 July)"))
        else:
            birth = _dates(t, records, cov.age.birth_date, cov.age.date_format, "covariates.age")
            age = _age_from_dates(birth, enrol)
            age_col = cov.age.birth_date
            t.log.append(("age derived", f"from {cov.age.birth_date} and {cov.age.enrolment_date}"))
        if cov.age.date_format:
            t.log.append(("dates read", f"{cov.age.enrolment_date}: format {cov.age.date_format}"))
    if cov.age:
        from_birth_year = cov.age.birth_year and not cov.age.column  # the log shows the year as read
        age = _in_range(t, records, age, age_col, *PLAUSIBLE["age"], "implausible_age",
                        shown=records.rec[age_col].to_numpy() if from_birth_year else None)
    out["age"] = age
    bmi = np.full(n, np.nan)
    if cov.bmi and cov.bmi.column:
        bmi = _numeric(t, records, cov.bmi.column, "BMI in kg/m2")
        bmi = _in_range(t, records, bmi, cov.bmi.column, *PLAUSIBLE["bmi"], "implausible_bmi")
    elif cov.bmi:
        h = _numeric(t, records, cov.bmi.height, f"height in {cov.bmi.height_unit}")
        w = _numeric(t, records, cov.bmi.weight, f"weight in {cov.bmi.weight_unit}")
        h_cm = h * (100 if cov.bmi.height_unit == "m" else 1)
        w_kg = w * (0.45359237 if cov.bmi.weight_unit == "lb" else 1)
        h_ok = _in_range(t, records, h_cm, cov.bmi.height, *PLAUSIBLE["height_cm"], "implausible_height")
        w_ok = _in_range(t, records, w_kg, cov.bmi.weight, *PLAUSIBLE["weight_kg"], "implausible_weight")
        bmi = np.where(np.isnan(h_ok) | np.isnan(w_ok), np.nan, derive_bmi(h, w, cov.bmi.height_unit,
                                                                           cov.bmi.weight_unit))
        t.log.append(("BMI derived", f"weight ({cov.bmi.weight_unit}) / height ({cov.bmi.height_unit})^2"))
    out["bmi"] = bmi
    for name in ("female", "heavy_work", "medication", "employed", "education_post_secondary"):
        f = getattr(cov, name)
        out[name] = _coded(t, records, f, name) if f else np.nan
        if f:
            t.log.append((f"{name} recoded", ", ".join(f"{k} -> {v}" for k, v in f.codes.items())))
    if cov.duration_months:
        d = _numeric(t, records, cov.duration_months.column, f"duration in {cov.duration_months.unit}")
        out["duration_months"] = _in_range(t, records, d * _MONTHS_PER[cov.duration_months.unit],
                                           cov.duration_months.column, *PLAUSIBLE["duration_months"],
                                           "implausible_duration")
        if cov.duration_months.unit != "months":
            t.log.append(("duration converted", f"{cov.duration_months.unit} to months"))
    else:
        out["duration_months"] = np.nan
    not_measured = [c for c in ("age", "female", "bmi", "heavy_work", "medication", "employed",
                                "education_post_secondary", "duration_months") if getattr(cov, c) is None]
    if not_measured:
        t.log.append(("covariates not measured", ", ".join(not_measured)))


def _scores(t: TrialState, records: Records) -> dict:
    """Every outcome value rescaled to 0-100 (higher = worse), by (outcome, months)."""
    spec = t.spec
    scores = {}
    for name, o in spec.outcomes.items():
        ins = INSTRUMENTS[o.instrument]
        baseline = f"__{name}_0" if f"__{name}_0" in records.rec else o.baseline
        for m, col in {0.0: baseline, **records.followup[name]}.items():
            label = o.column if col.startswith("__") else col
            v = _numeric(t, records, col, f"{name} ({o.instrument})", label)
            v = _in_range(t, records, v, col, ins.low, ins.high, "out_of_range", label)
            scores[(name, m)] = np.clip(ins.to_0_100(v), 0, 100)
        t.log.append((f"{name} rescaled", f"{ins.label}: 100 x (x - {ins.low:g}) / {ins.high - ins.low:g}"
                      + ("" if ins.higher_is_worse else ", reversed (higher = better on the raw scale)")))
    return scores


def _identify(t: TrialState, records: Records) -> pd.Series:
    """Exclusions for records whose participant or arm is unknown; returns the arm codes."""
    spec, pid = t.spec, records.pid
    t.exclude(pid == "", lambda i: f"missing_id: column {spec.participant_id} is empty")
    t.exclude(pid.isin(records.duplicate_ids) & (pid != ""),
              lambda i: f"duplicate_id: {spec.participant_id} {pid[i]!r} occurs more than once")
    t.exclude(pid.isin(list(spec.exclude)),
              lambda i: f"excluded_by_spec: {spec.exclude[pid[i]]}")
    arm_keys = code_keys(records.rec[spec.arm.column])
    unmapped = arm_keys[arm_keys.notna() & ~arm_keys.isin(list(spec.arm.labels))]
    if len(unmapped):
        vals = sorted(set(unmapped))
        raise t.error(f"arm label(s) {', '.join(map(repr, vals))} are not mapped in arm.labels ({len(unmapped)} rows)",
                      t.source_of(spec.arm.column), column=spec.arm.column,
                      expected=f"one of {sorted(spec.arm.labels)}")
    t.exclude(arm_keys.isna(), lambda i: f"missing_arm: column {spec.arm.column} is empty")
    present = set(arm_keys.dropna())
    if not any(spec.arm.labels[k] == "exercise" for k in present) or len({spec.arm.labels[k] for k in present}) < 2:
        t.log.append(("warning", "the file does not contain both an exercise and a comparison arm"))
    return arm_keys


def harmonise_trial(spec: TrialSpec, raw_dir) -> TrialResult:
    """Harmonise one trial; record and value problems are logged, spec problems raise."""
    t = TrialState(spec, raw_dir)
    records = build_records(t, read_tables(t))
    n = len(records.rec)
    arm_keys = _identify(t, records)
    # the participants' columns, gathered and made into a frame at once (pandas checks its
    # options on every column added to a frame: 0.1 ms a column, a fifth of a trial's time)
    comparison = arm_keys.map(spec.arm.labels)
    out = {"trial_id": spec.trial_id, "participant_id": records.pid,
           "arm": arm_keys.map(lambda k: spec.arm.names.get(k, k) if k else None), "comparison": comparison,
           "exercise": (comparison == "exercise").astype(int)}
    scores = _scores(t, records)
    out["pain_bl"] = scores[("pain", 0.0)]
    out["function_bl"] = scores[("function", 0.0)]
    _covariates(t, records, out)

    excluded = np.zeros(n, bool)
    excluded[list(t.excluded)] = True
    keep = ~excluded
    participants = pd.DataFrame({c: out[c] for c in PARTICIPANT_COLUMNS}).loc[keep].reset_index(drop=True)
    participants = _as_types(participants, {"trial_id": str, "participant_id": str, "arm": str, "comparison": str})
    pid = records.pid.astype(str).to_numpy()
    months = sorted({m for f in records.followup.values() for m in f})
    # each window's rows as arrays, made into one frame per table at the end (a frame per
    # window and visit, then concatenated, took a quarter of a trial's time)
    outcome_parts, visit_parts = [], []
    nothing = np.full(n, np.nan)
    for window, candidates in assign_windows(months).items():
        pain = np.column_stack([scores.get(("pain", m), nothing) for m in candidates])
        func = np.column_stack([scores.get(("function", m), nothing) for m in candidates])
        observed = ~(np.isnan(pain) & np.isnan(func))
        first = np.where(observed.any(axis=1), observed.argmax(axis=1), 0)
        rows = np.arange(n)
        p, f = pain[rows, first], func[rows, first]
        seen = keep & observed.any(axis=1)  # only visits with at least one outcome value
        outcome_parts.append((pid[seen], np.full(int(seen.sum()), window, dtype=object),
                              np.asarray(candidates, float)[first][seen], p[seen], f[seen], _recovered(p, f)[seen]))
        for j, m in enumerate(candidates):
            at = keep & observed[:, j]
            visit_parts.append((pid[at], np.full(int(at.sum()), window, dtype=object), np.full(int(at.sum()), float(m)),
                                pain[at, j], func[at, j]))
    outcomes = _stacked(spec.trial_id, OUTCOME_COLUMNS, outcome_parts)
    outcomes = _as_types(outcomes, {"trial_id": str, "participant_id": str, "window": str, "months": float,
                                    "pain": float, "function": float, "recovered": float})
    visits = _stacked(spec.trial_id, VISIT_COLUMNS, visit_parts, by_participant=True)
    exclusions, value_issues = _logs(t, records)
    used = np.zeros(len(t.origin), bool)
    used[[r for i in np.flatnonzero(keep) for r in records.rows[i]]] = True
    used[list(t.unused)] = False
    excluded_codes = [reasons[0].split(":")[0] for _, reasons in sorted(t.excluded.items())]
    return TrialResult(spec, participants, outcomes.reset_index(drop=True), exclusions, value_issues, t.log,
                       received=n, excluded_codes=excluded_codes,
                       visits=visits.reset_index(drop=True), column_values=t.column_values,
                       sources=[label for label, _ in t.tables_read],
                       row_source=np.repeat(np.arange(len(t.tables_read), dtype=np.int32),
                                            [len(rows) for _, rows in t.tables_read]),
                       row_number=np.concatenate([rows for _, rows in t.tables_read] or [np.zeros(0, np.int32)]),
                       row_used=used)


def _stacked(trial_id: str, columns: list[str], parts: list[tuple], by_participant=False) -> pd.DataFrame:
    """One frame of ``columns`` (the trial's id, then one column per entry of each part) from
    the parts' arrays, one after another; an empty frame of those columns when there are none.
    ``by_participant``: rows sorted by participant (the first array of a part), then months
    (the third), stably: what sort_values(["participant_id", "months"], kind="stable") gives,
    on the arrays before there is a frame (a third of the time)."""
    if not parts:
        return pd.DataFrame(columns=columns)
    stacked = [np.concatenate(arrays) for arrays in zip(*parts)]
    if by_participant:
        order = np.lexsort((stacked[2], pd.factorize(stacked[0], sort=True)[0]))  # the last key sorts first
        stacked = [values[order] for values in stacked]
    return pd.DataFrame({"trial_id": trial_id, **dict(zip(columns[1:], stacked))})


def _as_types(frame: pd.DataFrame, dtypes: dict) -> pd.DataFrame:
    """``frame.astype(dtypes)``, converting only the columns not of their type already, each
    on its own: astype copies every column it is given, and given a dict it rebuilds the whole
    frame (2 ms for a demo trial's participants, where one column of fifteen needs converting;
    0.07 ms as one new column)."""
    todo = {c: t for c, t in dtypes.items() if frame[c].dtype != pd.api.types.pandas_dtype(t)}
    return frame.assign(**{c: frame[c].astype(t) for c, t in todo.items()}) if todo else frame


def _logs(t: TrialState, records: Records):
    """The exclusion log (every row of an excluded record, and rows that are no participant's)
    and the value log (values set missing and visit records not used, for the records kept)."""
    spec = t.spec
    excl = []
    excluded_rows = set()
    for i, reasons in sorted(t.excluded.items()):
        for r in dict.fromkeys(records.rows[i]):
            excl.append((spec.trial_id, *t.origin[r], records.pid[i], "; ".join(dict.fromkeys(reasons))))
            excluded_rows.add(r)
    for r, p, reason in t.orphans:
        excl.append((spec.trial_id, *t.origin[r], code_key(p) if p else "", reason))
        excluded_rows.add(r)
    # sorted (by file and row; Python's sort is stable, as the frame's was) and without repeats
    # as lists: sorting and de-duplicating a few rows as frames cost more than the rest of the logs
    excl.sort(key=lambda row: (row[1], row[2]))
    exclusions = _as_types(pd.DataFrame(excl, columns=EXCLUSION_COLUMNS), {"source_row": "int64"})  # int when empty
    issues = sorted(((spec.trial_id, *t.origin[r], p, col, v, reason) for r, p, col, v, reason in t.issues
                     if r >= 0 and r not in excluded_rows), key=lambda row: (row[1], row[2], row[4]))
    issues = list(dict.fromkeys(issues))  # the first of identical rows (every value is text, an int or None)
    value_issues = _as_types(pd.DataFrame(issues, columns=VALUE_ISSUE_COLUMNS), {"source_row": "int64"})
    return exclusions, value_issues


# ----------------------------------------------------------------------------- all trials


def flow_table(results: list[TrialResult]) -> pd.DataFrame:
    """Counts per trial: received, excluded by reason, values set missing by reason,
    analysed, analysed per window. Counted with Counter on the columns' values (pandas'
    value_counts, twice per trial, took 15 ms of the demo's serial end of harmonising)."""
    rows = []
    not_set_missing = ("followup_outside_windows", "missing_visit", "duplicate_visit", "no_baseline")
    for r in results:
        row = {"trial_id": r.spec.trial_id, "received": r.received, "excluded": r.received - len(r.participants)}
        for reason in EXCLUSION_REASONS:
            row[f"excluded_{reason}"] = r.excluded_codes.count(reason)
        issues = _counts(r.value_issues.reason.to_numpy(object))
        row["values_set_missing"] = sum(issues.values()) - sum(issues[reason] for reason in not_set_missing)
        for reason in VALUE_REASONS:
            if reason not in ("followup_outside_windows",):
                row[f"missing_{reason}"] = issues[reason]
        row["analysed"] = len(r.participants)
        o = r.outcomes
        seen = _counts(o.window.to_numpy(object)[(o.pain.notna() | o.function.notna()).to_numpy()])
        for w in WINDOWS:
            row[f"analysed_{w.name}"] = seen[w.name]
        row["records_outside_windows"] = issues["followup_outside_windows"]
        rows.append(row)
    return pd.DataFrame(rows)


def _counts(values: np.ndarray) -> Counter:
    """How often each value occurs, missing values left out (as value_counts does)."""
    return Counter(values[pd.notna(values)].tolist())


def trials_table(results: list[TrialResult]) -> pd.DataFrame:
    """Trial characteristics for the report, from the specs and the harmonised data."""
    rows = []
    for r in results:
        s = r.spec
        comps = sorted(set(s.arm.labels.values()) - {"exercise"})
        months = sorted({m for o in s.outcomes.values() for m in o.followup} |
                        ({m for m in s.long.time_values.values() if m > 0} if s.long else set()))
        measured = [c for c, v in s.covariates if v is not None]
        layouts = list(dict.fromkeys(t.layout for t in s.tables))
        rows.append({
            "trial_id": s.trial_id, "title": s.title, "setting": s.setting,
            "file_format": "; ".join(dict.fromkeys(t.format for t in s.tables)),
            "layout": "; ".join(layouts) + (f" ({len(s.tables)} tables)" if len(s.tables) > 1 else ""),
            "arms": "; ".join(dict.fromkeys(s.arm.names.get(k, k) for k in s.arm.labels)),
            "comparisons": "; ".join(comps), "n_arms": len(set(s.arm.labels)),
            "pain_instrument": s.outcomes["pain"].instrument, "function_instrument": s.outcomes["function"].instrument,
            "followup_months": "; ".join(f"{m:g}" for m in months), "risk_of_bias": s.risk_of_bias,
            "covariates_measured": "; ".join(measured), "received": r.received, "analysed": len(r.participants),
        })
    return pd.DataFrame(rows)


def instruments_table() -> pd.DataFrame:
    """Every known instrument and its rescaling to 0-100 (for the methods chapter)."""
    return pd.DataFrame([{"name": i.name, "label": i.label, "short": i.short, "domain": i.domain, "low": i.low,
                          "high": i.high, "higher_is_worse": i.higher_is_worse, "resolution": i.resolution}
                         for i in INSTRUMENTS.values()])


def _harmonised(spec: TrialSpec, raw_dir) -> tuple[TrialResult, list[str]]:
    """A trial's result and the signs that its spec is wrong (``spec_problems``), computed
    where the trial was harmonised (a thousand trials' checks took a second in the parent)."""
    result = harmonise_trial(spec, raw_dir)
    return result, spec_problems(result)


def _each_trial(specs, raw_dir, progress=None, jobs: int = 1) -> list[tuple[TrialResult, list[str]]]:
    """``_harmonised`` for every spec, in spec order: here, or in ``jobs`` forked processes
    (each trial is independent and deterministic, so the results are the same). The first
    failing trial in spec order raises, as in a serial run."""
    return run_tasks([(_harmonised, (s, raw_dir)) for s in specs], jobs,
                     (lambda i: progress(specs[i].trial_id)) if progress else None)


def harmonise_all(spec_dir, raw_dir, progress=None, jobs: int = 1) -> tuple[list[TrialResult], dict]:
    """Harmonise every trial (``jobs`` processes); returns the per-trial results and the
    combined tables. Stops when a spec looks wrong (spec_problems, cross_trial_problems):
    `check` lists them all."""
    specs = load_specs(spec_dir)
    problems = cross_trial_problems(specs)
    if problems:
        raise InputError(problems[0], file=Path(spec_dir), hint="fix the spec; `python -m analysis check` lists "
                                                                 "every problem")
    harmonised = _each_trial(specs, raw_dir, progress, jobs)
    results = [result for result, _ in harmonised]
    problems = [p for _, found in harmonised for p in found] + cross_trial_problems(specs, results)
    if problems:
        raise InputError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                         file=Path(spec_dir), hint="the spec is the likely problem; `python -m analysis check` "
                                                   "lists every one")
    tables = {
        "participants": pd.concat([r.participants for r in results], ignore_index=True),
        "outcomes": pd.concat([r.outcomes for r in results], ignore_index=True),
        "exclusions": pd.concat([r.exclusions for r in results], ignore_index=True),
        "value_issues": pd.concat([r.value_issues for r in results], ignore_index=True),
        "visits": pd.concat([r.visits for r in results], ignore_index=True),
        "flow": flow_table(results),
        "trials": trials_table(results),
        "instruments": instruments_table(),
        "harmonisation_log": pd.DataFrame([(r.spec.trial_id, step, detail) for r in results for step, detail in r.log],
                                          columns=["trial_id", "step", "detail"]),
    }
    return results, tables
