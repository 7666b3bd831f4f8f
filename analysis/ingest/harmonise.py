"""Harmonisation: raw trial files + specs -> one validated master data set.

Every raw record ends either in the master data or in the exclusion log with a reason;
problems with a spec or a whole file stop the run with an InputError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputError
from analysis.ingest.instruments import INSTRUMENTS
from analysis.ingest.readers import read_raw
from analysis.ingest.spec import TrialSpec, code_key, code_keys, load_specs
from analysis.settings import PLAUSIBLE, RECOVERY_THRESHOLD, WINDOWS

__all__ = ["TrialResult", "harmonise_trial", "harmonise_all", "assign_windows", "derive_age",
           "derive_bmi", "PARTICIPANT_COLUMNS", "OUTCOME_COLUMNS", "EXCLUSION_COLUMNS"]

PARTICIPANT_COLUMNS = [
    "trial_id", "participant_id", "arm", "exercise", "comparison", "age", "female", "bmi",
    "heavy_work", "medication", "employed", "education_post_secondary", "duration_months",
    "pain_bl", "function_bl",
]
OUTCOME_COLUMNS = ["trial_id", "participant_id", "window", "months", "pain", "function", "recovered"]
EXCLUSION_COLUMNS = ["trial_id", "source_file", "source_row", "participant_id", "reason"]
VISIT_COLUMNS = ["trial_id", "participant_id", "window", "months", "pain", "function"]
# Numeric tolerance for a value that is a hair outside its range through floating point.
_EPS = 1e-9
_NON_NUMERIC_STOP = 0.5  # above this share of unreadable values a column is a spec problem


@dataclass
class TrialResult:
    spec: TrialSpec
    participants: pd.DataFrame
    outcomes: pd.DataFrame
    exclusions: pd.DataFrame
    log: list = field(default_factory=list)  # (step, detail)
    received: int = 0
    n_rows: int = 0
    used_rows: set = field(default_factory=set)
    excluded_codes: list = field(default_factory=list)  # first reason code of each excluded record
    visits: pd.DataFrame = None  # every observed follow-up inside a window (for sensitivity analyses)


# ----------------------------------------------------------------------------- derivations


def derive_age(birth_year, enrolment_date):
    """Age in years at enrolment from the birth year, taking mid-year (1 July) as the
    birthday: the expected value when only the year is known (error at most 0.5 year)."""
    by = pd.to_numeric(pd.Series(birth_year), errors="coerce").to_numpy(float)
    enrol = pd.to_datetime(pd.Series(enrolment_date), errors="coerce")
    out = np.full(len(by), np.nan)
    ok = ~np.isnan(by) & enrol.notna().to_numpy()
    mid = pd.to_datetime({"year": by[ok].astype(int), "month": 7, "day": 1})
    out[ok] = (enrol[ok].to_numpy() - mid.to_numpy()).astype("timedelta64[D]").astype(float) / 365.25
    return out


def derive_bmi(height, weight, height_unit="cm", weight_unit="kg"):
    """BMI = weight (kg) / height (m)^2, after converting units (1 lb = 0.45359237 kg)."""
    h = np.asarray(height, float) / (100.0 if height_unit == "cm" else 1.0)
    w = np.asarray(weight, float) * (0.45359237 if weight_unit == "lb" else 1.0)
    return w / h**2


_MONTHS_PER = {"days": 12 / 365.25, "weeks": 12 / 52, "months": 1.0, "years": 12.0}


def assign_windows(months_available):
    """For each window, the design time points inside it ordered by distance to the target
    (ties go to the later time point). Returns {window: [months, ...]}."""
    out = {}
    for w in WINDOWS:
        inside = [m for m in months_available if m > 0 and w.contains(m)]
        if inside:
            out[w.name] = sorted(inside, key=lambda m: (abs(m - w.target), -m))
    return out


def _recovered(pain, function, threshold=RECOVERY_THRESHOLD):
    rec = ((pain <= threshold) & (function <= threshold)).astype(float)
    rec[np.isnan(pain) | np.isnan(function)] = np.nan
    return rec


# ----------------------------------------------------------------------------- reading


class _Trial:
    """Working state of one trial's harmonisation."""

    def __init__(self, spec: TrialSpec, raw_dir: Path):
        self.spec = spec
        self.path = Path(raw_dir) / spec.source.file
        self.file = spec.source.file
        self.excluded: dict = {}  # record index -> list of reasons
        self.extra_exclusions: list = []  # (source_row, participant_id, reason) for single rows
        self.log: list = []

    def error(self, problem, **kw):
        return InputError(problem, file=self.path, trial=self.spec.trial_id, **kw)

    def exclude(self, mask, reason_fn):
        for idx in np.flatnonzero(np.asarray(mask)):
            self.excluded.setdefault(idx, []).append(reason_fn(idx))


