"""Every prespecified analysis on the derived data -> results/*.csv (CONTRACT.md)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from analysis.analyses.descriptives import baseline_aggregates, baseline_summary
from analysis.analyses.modifiers import availability_matrix, modifier_fits, modifier_tables
from analysis.analyses.overall import WindowArms, heterogeneity, overall_estimates, trial_effects
from analysis.analyses.samples import window_frame
from analysis.analyses.sensitivity import (
    MI_COMPARISONS,
    SENSITIVITY_COLUMNS,
    imputed_fits,
    influence_summary,
    pooled_imputation_rows,
    sensitivity_estimates,
)
from analysis.analyses.validation import reference_estimates
from analysis.errors import InputError
from analysis.io import read_csv, write_csv
from analysis.parallel import kept, run_tasks, shared
from analysis.paths import Paths
from analysis.provenance import demo_seed, provenance_record, write_provenance
from analysis.settings import COMPARISONS
from analysis.timing import log_stage, log_task

__all__ = ["load_derived", "fit_all"]


def load_derived(paths: Paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = [paths.derived_file("participants"), paths.derived_file("outcomes")]
    for f in files:
        if not f.exists():
            raise InputError("derived data not found", file=f, hint="run `python -m analysis harmonise` first")
    return read_csv(files[0]), read_csv(files[1])


# small enough to balance two processes (each task at most an eighth of the fit's CPU time
# at a million participants), large enough to keep the set-up's share small (2.5 s a task there)
IMPUTATIONS_PER_TASK = 10


def _overall_and_sensitivity():
    """Overall effects, each trial's own estimate, heterogeneity and every sensitivity
    analysis except multiple imputation (which is a task of its own)."""
    participants, outcomes, trials = (shared(k) for k in ("participants", "outcomes", "trials"))
    visits = read_csv(shared("visits_file"))  # only this task reads the visits: here, beside the others
    windows = WindowArms(participants, outcomes, _window_frame)  # each window's arms built once for all these
    with _clock() as overall_s:
        est = overall_estimates(participants, outcomes, windows=windows)
        effects = trial_effects(participants, outcomes, windows=windows)
    with _clock() as sensitivity_s:
        sens = sensitivity_estimates(participants, outcomes, visits, trials, effects=effects, imputed=[],
                                     windows=windows)
        # the summaries of this task's results are made here, beside the other tasks, not after
        # them (11 ms of the demo's serial end); every leave-one-out row is in this task's table
        het, influence = heterogeneity(effects), influence_summary(sens, est)
    return {"estimates": est, "trial_effects": effects, "sensitivity": sens, "heterogeneity": het,
            "influence": influence, "seconds": {"overall effects": overall_s(), "sensitivity": sensitivity_s()}}


def _imputations(comparison: str, draws: range):
    """Some of one comparison's imputations, each from its own random stream."""
    with _clock() as seconds:
        part = imputed_fits(shared("participants"), shared("outcomes"), comparison, draws)
    return {"imputed": part, "seconds": {"sensitivity": seconds()}}


def _modifiers(comparison: str, outcome: str):
    with _clock() as seconds:
        part = modifier_fits(shared("participants"), shared("outcomes"), (comparison,), (outcome,),
                             frames=_window_frame)
    return {"modifiers": part, "seconds": {"modifiers": seconds()}}


def _descriptives_and_checks():
    """Baseline characteristics by arm, covariate availability, and the estimators' values on
    the reference data sets: they need no other task's results, so they run beside the
    analyses instead of after them, in one process while the other core waited (a tenth of
    a second on the demo)."""
    participants = shared("participants_as_read")  # the order the sums of the baseline table were taken in
    with _clock() as seconds:
        tables = {"baseline": baseline_summary(baseline_aggregates(participants)),
                  "covariate_availability": availability_matrix(participants),
                  "reference_checks": reference_estimates()}
    return {"descriptives": tables, "seconds": {"descriptives": seconds()}}


def _window_frame(window):
    """The shared participants joined with their outcomes at ``window``, made once in each
    process (at a million participants 1.5 s, which the modifier tasks each spent three times)."""
    return kept(("window", window), lambda: window_frame(shared("participants"), shared("outcomes"), window))


@contextmanager
def _clock():
    """Seconds spent in a block, read after it."""
    start, end = time.perf_counter(), []
    yield lambda: end[0] - start
    end.append(time.perf_counter())


