"""Signs that a spec, not the data, is wrong: `check` reports them and `harmonise` stops."""

from __future__ import annotations

from collections import Counter

import numpy as np
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
    # counted by (column, reason) in that order, as a groupby would give them (which cost more
    # than the rest of the checks; most trials have no such value at all)
    counts = Counter(zip(issues.column.to_numpy(), issues.reason.to_numpy()))
    for (column, reason), count in sorted(counts.items()):
        total = r.column_values.get(column, 0)
        if reason in ("duplicate_visit", "no_baseline", "missing_visit"):
            total = r.received
        if total and count / total > GUARD_SHARE:
            values = issues.value[((issues.column == column) & (issues.reason == reason)).to_numpy()]
            examples = ", ".join(map(repr, pd.unique(values)[:4]))
            problems.append(f"{where}, column {column!r}: {count} of {total} values ({100 * count / total:.0f}%) "
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
        problems += _shared_participants(results)
    return problems


def _shared_participants(results) -> list[str]:
    """Pairs of trials holding the same participants: the same identifier with the same
    baseline pain and function (to 6 decimals). Found with pandas over every trial at once
    (a set intersection per pair of trials cost 13 s at 1,000 trials, and selecting each
    trial's columns before joining them 2 s; the columns are joined as arrays); only
    fingerprints held by two or more trials are paired up, and none usually are."""
    columns = ["participant_id", "pain_bl", "function_bl"]

    def joined(column, kind):
        parts = [r.participants[column].to_numpy(kind) for r in results]
        return np.concatenate(parts) if parts else np.zeros(0, kind)

    pain, function = joined("pain_bl", float), joined("function_bl", float)
    held = pd.DataFrame({"participant_id": joined("participant_id", object), "pain_bl": pain.round(6),
                         "function_bl": function.round(6), "trial": joined("trial_id", object)})
    held = held[~(np.isnan(pain) | np.isnan(function))].drop_duplicates()  # each trial's fingerprints as a set
    repeated = held[held.duplicated(columns, keep=False)]
    if repeated.empty:  # the usual case: no fingerprint in two trials
        return []
    sizes = held.groupby("trial").size()
    pairs = repeated.merge(repeated, on=columns, suffixes=("_a", "_b"))
    shared = pairs[pairs.trial_a < pairs.trial_b].groupby(["trial_a", "trial_b"]).size()
    problems = []
    for (a, b), count in shared.sort_index().items():
        smaller = min(sizes[a], sizes[b])
        if smaller and count >= max(5, GUARD_SHARE * smaller):
            problems.append(f"trials {a} and {b} hold {count} participants with the same identifier and the same "
                            "baseline values: the same trial under two names, or a raw file copied into both")
    return problems