def _read(t: _Trial) -> pd.DataFrame:
    s = t.spec.source
    table = read_raw(t.path, s.format, delimiter=s.delimiter, decimal=s.decimal, sheet=s.sheet,
                     encoding=s.encoding, trial=t.spec.trial_id)
    data = table.data
    dropped = [c for c in t.spec.drop_identifying if c in data.columns]
    if dropped:
        data = data.drop(columns=dropped)
        t.log.append(("identifying columns dropped on read", ", ".join(dropped)))
    missing = {c: f for c, f in t.spec.columns().items() if c not in data.columns}
    if missing:
        listed = "; ".join(f"{c!r} (spec field {f})" for c, f in missing.items())
        raise t.error(f"column(s) named in the spec not found in the file: {listed}",
                      expected="columns of the file", found=", ".join(map(repr, data.columns[:40])))
    unused = [c for c in data.columns if c not in t.spec.columns()]
    if unused:
        t.log.append(("columns not used", ", ".join(unused)))
    return data


def _records_from_long(t: _Trial, data: pd.DataFrame):
    """One record per participant: baseline row values plus follow-up columns per month."""
    spec = t.spec
    tcol = spec.long.time_column
    codes = code_keys(data[tcol])
    months = codes.map(spec.long.time_values)
    unknown = codes[codes.notna() & months.isna()]
    if len(unknown):
        vals = sorted(set(unknown))
        raise t.error(f"visit code(s) {', '.join(map(repr, vals))} are not in long.time_values "
                      f"(rows {', '.join(map(str, unknown.index[:10]))})", column=tcol,
                      expected="every visit code mapped to months")
    missing_time = months.isna()
    for r in data.index[missing_time]:
        t.extra_exclusions.append((r, data.at[r, spec.participant_id], f"missing_visit: column {tcol} is empty"))
    data = data[~missing_time].assign(_months=months[~missing_time].astype(float))
    pid = code_keys(data[spec.participant_id]).fillna("")
    baseline = data[data._months == 0]
    # one record per baseline row; participants with no baseline row get one from their first row
    no_base = sorted(set(pid) - set(pid[baseline.index]))
    first_rows = [pid[pid == p].index[0] for p in no_base if p]
    rec = data.loc[list(baseline.index) + first_rows].copy()
    rec["_rows"] = [[r] for r in rec.index]
    rec["_no_baseline"] = rec.index.isin(first_rows)
    rec_pid = pid[rec.index]
    dup = rec_pid.duplicated(keep=False) & (rec_pid != "")
    # the follow-ups of each participant, keyed by months; duplicate visits mark a duplicate
    follow = data[data._months != 0]
    fpid = pid[follow.index]
    pair = pd.DataFrame({"pid": fpid.to_numpy(), "months": follow._months.to_numpy()})
    visit_dup = set(pair.pid[pair.duplicated(keep=False).to_numpy()])
    spec_out = spec.outcomes
    month_list = sorted(set(follow._months))
    windows = assign_windows(month_list)
    usable = {m for ms in windows.values() for m in ms}
    for name, out in spec_out.items():
        for m in month_list:
            col = f"__{name}_{m:g}"
            sel = follow[follow._months == m]
            values = pd.Series(sel[out.column].to_numpy(), index=fpid[sel.index].to_numpy())
            values = values[~values.index.duplicated()]
            rec[col] = rec_pid.map(values).to_numpy()
    # attach follow-up source rows to their participant's record (the first one, if an ID repeats)
    rows_by_pid = {}
    for r, p in zip(fpid.index, fpid.to_numpy()):
        rows_by_pid.setdefault(p, []).append(r)
    first_of_pid = ~rec_pid.duplicated().to_numpy()
    rec["_rows"] = [rows + rows_by_pid.get(p, []) if first else rows
                    for first, p, rows in zip(first_of_pid, rec_pid.to_numpy(), rec["_rows"])]
    outside = set(follow.index[~follow._months.isin(usable)])
    rec["_outside_rows"] = [[r for r in rows if r in outside] for rows in rec["_rows"]]
    for m in sorted(set(month_list) - usable):
        t.log.append(("follow-up outside every window", f"{m:g} months: records logged as excluded"))
    followup = {name: {m: f"__{name}_{m:g}" for m in month_list} for name in spec_out}
    rec = rec.reset_index(drop=True)
    return rec, followup, set(rec_pid[dup.to_numpy()]) | visit_dup, rec_pid.reset_index(drop=True)


