"""Validation tables for the appendix: the project's estimators against published reference
values, and recovery of the synthetic truth on the demo data. Nothing is fitted here: the
project's values come from the results (reference_checks.csv, estimates, modifiers) and the
truth from the provenance record of the synthetic data."""

from __future__ import annotations

import pandas as pd

from analysis.book.reference_values import CHECKS

__all__ = ["reference_agreement", "truth_recovery"]


def reference_agreement(rep) -> pd.DataFrame:
    """Each row: what was estimated, the reference implementation's value and ours."""
    ours = rep.reference_checks.set_index("check").value
    rows = [(label, quantity, value, float(ours[check])) for check, (label, quantity, value) in CHECKS.items()]
    out = pd.DataFrame(rows, columns=["Reference", "Quantity", "Reference value", "This project"])
    out["Relative difference"] = (out["This project"] - out["Reference value"]).abs() / out["Reference value"].abs()
    return out


def truth_recovery(rep) -> pd.DataFrame | None:
    """Short-term estimates on the synthetic data next to the generator's truth (None when
    the data are not synthetic, so no truth is known)."""
    truth = rep.demo_truth
    if truth is None:
        return None
    rows = []
    for t in truth:
        if t["term"] == "exercise":
            r = rep.overall(t["comparison"], t["outcome"], t["window"])
        else:
            m = rep.modifiers
            r = m[(m.comparison == t["comparison"]) & (m.outcome == t["outcome"]) & (m.window == t["window"])
                  & (m.term == t["term"])].iloc[0]
        rows.append((t["analysis"], t["comparison"], t["outcome"], t["term"], t["truth"], r.estimate, r.ci_low,
                     r.ci_high))
    out = pd.DataFrame(rows, columns=["Analysis", "Comparison", "Outcome", "Term", "Truth", "Estimate", "CI low",
                                      "CI high"])
    out["Covered"] = (out["CI low"] <= out.Truth) & (out.Truth <= out["CI high"])
    return out
