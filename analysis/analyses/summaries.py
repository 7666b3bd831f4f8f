"""One-stage analysis without pooling raw data: each trial exports the sufficient statistics
of every continuous one-stage model (overall effects and modifiers), and the fits are made
from those summaries alone. The estimates equal those from the pooled raw data.

Exported per trial and analysis: the cross-products of [exercise terms, outcome] after
projecting out the trial's own terms, the residual degrees of freedom, log|Z'Z|, counts, the
sum of squares of the exercise column and whether the covariate varies within both arms:
a fixed number of values whatever the trial's size, and no row-level data.

Not possible from these summaries: the mixed logistic model for recovery (its likelihood
needs the individual outcomes), the spline non-linearity test (its knots depend on the
pooled covariate distribution), multiple imputation and the effect curves for the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.analyses.modifiers import (
    MIN_TRIALS_WITHIN,
    MODIFIER_COLUMNS,
    continuous_design,
    continuous_interaction,
    holm_by_family,
    interaction_rows,
    modifier_sample,
    not_estimable_rows,
    trials_varying,
)
from analysis.analyses.overall import (
    ALL_OVERALL,
    RESULT_COLUMNS,
    continuous_method,
    continuous_stats,
    empty_row,
    result_row,
)
from analysis.analyses.samples import outcome_sample
from analysis.errors import InputError
from analysis.io import write_text
from analysis.models.onestage import TrialStats, fit_reml
from analysis.settings import BINARY_COVARIATES, COMPARISONS, COVARIATES, WINDOWS

__all__ = ["export_trial_stats", "load_trial_stats", "fit_from_stats", "FORMAT_VERSION", "stats_entries",
           "assemble_stats", "stats_key", "continuous_rows"]

FORMAT_VERSION = 1
_FIELDS = ("cross", "resid_df", "logdet_ztz", "n", "n_treated", "tt_raw")


def _analyses():
    for c in COMPARISONS:
        for o in ("pain", "function"):
            for w in WINDOWS:
                yield c, o, w.name, None
                for cov in COVARIATES:
                    yield c, o, w.name, cov


def stats_key(c, o, w, cov=None):
    return "|".join([c, o, w] + ([cov] if cov else []))



def stats_entries(st: TrialStats, varies: pd.Series) -> dict:
    """{trial_id: its statistics of one analysis}, as exported (JSON-ready lists)."""
    out = {}
    for i, tid in enumerate(st.trial_ids):
        entry = {f: (getattr(st, f)[i].tolist()) for f in _FIELDS}
        entry["terms"] = list(st.terms)
        entry["varies"] = bool(varies.get(tid, False))
        out[str(tid)] = entry
    return out


def assemble_stats(entries: list) -> tuple[TrialStats, pd.Series]:
    """TrialStats over trials from their exported entries [(trial_id, entry), ...], and the
    'covariate varies within both arms' flags."""
    entries = sorted(entries, key=lambda e: e[0])
    ids = np.array([e[0] for e in entries])
    arrays = {f: np.array([e[1][f] for e in entries], dtype=float) for f in _FIELDS}
    st = TrialStats(ids, tuple(entries[0][1]["terms"]), arrays["cross"], arrays["resid_df"], arrays["logdet_ztz"],
                    arrays["n"].astype(int), arrays["n_treated"].astype(int), arrays["tt_raw"])
    return st, pd.Series([bool(e[1]["varies"]) for e in entries], index=ids)


def export_trial_stats(participants, outcomes, out_dir) -> list[Path]:
    """Write <out_dir>/<trial_id>.json for every trial (statistics of every analysis it is in)."""
    per_trial: dict = {}
    for c, o, w, cov in _analyses():
        if cov is None:
            d = outcome_sample(participants, outcomes, c, o, w)
            if d.empty:
                continue
            st = continuous_stats(d, o)
            varies = pd.Series(True, index=st.trial_ids)
        else:
            d = modifier_sample(participants, outcomes, c, o, w, cov)
            if d.empty:
                continue
            st = continuous_design(d, o, cov)
            varies = trials_varying(d)
        for tid, entry in stats_entries(st, varies).items():
            per_trial.setdefault(tid, {})[stats_key(c, o, w, cov)] = entry
    out_dir = Path(out_dir)
    written = []
    for tid, analyses in sorted(per_trial.items()):
        doc = {"format_version": FORMAT_VERSION, "trial_id": tid, "analyses": analyses}
        written.append(write_text(json.dumps(doc, sort_keys=True) + "\n", out_dir / f"{tid}.json"))
    return written


def load_trial_stats(stats_dir) -> dict:
    """{analysis key: (TrialStats over the trials that export it, varies flags)}."""
    stats_dir = Path(stats_dir)
    files = sorted(stats_dir.glob("*.json"))
    if not files:
        raise InputError("no per-trial statistics found", file=stats_dir,
                         expected="<trial_id>.json files written by `python -m analysis export-stats`")
    by_key: dict = {}
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=f) from None
        if doc.get("format_version") != FORMAT_VERSION:
            raise InputError("unknown statistics format", file=f, expected=f"format_version {FORMAT_VERSION}",
                             found=doc.get("format_version"))
        for key, entry in doc["analyses"].items():
            by_key.setdefault(key, []).append((doc["trial_id"], entry))
    return {key: assemble_stats(entries) for key, entries in by_key.items()}


def continuous_rows(stats: dict, method_note: str = "", modifier_note: str = "from per-trial summaries: "
                    "no non-linearity test") -> tuple[list, list]:
    """The continuous overall rows and modifier rows from assembled statistics
    ({key: (TrialStats, varies)}), in the order of the pooled results."""
    est_rows, mod_rows = [], []
    for c in COMPARISONS:
        for o in ("pain", "function"):
            for w in WINDOWS:
                entry = stats.get(stats_key(c, o, w.name))
                method = continuous_method() + method_note
                if entry is None:
                    est_rows.append(empty_row("overall", c, o, w.name, "exercise", "md", method,
                                              "not estimable: no trials with both arms at this window"))
                    continue
                fit = fit_reml(entry[0])
                est_rows.append(result_row("overall", c, o, w.name, "exercise", "md", fit.summary(), method,
                                           fit.message))
                for cov in COVARIATES:
                    e = stats.get(stats_key(c, o, w.name, cov))
                    if e is None:
                        continue
                    st, varies = e
                    k, n = st.k, int(st.n.sum())
                    if int(varies.sum()) < MIN_TRIALS_WITHIN:
                        mod_rows += not_estimable_rows(c, o, w.name, cov, k, n, varies)
                        continue
                    fit_m, within, across, ts = continuous_interaction(st)
                    rows = interaction_rows(c, o, w.name, cov, k, n, int(varies.sum()), within, across, fit_m.converged,
                                            fit_m.message, fit_m.tau2, ts)
                    if cov not in BINARY_COVARIATES:  # the non-linearity test is for continuous covariates
                        rows[0]["note"] = (rows[0]["note"] + "; " if rows[0]["note"] else "") + modifier_note
                    mod_rows += rows
    return est_rows, mod_rows


def fit_from_stats(stats_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The continuous overall estimates and modifier rows from exported statistics."""
    est_rows, mod_rows = continuous_rows(load_trial_stats(stats_dir))
    note_logistic = "not available from summary statistics: the mixed logistic model needs individual outcomes"
    rows = {(r["comparison"], r["outcome"], r["window"]): r for r in est_rows}
    for c in COMPARISONS:
        for w in WINDOWS:
            rows[c, "recovered", w.name] = empty_row("overall", c, "recovered", w.name, "exercise", "log_or",
                                                     "one-stage mixed logistic", note_logistic)
    return (pd.DataFrame([rows[key] for key in ALL_OVERALL], columns=RESULT_COLUMNS),
            holm_by_family(pd.DataFrame(mod_rows, columns=MODIFIER_COLUMNS)))
