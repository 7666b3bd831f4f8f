"""Every prespecified analysis on the derived data -> results/*.csv (CONTRACT.md)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
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

__all__ = ["load_derived", "fit_all", "default_jobs"]

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


def _modifiers(paths: Paths, participants=None, outcomes=None, progress=None) -> list[Path]:
    """The modifier stage: interactions, figure data and covariate availability, written."""
    if participants is None:  # in a worker process: read the derived data there (no large pickles)
        participants, outcomes = load_derived(paths)
    mods, curves = _stage(progress, len(COMPARISONS) * 90, "modifiers", modifier_estimates,
                          participants=participants, outcomes=outcomes)
    return [write_csv(mods, paths.result_file("modifiers")), write_csv(curves, paths.result_file("modifier_effects")),
            write_csv(availability_matrix(participants), paths.result_file("covariate_availability"))]


def default_jobs() -> int:
    """All the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fit_all(paths: Paths, progress=None, seed=None, imputations: int = 20, jobs: int = 1) -> list[Path]:
    """Baseline characteristics by arm, overall effects (with each trial's own estimate),
    modifiers (with figure data and covariate availability), sensitivity analyses and the
    estimators' values on the reference data sets, written to the results folder.

    With ``jobs`` > 1 the modifier stage runs in a second process while this one fits the
    overall effects and the sensitivity analyses (the stages are independent; each is
    deterministic, so the files are byte-identical to a serial run)."""
    participants, outcomes = load_derived(paths)
    written = [write_csv(baseline_summary(baseline_aggregates(participants)), paths.result_file("baseline"))]
    pool = None
    if jobs > 1:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        modifiers_done = pool.submit(_modifiers, paths)
    try:
        est, effects = _stage(progress, len(ALL_OVERALL), "overall effects", _overall_and_trial_effects,
                              participants=participants, outcomes=outcomes)
        written += [write_csv(est, paths.result_file("estimates")),
                    write_csv(effects, paths.result_file("trial_effects")),
                    write_csv(heterogeneity(effects), paths.result_file("heterogeneity"))]
        if pool is None:
            written += _modifiers(paths, participants, outcomes, progress)
        visits = read_csv(paths.derived_file("visits"))
        trials = read_csv(paths.derived_file("trials"))
        sens = _stage(progress, 10, "sensitivity", sensitivity_estimates, participants=participants,
                      outcomes=outcomes, visits=visits, trials=trials, m=imputations, effects=effects)
        written.append(write_csv(sens, paths.result_file("sensitivity")))
        written.append(write_csv(influence_summary(sens, est), paths.result_file("influence")))
        written.append(write_csv(reference_estimates(), paths.result_file("reference_checks")))
        if pool is not None:
            written += modifiers_done.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    written.append(write_provenance(paths, seed=seed))
    return written