def _records_from_wide(t: _Trial, data: pd.DataFrame):
    spec = t.spec
    rec = data.copy()
    rec["_rows"] = [[r] for r in rec.index]
    rec["_outside_rows"] = [[] for _ in rec.index]
    rec["_no_baseline"] = False
    pid = code_keys(rec[spec.participant_id]).fillna("")
    followup = {name: dict(out.followup) for name, out in spec.outcomes.items()}
    months = sorted({m for f in followup.values() for m in f})
    windows = assign_windows(months)
    usable = {m for ms in windows.values() for m in ms}
    for m in sorted(set(months) - usable):
        t.log.append(("follow-up outside every window", f"{m:g} months: columns not used"))
    dup = set(pid[pid.duplicated(keep=False) & (pid != "")])
    rec = rec.reset_index(drop=True)
    return rec, followup, dup, pid.reset_index(drop=True)


# ----------------------------------------------------------------------------- values


def _numeric(t: _Trial, rec: pd.DataFrame, column: str, field_name: str) -> np.ndarray:
    """Parse a column as numbers; unreadable values exclude their record, or stop the run
    when most of the column is unreadable (then the spec points at the wrong column)."""
    raw = rec[column]
    text = raw.map(lambda v: v if not isinstance(v, str) else v.strip())
    if t.spec.source.format == "csv" and t.spec.source.decimal == ",":
        text = text.map(lambda v: v.replace(",", ".") if isinstance(v, str) else v)
    values = pd.to_numeric(text, errors="coerce").to_numpy(float)
    bad = np.isnan(values) & raw.notna().to_numpy() & (text.map(lambda v: v != "").to_numpy())
    n_present = int(raw.notna().sum())
    if bad.any():
        if n_present and bad.sum() / n_present > _NON_NUMERIC_STOP:
            examples = ", ".join(repr(v) for v in pd.unique(raw[bad])[:5])
            raise t.error(f"column is not numeric ({bad.sum()} of {n_present} values unreadable)",
                          column=column, expected=f"numbers for {field_name}", found=examples)
        t.exclude(bad, lambda i: f"non_numeric: column {column} = {raw.iloc[i]!r}, expected a number ({field_name})")
    return values


def _coded(t: _Trial, rec, spec_field, name) -> np.ndarray:
    raw = rec[spec_field.column]
    keys = code_keys(raw)
    missing_codes = set(spec_field.missing)
    unknown = keys[keys.notna() & ~keys.isin(list(spec_field.codes)) & ~keys.isin(missing_codes)]
    if len(unknown):
        vals = sorted(set(unknown))
        raise t.error(f"value(s) {', '.join(map(repr, vals))} have no code in covariates.{name}.codes "
                      f"({len(unknown)} rows)", column=spec_field.column,
                      expected=f"one of {sorted(spec_field.codes)} or a listed missing code")
    return keys.map(spec_field.codes).astype(float).to_numpy()


def _check_range(t, values, column, low, high, what, kind="out_of_range"):
    bad = ~np.isnan(values) & ((values < low - _EPS) | (values > high + _EPS))
    t.exclude(bad, lambda i: f"{kind}: column {column} = {values[i]:g}, expected {low:g}-{high:g} ({what})")
    return bad