def _tasks(imputations: int) -> list:
    """The independent parts of the analysis, longest first (so that the processes finish
    together): the overall and other sensitivity analyses, the mixed logistic modifier models
    of each comparison, the imputations in groups of ``IMPUTATIONS_PER_TASK``, then the other
    modifier models, and the descriptive tables and reference checks last (the shortest)."""
    tasks = [(_overall_and_sensitivity, ())]
    tasks += [(_modifiers, (comparison, "recovered")) for comparison in COMPARISONS]
    for comparison in MI_COMPARISONS:
        tasks += [(_imputations, (comparison, range(first, min(first + IMPUTATIONS_PER_TASK, imputations))))
                  for first in range(0, imputations, IMPUTATIONS_PER_TASK)]
    for outcome in ("pain", "function"):
        tasks += [(_modifiers, (comparison, outcome)) for comparison in COMPARISONS]
    return tasks + [(_descriptives_and_checks, ())]


def _pooled_imputations(results, imputations: int) -> list[dict]:
    """The multiple-imputation rows from the imputation tasks' fits."""
    rows = []
    for comparison in MI_COMPARISONS:
        parts = [r["imputed"] for r in results if "imputed" in r and r["imputed"].comparison == comparison]
        rows += pooled_imputation_rows(parts, imputations)
    return rows


def _run(tasks, jobs: int, data: dict, progress=None, meanwhile=None) -> list:
    """Each task's result, in the order of ``tasks``: in this process, or in a pool of
    ``jobs`` forked processes (every task is deterministic, so the results are the same).
    The tasks read ``data`` (the derived tables), which forked workers inherit: nothing
    large is pickled, and only the overall task reads a file (the visits, which it alone
    uses, while the other tasks run). ``meanwhile``: as for ``run_tasks``."""
    bar = progress(len(tasks), "analyses") if progress else None
    try:
        return run_tasks(tasks, jobs, (lambda _: bar.update()) if bar else None, data, meanwhile)
    finally:
        if bar:
            bar.close()


def fit_all(paths: Paths, progress=None, seed=None, imputations: int = 20, jobs: int = 1) -> list[Path]:
    """Baseline characteristics by arm, overall effects (with each trial's own estimate),
    modifiers (with figure data and covariate availability), sensitivity analyses and the
    estimators' values on the reference data sets, written to the results folder.

    The analyses run as independent tasks (``_tasks``), with ``jobs`` > 1 in that many
    processes; each is deterministic and the results are assembled in a fixed order, so
    the files are byte-identical to a serial run. The log's stage times are each stage's
    seconds summed over its tasks."""
    participants, outcomes = load_derived(paths)
    # the analyses get the participants in (trial, participant) order: every sample drawn from
    # them is then in that order already and is not sorted again (results do not depend on it)
    in_order = participants.sort_values(["trial_id", "participant_id"], kind="stable", ignore_index=True)
    data = dict(participants=in_order, participants_as_read=participants, outcomes=outcomes,
                visits_file=paths.derived_file("visits"), trials=read_csv(paths.derived_file("trials")))
    tasks = _tasks(imputations)
    # the provenance (checksums of the inputs, package versions, git's view of the code: 15 ms
    # on the demo) is taken while the workers fit, not after them: the inputs do not change
    record = {}
    results = _run(tasks, jobs, data, progress,
                   meanwhile=lambda: record.update(provenance_record(paths, demo_seed(paths, seed))))
    seconds: dict = {}
    for (fn, args), r in zip(tasks, results):
        log_task(f"{fn.__name__.strip('_')}{args}", sum(r["seconds"].values()))
        for stage, s in r["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + s
    for stage in ("overall effects", "modifiers", "sensitivity", "descriptives"):
        log_stage(stage, seconds[stage])
    main = next(r for r in results if "estimates" in r)
    descriptives = next(r["descriptives"] for r in results if "descriptives" in r)
    imputed = _pooled_imputations(results, imputations)
    est, effects = main["estimates"], main["trial_effects"]
    sens = pd.concat([main["sensitivity"], pd.DataFrame(imputed, columns=SENSITIVITY_COLUMNS)], ignore_index=True)
    mods, curves = modifier_tables([r["modifiers"] for r in results if "modifiers" in r])
    tables = {
        "baseline": descriptives["baseline"],
        "estimates": est, "trial_effects": effects, "heterogeneity": main["heterogeneity"],
        "modifiers": mods, "modifier_effects": curves,
        "covariate_availability": descriptives["covariate_availability"],
        "sensitivity": sens, "influence": main["influence"],
        "reference_checks": descriptives["reference_checks"],
    }
    written = [write_csv(table, paths.result_file(name)) for name, table in tables.items()]
    written.append(write_provenance(paths, record=record))
    return written
