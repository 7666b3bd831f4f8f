"""Signs that a spec, not the data, is wrong: `check` reports them and `harmonise` stops."""

from __future__ import annotations

import pandas as pd

from analysis.ingest.spec import TrialSpec

__all__ = ["spec_problems", "cross_trial_problems", "GUARD_SHARE", "EXPECTED_REASONS"]

GUARD_SHARE = 0.10  # one reason above this share of a trial's records or a column's values: the spec is suspect
# reasons that reflect the data as collected rather than a possible spec mistake (not guarded)
EXPECTED_REASONS = {"missing_code", "declared_missing", "followup_outside_windows"}


def spec_problems(r) -> list[str]:
    """Signs that a spec, not the data, is wrong: one reason for more than a tenth of the
    trial's records, or of one column's values (a wrong column, instrument or date format)."""
    problems = []
    where = f"trial {r.spec.trial_id}"
    n = max(r.received, 1)
    for reason in dict.fromkeys(r.excluded_codes):
        count = r.excluded_codes.count(reason)
        if count / n > GUARD_SHARE:
            problems.append(f"{where}: {count} of {r.received} records ({100 * count / n:.0f}%) excluded as {reason}; "
                            f"more than {100 * GUARD_SHARE:.0f}% points at the spec (e.g. the wrong "
                            f"{'arm' if reason == 'missing_arm' else 'identifier'} column) rather than the data")
    issues = r.value_issues[~r.value_issues.reason.isin(EXPECTED_REASONS)]
    for (column, reason), g in issues.groupby(["column", "reason"]):
        total = r.column_values.get(column, 0)
        if reason in ("duplicate_visit", "no_baseline", "missing_visit"):
            total = r.received
        if total and len(g) / total > GUARD_SHARE:
            examples = ", ".join(map(repr, pd.unique(g.value)[:4]))
            problems.append(f"{where}, column {column!r}: {len(g)} of {total} values ({100 * len(g) / total:.0f}%) "
                            f"set missing as {reason} (e.g. {examples}); more than {100 * GUARD_SHARE:.0f}% points "
                            "at the spec (the column, instrument, unit or date format) rather than the data")
    return problems


def cross_trial_problems(specs: list[TrialSpec], results: list | None = None) -> list[str]:
    """Two specs reading one raw table, or two trials holding the same participants."""
    problems = []
    seen = {}
    for s in specs:
        for table in s.tables:
            key = (table.file, table.sheet)
            if key in seen and seen[key] != s.trial_id:
                problems.append(f"trials {seen[key]} and {s.trial_id}: both specs read {table.label}; every "
                                "participant would be counted twice (a copied spec?)")
            seen.setdefault(key, s.trial_id)
    if results:
        fingerprints = {}
        for r in results:
            p = r.participants.dropna(subset=["pain_bl", "function_bl"])
            fingerprints[r.spec.trial_id] = set(zip(p.participant_id, p.pain_bl.round(6), p.function_bl.round(6)))
        ids = sorted(fingerprints)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                shared = len(fingerprints[a] & fingerprints[b])
                smaller = min(len(fingerprints[a]), len(fingerprints[b]))
                if smaller and shared >= max(5, GUARD_SHARE * smaller):
                    problems.append(f"trials {a} and {b} hold {shared} participants with the same identifier and "
                                    "the same baseline values: the same trial under two names, or a raw file "
                                    "copied into both")
    return problems