def harmonise_trial(spec: TrialSpec, raw_dir) -> TrialResult:
    """Harmonise one trial; row problems go to the exclusion log, spec problems raise."""
    t = _Trial(spec, raw_dir)
    data = _read(t)
    n_rows = len(data)
    if spec.source.layout == "long":
        rec, followup, dup_ids, pid = _records_from_long(t, data)
    else:
        rec, followup, dup_ids, pid = _records_from_wide(t, data)
    n = len(rec)

    # identifiers and arms
    t.exclude(pid == "", lambda i: f"missing_id: column {spec.participant_id} is empty")
    t.exclude(
        pid.isin(dup_ids) & (pid != ""),
        lambda i: f"duplicate_id: {spec.participant_id} {pid[i]!r} occurs more than once",
    )
    t.exclude(rec["_no_baseline"], lambda i: "no_baseline: no baseline (time 0) record")
    arm_keys = code_keys(rec[spec.arm.column])
    unmapped = arm_keys[arm_keys.notna() & ~arm_keys.isin(list(spec.arm.labels))]
    if len(unmapped):
        vals = sorted(set(unmapped))
        raise t.error(f"arm label(s) {', '.join(map(repr, vals))} are not mapped in arm.labels ({len(unmapped)} rows)",
                      column=spec.arm.column, expected=f"one of {sorted(spec.arm.labels)}")
    t.exclude(arm_keys.isna(), lambda i: f"missing_arm: column {spec.arm.column} is empty")
    present = set(arm_keys.dropna())
    if not any(spec.arm.labels[k] == "exercise" for k in present) or len({spec.arm.labels[k] for k in present}) < 2:
        t.log.append(("warning", "the file does not contain both an exercise and a comparison arm"))

    out = pd.DataFrame({"trial_id": spec.trial_id, "participant_id": pid})
    out["arm"] = arm_keys.map(lambda k: spec.arm.names.get(k, k) if k else None)
    out["comparison"] = arm_keys.map(spec.arm.labels)
    out["exercise"] = (out["comparison"] == "exercise").astype(int)

    # outcomes at baseline and follow-up, rescaled to 0-100 (higher = worse)
    scores = {}
    long = spec.source.layout == "long"
    for name, o in spec.outcomes.items():
        ins = INSTRUMENTS[o.instrument]
        # long layout: every value comes from o.column (the baseline row itself; follow-ups
        # through the reader's helper columns); wide layout: each value has its own column
        cols = {0.0: o.column if long else o.baseline, **followup[name]}
        for m, col in cols.items():
            source_col = o.column if long else col
            v = _numeric(t, rec, col, f"{name} ({o.instrument})")
            _check_range(t, v, source_col, ins.low, ins.high, o.instrument)
            scores[(name, m)] = np.clip(ins.to_0_100(v), 0, 100)
        t.log.append((f"{name} rescaled", f"{ins.label}: 100 x (x - {ins.low:g}) / {ins.high - ins.low:g}"
                      + ("" if ins.higher_is_worse else ", reversed (higher = better on the raw scale)")))
    out["pain_bl"] = scores[("pain", 0.0)]
    out["function_bl"] = scores[("function", 0.0)]

    # covariates
    cov = spec.covariates
    age = np.full(n, np.nan)
    if cov.age and cov.age.column:
        age = _numeric(t, rec, cov.age.column, "age in years")
        age_col = cov.age.column
    elif cov.age:
        by = _numeric(t, rec, cov.age.birth_year, "birth year")
        enrol = pd.to_datetime(rec[cov.age.enrolment_date], errors="coerce")
        bad_date = enrol.isna().to_numpy() & rec[cov.age.enrolment_date].notna().to_numpy()
        t.exclude(
            bad_date,
            lambda i: (
                f"invalid_date: column {cov.age.enrolment_date} = {rec[cov.age.enrolment_date].iloc[i]!r}, "
                "expected a date"
            ),
        )
        age = derive_age(by, enrol)
        age_col = cov.age.birth_year
        t.log.append(
            ("age derived", f"from {cov.age.birth_year} and {cov.age.enrolment_date} (birthday taken as 1 July)")
        )
    if cov.age:
        _check_range(t, age, age_col, *PLAUSIBLE["age"], "plausible age", kind="implausible_age")
    out["age"] = age
    bmi = np.full(n, np.nan)
    if cov.bmi and cov.bmi.column:
        bmi = _numeric(t, rec, cov.bmi.column, "BMI in kg/m2")
        _check_range(t, bmi, cov.bmi.column, *PLAUSIBLE["bmi"], "plausible BMI", kind="implausible_bmi")
    elif cov.bmi:
        h = _numeric(t, rec, cov.bmi.height, f"height in {cov.bmi.height_unit}")
        w = _numeric(t, rec, cov.bmi.weight, f"weight in {cov.bmi.weight_unit}")
        h_cm = h * (100 if cov.bmi.height_unit == "m" else 1)
        w_kg = w * (0.45359237 if cov.bmi.weight_unit == "lb" else 1)
        _check_range(t, h_cm, cov.bmi.height, *PLAUSIBLE["height_cm"], "plausible height in cm", kind="implausible_bmi")
        _check_range(t, w_kg, cov.bmi.weight, *PLAUSIBLE["weight_kg"], "plausible weight in kg", kind="implausible_bmi")
        bmi = derive_bmi(h, w, cov.bmi.height_unit, cov.bmi.weight_unit)
        t.log.append(("BMI derived", f"weight ({cov.bmi.weight_unit}) / height ({cov.bmi.height_unit})^2"))
    out["bmi"] = bmi
    for name in ("female", "heavy_work", "medication", "employed", "education_post_secondary"):
        f = getattr(cov, name)
        out[name] = _coded(t, rec, f, name) if f else np.nan
        if f:
            t.log.append((f"{name} recoded", ", ".join(f"{k} -> {v}" for k, v in f.codes.items())))
    if cov.duration_months:
        d = _numeric(t, rec, cov.duration_months.column, f"duration in {cov.duration_months.unit}")
        out["duration_months"] = d * _MONTHS_PER[cov.duration_months.unit]
        _check_range(t, out["duration_months"].to_numpy(), cov.duration_months.column, *PLAUSIBLE["duration_months"],
                     "plausible duration in months", kind="implausible_duration")
        if cov.duration_months.unit != "months":
            t.log.append(("duration converted", f"{cov.duration_months.unit} to months"))
    else:
        out["duration_months"] = np.nan
    not_measured = [c for c in ("age", "female", "bmi", "heavy_work", "medication", "employed",
                                "education_post_secondary", "duration_months") if getattr(cov, c) is None]
    if not_measured:
        t.log.append(("covariates not measured", ", ".join(not_measured)))

    # exclusions, then the analysed participants and their outcomes by window
    excluded = np.zeros(n, bool)
    excluded[list(t.excluded)] = True
    keep = ~excluded
    participants = out.loc[keep, PARTICIPANT_COLUMNS].reset_index(drop=True)
    participants = participants.astype({"trial_id": str, "participant_id": str, "arm": str, "comparison": str})
    outcome_rows = []
    months = sorted({m for f in followup.values() for m in f})
    for window, candidates in assign_windows(months).items():
        pain = np.column_stack([scores.get(("pain", m), np.full(n, np.nan)) for m in candidates])
        func = np.column_stack([scores.get(("function", m), np.full(n, np.nan)) for m in candidates])
        observed = ~(np.isnan(pain) & np.isnan(func))
        first = np.where(observed.any(axis=1), observed.argmax(axis=1), 0)
        rows = np.arange(n)
        p, f = pain[rows, first], func[rows, first]
        outcome_rows.append(pd.DataFrame({
            "trial_id": spec.trial_id, "participant_id": pid.astype(str), "window": window,
            "months": np.asarray(candidates, float)[first], "pain": p, "function": f,
            "recovered": _recovered(p, f)})[keep])
    outcomes = (pd.concat(outcome_rows, ignore_index=True) if outcome_rows
                else pd.DataFrame(columns=OUTCOME_COLUMNS))
    visit_rows = []
    for window, candidates in assign_windows(months).items():
        for m in candidates:
            pain, func = scores.get(("pain", m), np.full(n, np.nan)), scores.get(("function", m), np.full(n, np.nan))
            seen = keep & ~(np.isnan(pain) & np.isnan(func))
            visit_rows.append(pd.DataFrame({"trial_id": spec.trial_id, "participant_id": pid[seen], "window": window,
                                            "months": m, "pain": pain[seen], "function": func[seen]}))
    visits = (pd.concat(visit_rows, ignore_index=True).sort_values(["participant_id", "months"], kind="stable")
              if visit_rows else pd.DataFrame(columns=VISIT_COLUMNS))

    all_rows = rec["_rows"].tolist()
    outside_rows = rec["_outside_rows"].tolist()
    pids = pid.tolist()
    excl = []
    for i, reasons in sorted(t.excluded.items()):
        for r in all_rows[i]:
            excl.append((spec.trial_id, spec.source.file, int(r), pids[i], "; ".join(dict.fromkeys(reasons))))
    for i in np.flatnonzero(keep):
        for r in outside_rows[i]:
            excl.append(
                (
                    spec.trial_id,
                    spec.source.file,
                    int(r),
                    pids[i],
                    "followup_outside_windows: visit fits no follow-up window",
                )
            )
    for r, p, reason in t.extra_exclusions:
        excl.append((spec.trial_id, spec.source.file, int(r), code_key(p) if pd.notna(p) else "", reason))
    exclusions = pd.DataFrame(excl, columns=EXCLUSION_COLUMNS).sort_values("source_row", kind="stable")
    used = {r for i in np.flatnonzero(keep) for r in all_rows[i]} - {
        r for i in np.flatnonzero(keep) for r in outside_rows[i]
    }
    return TrialResult(spec, participants, outcomes.reset_index(drop=True), exclusions.reset_index(drop=True),
                       t.log, received=n, n_rows=n_rows, used_rows=used, visits=visits.reset_index(drop=True),
                       excluded_codes=[reasons[0].split(":")[0] for _, reasons in sorted(t.excluded.items())])


