"""Reading a trial's tables and assembling one record per participant.

The tables of a trial (one, or several joined on the participant id) are read with their
missing-value codes removed and logged; each record keeps, for every column, the raw row its
value came from, so that every value later set missing can be traced to its file and row.
Follow-up visits in long tables become columns of their participant's record.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputError
from analysis.ingest.readers import read_raw
from analysis.ingest.spec import Source, TrialSpec, code_keys, distinct_code_keys
from analysis.settings import WINDOWS

__all__ = ["TrialState", "Records", "read_tables", "build_records", "assign_windows", "display"]


def assign_windows(months_available):
    """For each window, the design time points inside it ordered by distance to the target
    (ties go to the later time point). Returns {window: [months, ...]}."""
    out = {}
    for w in WINDOWS:
        inside = [m for m in months_available if m > 0 and w.contains(m)]
        if inside:
            out[w.name] = sorted(inside, key=lambda m: (abs(m - w.target), -m))
    return out



# ----------------------------------------------------------------------------- working state


class TrialState:
    """Working state of one trial's harmonisation. Raw rows are numbered globally across the
    trial's tables; ``origin`` maps each to its (table label, 1-based data row)."""

    def __init__(self, spec: TrialSpec, raw_dir: Path):
        self.spec = spec
        self.raw_dir = Path(raw_dir)
        self.origin: list[tuple[str, int]] = []
        self.tables_read: list[tuple[str, np.ndarray]] = []  # (table label, its rows' 1-based numbers)
        self.excluded: dict = {}  # record index -> list of reasons
        self.orphans: list = []  # (global row, participant id, reason): rows that are no participant's
        self.issues: list = []  # (global row, participant id, column, raw value, reason)
        self.unused: set = set()  # global rows logged as unusable visit records
        self.log: list = []
        self.column_source: dict[str, Source] = {}
        self.column_values: dict[str, int] = {}
        self.first_path = self.raw_dir / spec.tables[0].file

    def error(self, problem, source: Source | None = None, **kw):
        path = self.raw_dir / source.file if source is not None else self.first_path
        return InputError(problem, file=path, trial=self.spec.trial_id, **kw)

    def source_of(self, column) -> Source:
        return self.column_source.get(column, self.spec.tables[0])

    def exclude(self, mask, reason_fn):
        for idx in np.flatnonzero(np.asarray(mask)):
            self.excluded.setdefault(idx, []).append(reason_fn(idx))

    def issue(self, rows, pids, column, values, reason):
        """Log single values set missing (or visit records not used)."""
        for r, p, v in zip(rows, pids, values):
            self.issues.append((int(r), p, column, None if v is None else display(v), reason))


def display(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (pd.Timestamp, datetime)):
        return v.isoformat()
    return str(v)


# ----------------------------------------------------------------------------- reading


