"""Every prespecified analysis on the derived data -> results/*.csv (CONTRACT.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .errors import InputError
from .io import read_csv, write_csv
from .overall import RESULT_COLUMNS, continuous_method, empty_row, fit_continuous, fit_recovery, result_row
from .paths import Paths
from .provenance import write_provenance
from .samples import sample_from_frame, window_frame
from .settings import COMPARISONS, WINDOWS
from .timing import timed_stage

__all__ = ["ALL_OVERALL", "load_derived", "overall_rows", "overall_estimates", "fit_all"]

log = logging.getLogger(__name__)
N_NODES = 15


def load_derived(paths: Paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = [paths.derived_file("participants"), paths.derived_file("outcomes")]
    for f in files:
        if not f.exists():
            raise InputError("derived data not found", file=f, hint="run `python -m analysis harmonise` first")
    return read_csv(files[0]), read_csv(files[1])


def overall_one(participants, outcomes, comparison, outcome, window, analysis="overall",
                inference="satterthwaite", residual="common", random_effect=True, frame=None) -> dict:
    """One overall analysis as a results row (never raises for too little data: it says so).
    ``frame`` is the window's joined data when the caller already has it."""
    if frame is None:
        frame = window_frame(participants, outcomes, window)
    sample = sample_from_frame(frame, comparison, outcome)
    k, n = sample.trial_id.nunique(), len(sample)
    if outcome == "recovered":
        method = f"one-stage mixed logistic, ML, AGHQ {N_NODES} nodes" + ("" if random_effect else ", common effect")
        if k == 0 or sample.recovered.nunique() < 2 or sample.exercise.nunique() < 2:
            return empty_row(analysis, comparison, outcome, window, "exercise", "log_or", method,
                             "not estimable: no trials, no events or one arm only at this window", k, n)
        fit = fit_recovery(sample, n_nodes=N_NODES, random_effect=random_effect)
        s = fit.summary()
        s.update(n_trials=k, n_participants=n)
        return result_row(analysis, comparison, outcome, window, "exercise", "log_or", s, method, fit.message)
    method = continuous_method(inference, residual, random_effect)
    if k == 0 or sample.exercise.nunique() < 2:
        return empty_row(analysis, comparison, outcome, window, "exercise", "md", method,
                         "not estimable: no trials with both arms at this window", k, n)
    fit = fit_continuous(sample, outcome, inference=inference, residual=residual, random_effect=random_effect)
    return result_row(analysis, comparison, outcome, window, "exercise", "md", fit.summary(), method, fit.message)


ALL_OVERALL = [(c, o, w.name) for c in COMPARISONS for o in ("pain", "function", "recovered") for w in WINDOWS]


def overall_rows(participants, outcomes, combinations, progress=None, **options) -> list[dict]:
    """overall_one for each (comparison, outcome, window), returned in the given order. The
    fits run window by window, so each window's data are joined once and only one joined
    window is held at a time (at a million participants a join takes seconds and memory)."""
    rows = {}
    for window in dict.fromkeys(w for _, _, w in combinations):
        frame = window_frame(participants, outcomes, window)
        for comparison, outcome, w in combinations:
            if w == window:
                rows[comparison, outcome, w] = overall_one(participants, outcomes, comparison, outcome, w,
                                                           frame=frame, **options)
                if progress:
                    progress()
    return [rows[key] for key in combinations]


def overall_estimates(participants, outcomes, progress=None) -> pd.DataFrame:
    """Every overall analysis: three comparisons x three outcomes x three windows."""
    return pd.DataFrame(overall_rows(participants, outcomes, ALL_OVERALL, progress=progress), columns=RESULT_COLUMNS)


def _stage(progress, total, desc, fn, **kw):
    """Run one stage of fit_all with a progress bar (on a terminal) and its time in the log."""
    bar = progress(total, desc) if progress else None
    try:
        with timed_stage(desc):
            return fn(progress=bar.update if bar else None, **kw)
    finally:
        if bar:
            bar.close()


def fit_all(paths: Paths, progress=None, seed=None, imputations: int = 20) -> list[Path]:
    """Overall effects, modifiers (with figure data and covariate availability) and
    sensitivity analyses, written to the results folder."""
    from .modifiers import availability_matrix, modifier_estimates

    participants, outcomes = load_derived(paths)
    est = _stage(progress, len(ALL_OVERALL), "overall effects", overall_estimates,
                 participants=participants, outcomes=outcomes)
    written = [write_csv(est, paths.result_file("estimates"))]
    mods, curves = _stage(progress, len(COMPARISONS) * 90, "modifiers", modifier_estimates,
                          participants=participants, outcomes=outcomes)
    written.append(write_csv(mods, paths.result_file("modifiers")))
    written.append(write_csv(curves, paths.result_file("modifier_effects")))
    written.append(write_csv(availability_matrix(participants), paths.result_file("covariate_availability")))
    from .sensitivity import influence_summary, sensitivity_estimates

    visits = read_csv(paths.derived_file("visits"))
    trials = read_csv(paths.derived_file("trials"))
    sens = _stage(progress, 10, "sensitivity", sensitivity_estimates, participants=participants,
                  outcomes=outcomes, visits=visits, trials=trials, m=imputations)
    written.append(write_csv(sens, paths.result_file("sensitivity")))
    written.append(write_csv(influence_summary(sens, est), paths.result_file("influence")))
    written.append(write_provenance(paths, seed=seed))
    return written