def flow_table(results: list[TrialResult]) -> pd.DataFrame:
    """Counts per trial: received, excluded by reason, analysed, analysed per window."""
    rows = []
    reasons = ("missing_id", "duplicate_id", "missing_arm", "no_baseline", "non_numeric", "out_of_range",
               "implausible_age", "implausible_bmi", "implausible_duration", "invalid_date")
    for r in results:
        ex = r.exclusions
        row = {"trial_id": r.spec.trial_id, "received": r.received, "excluded": r.received - len(r.participants)}
        for reason in reasons:
            row[f"excluded_{reason}"] = r.excluded_codes.count(reason)
        row["analysed"] = len(r.participants)
        for w in WINDOWS:
            o = r.outcomes[r.outcomes.window == w.name]
            row[f"analysed_{w.name}"] = int((o.pain.notna() | o.function.notna()).sum())
        row["records_outside_windows"] = int(ex.reason.str.startswith("followup_outside_windows").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def trials_table(results: list[TrialResult]) -> pd.DataFrame:
    """Trial characteristics for the report, from the specs and the harmonised data."""
    rows = []
    for r in results:
        s = r.spec
        comps = sorted(set(s.arm.labels.values()) - {"exercise"})
        months = sorted({m for o in s.outcomes.values() for m in o.followup} |
                        ({m for m in s.long.time_values.values() if m > 0} if s.long else set()))
        measured = [c for c, v in s.covariates if v is not None]
        rows.append({
            "trial_id": s.trial_id, "title": s.title, "setting": s.setting, "file_format": s.source.format,
            "layout": s.source.layout, "arms": "; ".join(dict.fromkeys(s.arm.names.get(k, k) for k in s.arm.labels)),
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


def harmonise_all(spec_dir, raw_dir, progress=None) -> tuple[list[TrialResult], dict]:
    """Harmonise every trial; returns the per-trial results and the combined tables."""
    specs = load_specs(spec_dir)
    seen = {}
    for s in specs:
        if s.source.file in seen:
            raise InputError(f"two specs read the same raw file ({seen[s.source.file]} and {s.trial_id})",
                             file=Path(spec_dir) / f"{s.trial_id}.yaml", trial=s.trial_id)
        seen[s.source.file] = s.trial_id
    results = []
    for s in specs:
        results.append(harmonise_trial(s, raw_dir))
        if progress:
            progress(s.trial_id)
    tables = {
        "participants": pd.concat([r.participants for r in results], ignore_index=True),
        "outcomes": pd.concat([r.outcomes for r in results], ignore_index=True),
        "exclusions": pd.concat([r.exclusions for r in results], ignore_index=True),
        "visits": pd.concat([r.visits for r in results], ignore_index=True),
        "flow": flow_table(results),
        "trials": trials_table(results),
        "instruments": instruments_table(),
        "harmonisation_log": pd.DataFrame([(r.spec.trial_id, step, detail) for r in results for step, detail in r.log],
                                          columns=["trial_id", "step", "detail"]),
    }
    return results, tables