def _read_table(t: TrialState, source: Source) -> pd.DataFrame:
    """One table with a global row index, identifying columns dropped, the id column named as
    the spec's participant_id, and missing-value codes and declared missing values removed
    (and logged)."""
    spec = t.spec
    table = read_raw(t.raw_dir / source.file, source.format, delimiter=source.delimiter, decimal=source.decimal,
                     sheet=source.sheet, encoding=source.encoding, trial=spec.trial_id)
    data = table.data
    dropped = [c for c in spec.drop_identifying if c in data.columns]
    if dropped:
        data = data.drop(columns=dropped)
        t.log.append(("identifying columns dropped on read", f"{', '.join(dropped)} ({source.label})"))
    id_column = source.participant_id or spec.participant_id
    if id_column not in data.columns:
        raise t.error(f"the participant identifier column is not in table {source.label}", source,
                      column=id_column, expected="the id column of every table (source.participant_id names it "
                                                 "when a table calls it differently)",
                      found=", ".join(map(repr, data.columns[:40])))
    if id_column != spec.participant_id:
        data = data.rename(columns={id_column: spec.participant_id})
    start = len(t.origin)
    t.origin.extend(zip(itertools.repeat(source.label), data.index.tolist()))  # (label, 1-based row) per row
    t.tables_read.append((source.label, np.asarray(data.index, dtype=np.int32)))
    data.index = pd.RangeIndex(start, start + len(data))
    pid = code_keys(data[spec.participant_id]).fillna("")
    for col in data.columns:
        if col == spec.participant_id:
            continue
        values = data[col]
        present = ~values.array.isna()  # without a Series around it (a third of the time)
        codes = spec.missing_codes(col)
        hit = np.zeros(len(data), bool)
        if codes:
            numbers, keys = distinct_code_keys(values)
            hit = present & np.array([key in codes for key in keys] + [False])[numbers]
            if hit.any():
                t.issue(data.index[hit], pid[hit], col, [display(v) for v in values[hit]], "missing_code")
        declared = table.declared_missing.get(col)
        if declared is not None:
            flagged = present & ~hit & np.array([declared(v) for v in values], bool)
            if flagged.any():
                t.issue(data.index[flagged], pid[flagged], col, [display(v) for v in values[flagged]],
                        "declared_missing")
                hit |= flagged
        if hit.any():
            data[col] = values.astype(object).where(~hit, None)
            t.log.append(("missing-value codes set missing", f"{col}: {int(hit.sum())} value(s) ({source.label})"))
    return data


def read_tables(t: TrialState) -> list[tuple[Source, pd.DataFrame]]:
    spec = t.spec
    tables = [(s, _read_table(t, s)) for s in spec.tables]
    for s, data in tables:
        for col in data.columns:
            if col == spec.participant_id:
                continue
            if col in t.column_source:
                if col in spec.columns():
                    t.log.append(("column in several tables", f"{col}: read from {t.column_source[col].label}, "
                                                              f"not {s.label}"))
                continue
            t.column_source[col] = s
    missing = {c: f for c, f in spec.columns().items() if c not in t.column_source and c != spec.participant_id}
    if missing:
        listed = "; ".join(f"{c!r} (spec field {f})" for c, f in missing.items())
        found = (", ".join(map(repr, tables[0][1].columns[:40])) if len(tables) == 1 else
                 "; ".join(f"{s.label}: {', '.join(map(repr, d.columns[:30]))}" for s, d in tables))
        raise t.error(f"column(s) named in the spec not found in the file: {listed}", expected="columns of the "
                      "file" if len(tables) == 1 else "columns of the trial's tables", found=found)
    unused = [c for c, s in t.column_source.items() if c not in spec.columns()]
    if unused:
        t.log.append(("columns not used", ", ".join(unused)))
    return tables


# ----------------------------------------------------------------------------- records


@dataclass
class Records:
    """One row per participant record; ``rows`` the global raw rows of each record, ``row_of``
    the raw row each column's value came from (per column: an array over records)."""

    rec: pd.DataFrame
    pid: pd.Series
    rows: list
    row_of: dict
    followup: dict  # outcome -> {months: column of rec}
    duplicate_ids: set


