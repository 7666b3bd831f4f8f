"""Every prespecified analysis on the derived data -> results/*.csv (CONTRACT.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from analysis.analyses.descriptives import baseline_aggregates, baseline_summary
from analysis.analyses.modifiers import availability_matrix, modifier_estimates
from analysis.analyses.overall import ALL_OVERALL, heterogeneity, overall_estimates, trial_effects
from analysis.analyses.sensitivity import influence_summary, sensitivity_estimates
from analysis.analyses.validation import reference_estimates
from analysis.errors import InputError
from analysis.io import read_csv, write_csv
from analysis.paths import Paths
from analysis.provenance import write_provenance
from analysis.settings import COMPARISONS
from analysis.timing import timed_stage

__all__ = ["load_derived", "fit_all"]

log = logging.getLogger(__name__)


def load_derived(paths: Paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = [paths.derived_file("participants"), paths.derived_file("outcomes")]
    for f in files:
        if not f.exists():
            raise InputError("derived data not found", file=f, hint="run `python -m analysis harmonise` first")
    return read_csv(files[0]), read_csv(files[1])


def _stage(progress, total, desc, fn, **kw):
    """Run one stage of fit_all with a progress bar (on a terminal) and its time in the log."""
    bar = progress(total, desc) if progress else None
    try:
        with timed_stage(desc):
            return fn(progress=bar.update if bar else None, **kw)
    finally:
        if bar:
            bar.close()


def _overall_and_trial_effects(participants, outcomes, progress=None):
    return overall_estimates(participants, outcomes, progress=progress), trial_effects(participants, outcomes)


def fit_all(paths: Paths, progress=None, seed=None, imputations: int = 20) -> list[Path]:
    """Baseline characteristics by arm, overall effects (with each trial's own estimate),
    modifiers (with figure data and covariate availability), sensitivity analyses and the estimators' values on the
    reference data sets, written to the results folder."""
    participants, outcomes = load_derived(paths)
    written = [write_csv(baseline_summary(baseline_aggregates(participants)), paths.result_file("baseline"))]
    est, effects = _stage(progress, len(ALL_OVERALL), "overall effects", _overall_and_trial_effects,
                          participants=participants, outcomes=outcomes)
    written += [write_csv(est, paths.result_file("estimates")), write_csv(effects, paths.result_file("trial_effects")),
                write_csv(heterogeneity(effects), paths.result_file("heterogeneity"))]
    mods, curves = _stage(progress, len(COMPARISONS) * 90, "modifiers", modifier_estimates,
                          participants=participants, outcomes=outcomes)
    written.append(write_csv(mods, paths.result_file("modifiers")))
    written.append(write_csv(curves, paths.result_file("modifier_effects")))
    written.append(write_csv(availability_matrix(participants), paths.result_file("covariate_availability")))
    visits = read_csv(paths.derived_file("visits"))
    trials = read_csv(paths.derived_file("trials"))
    sens = _stage(progress, 10, "sensitivity", sensitivity_estimates, participants=participants,
                  outcomes=outcomes, visits=visits, trials=trials, m=imputations, effects=effects)
    written.append(write_csv(sens, paths.result_file("sensitivity")))
    written.append(write_csv(influence_summary(sens, est), paths.result_file("influence")))
    written.append(write_csv(reference_estimates(), paths.result_file("reference_checks")))
    written.append(write_provenance(paths, seed=seed))
    return written