def _merge_wide(t: TrialState, wide: list[tuple[Source, pd.DataFrame]]) -> Records:
    """Wide tables joined on the participant id; the first table lists the participants.
    Rows of later tables whose id is not in the first are no participant's: logged."""
    spec = t.spec
    primary_source, primary = wide[0]
    pid = code_keys(primary[spec.participant_id]).fillna("").reset_index(drop=True)
    rec = primary.reset_index(drop=True).copy()
    rows = [[int(r)] for r in primary.index]
    origin = np.asarray(primary.index)
    row_of = {c: origin for c in primary.columns}
    duplicate_ids = set(pid[pid.duplicated(keep=False) & (pid != "")])
    first_of = {p: i for i, p in reversed(list(enumerate(pid))) if p}
    for source, data in wide[1:]:
        dpid = code_keys(data[spec.participant_id]).fillna("")
        known = dpid.isin(list(first_of)) & (dpid != "")
        for r, p in zip(data.index[~known], dpid[~known]):
            reason = ("missing_id: the identifier is empty" if not p else
                      f"unknown_id: {p!r} is not in {primary_source.label}, the table of randomised participants")
            t.orphans.append((int(r), p, reason))
        duplicate_ids |= set(dpid[known & dpid.duplicated(keep=False)])
        data = data[known.to_numpy()]
        dpid = dpid[known]
        first_rows = ~dpid.duplicated().to_numpy()
        keys = dpid[first_rows].to_numpy()
        by_pid = data[first_rows].set_index(keys)
        raw_row = pd.Series(data.index[first_rows], index=keys)
        for col in data.columns:
            if col == spec.participant_id or t.column_source.get(col) is not source:
                continue
            rec[col] = pid.map(by_pid[col]).to_numpy()
            row_of[col] = pid.map(raw_row).fillna(-1).astype(int).to_numpy()
        for r, p in zip(data.index, dpid):
            rows[first_of[p]].append(int(r))
    followup = {name: dict(out.followup) for name, out in spec.outcomes.items()}
    return Records(rec, pid, rows, row_of, followup, duplicate_ids)


def _long_rows(t: TrialState, long: list[tuple[Source, pd.DataFrame]]) -> pd.DataFrame:
    """The long tables stacked, with each row's months; rows without a visit are logged."""
    spec = t.spec
    tcol = spec.long.time_column
    data = pd.concat([d for _, d in long])
    codes = code_keys(data[tcol])
    months = codes.map(spec.long.time_values)
    unknown = codes[codes.notna() & months.isna()]
    if len(unknown):
        vals = sorted(set(unknown))
        rows = ", ".join(f"{t.origin[r][0]} row {t.origin[r][1]}" for r in unknown.index[:5])
        raise t.error(f"visit code(s) {', '.join(map(repr, vals))} are not in long.time_values ({rows})",
                      t.source_of(tcol), column=tcol, expected="every visit code mapped to months")
    no_visit = months.isna()
    if no_visit.any():
        pid = code_keys(data.loc[no_visit, spec.participant_id]).fillna("")
        t.issue(data.index[no_visit], pid, tcol, [""] * int(no_visit.sum()), "missing_visit")
        t.unused |= set(map(int, data.index[no_visit]))
    return data[~no_visit].assign(_months=months[~no_visit].astype(float))


def _attach_followups(t: TrialState, records: Records, follow: pd.DataFrame) -> None:
    """Each follow-up row's outcome values become helper columns of its participant's record
    (one per outcome and time point), with the raw row of each value. A visit recorded twice
    for one participant cannot be told apart: both records are logged and not used."""
    spec = t.spec
    rec, pid = records.rec, records.pid
    fpid = code_keys(follow[spec.participant_id]).fillna("")
    index_of = {p: i for i, p in reversed(list(enumerate(pid))) if p and p not in records.duplicate_ids}
    known = fpid.isin(list(index_of)).to_numpy()
    for r, p in zip(follow.index[~known], fpid[~known]):
        if p in records.duplicate_ids:
            continue  # rows of a duplicated identifier are excluded with its records
        reason = ("missing_id: the identifier is empty" if not p else
                  f"unknown_id: {p!r} has follow-up records but no record in the table of randomised participants")
        t.orphans.append((int(r), p, reason))
    dup_pid_rows = follow[fpid.isin(records.duplicate_ids).to_numpy()]
    for r, p in zip(dup_pid_rows.index, fpid[fpid.isin(records.duplicate_ids)]):
        first = next(i for i, q in enumerate(pid) if q == p)
        records.rows[first].append(int(r))
    follow, fpid = follow[known], fpid[known]
    pair = pd.DataFrame({"pid": fpid.to_numpy(), "months": follow._months.to_numpy()}, index=follow.index)
    twice = pair.duplicated(keep=False).to_numpy()
    if twice.any():
        t.issue(follow.index[twice], fpid[twice], spec.long.time_column,
                [display(v) for v in follow.loc[twice, spec.long.time_column]], "duplicate_visit")
        t.unused |= set(map(int, follow.index[twice]))
    month_list = sorted(set(follow._months))
    usable = {m for ms in assign_windows(month_list).values() for m in ms}
    outside = ~follow._months.isin(usable).to_numpy() & ~twice
    if outside.any():
        t.issue(follow.index[outside], fpid[outside], spec.long.time_column,
                [display(v) for v in follow.loc[outside, spec.long.time_column]], "followup_outside_windows")
        t.unused |= set(map(int, follow.index[outside]))
        for m in sorted(set(month_list) - usable):
            t.log.append(("follow-up outside every window", f"{m:g} months: records logged as not used"))
    for r, p in zip(follow.index, fpid):
        records.rows[index_of[p]].append(int(r))
    keep = ~twice
    follow, fpid = follow[keep], fpid[keep]
    position = fpid.map(index_of).to_numpy()
    for name, out in spec.outcomes.items():
        records.followup[name] = {}
        for m in month_list:
            col = f"__{name}_{m:g}"
            at = (follow._months == m).to_numpy()
            values = np.full(len(rec), None, dtype=object)
            origin = np.full(len(rec), -1)
            values[position[at]] = follow.loc[at, out.column].to_numpy()
            origin[position[at]] = follow.index[at]
            rec[col] = values
            records.row_of[col] = origin
            t.column_source[col] = t.source_of(out.column)
            records.followup[name][m] = col


def build_records(t: TrialState, tables) -> Records:
    spec = t.spec
    wide = [(s, d) for s, d in tables if s.layout == "wide"]
    long = [(s, d) for s, d in tables if s.layout == "long"]
    if not long:
        return _merge_wide(t, wide)
    rows = _long_rows(t, long)
    if wide:
        at_baseline = rows._months == 0
        if at_baseline.any():
            raise t.error("the long table has baseline (month 0) visits as well as a table of participants",
                          t.source_of(spec.long.time_column), column=spec.long.time_column,
                          expected="baseline values in one table only: map the baseline visit code out of "
                                   "long.time_values, or list the long table alone")
        records = _merge_wide(t, wide)
        # in the wide table the baseline score has its own column; as in a single long table,
        # each outcome's baseline value is read from out.baseline
        _attach_followups(t, records, rows)
        return records
    # a single long layout: one record per baseline row; a participant without one gets a
    # record from their first row (intention to treat: the baseline values are then missing)
    pid = code_keys(rows[spec.participant_id]).fillna("")
    baseline = rows[rows._months == 0]
    with_baseline = set(pid[baseline.index])
    first = pid[~pid.duplicated()]  # each participant's first row
    no_base = [p for p in first if p and p not in with_baseline]
    first_rows = list(first.index[first.isin(no_base)])
    rec = rows.loc[list(baseline.index) + first_rows]
    rec_pid = pid[rec.index].reset_index(drop=True)
    if first_rows:
        t.issue(first_rows, no_base, spec.long.time_column, [""] * len(first_rows), "no_baseline")
    duplicate_ids = set(rec_pid[rec_pid.duplicated(keep=False) & (rec_pid != "")])
    origin = np.asarray(rec.index)
    row_of = {c: origin for c in rec.columns}
    records = Records(rec.reset_index(drop=True).copy(), rec_pid, [[int(r)] for r in rec.index], row_of, {},
                       duplicate_ids)
    no_base_rows = set(first_rows)  # a follow-up row standing in for a missing baseline row
    for name, out in spec.outcomes.items():  # baseline values sit in the long value column
        values = records.rec[out.column].where(~pd.Series(rec.index.isin(no_base_rows)), None)
        records.rec[f"__{name}_0"] = values.to_numpy()
        records.row_of[f"__{name}_0"] = origin
        t.column_source[f"__{name}_0"] = t.source_of(out.column)
    baseline_rows = set(map(int, baseline.index))
    _attach_followups(t, records, rows[~rows.index.isin(baseline_rows)])
    return records


