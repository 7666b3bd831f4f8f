"""The steps behind the command line: harmonise, check, fit; each reads and writes files."""

from __future__ import annotations

import logging

from analysis.errors import InputError
from analysis.ingest.guards import cross_trial_problems, spec_problems
from analysis.ingest.harmonise import harmonise_all, harmonise_trial
from analysis.ingest.schema import EXCLUSIONS, OUTCOMES, PARTICIPANTS, VALUE_ISSUES, validate
from analysis.ingest.spec import load_spec
from analysis.io import write_csv
from analysis.parallel import run_tasks, shared
from analysis.paths import Paths
from analysis.timing import timed_stage

__all__ = ["harmonise", "check", "fit", "DERIVED_TABLES"]

log = logging.getLogger(__name__)

DERIVED_TABLES = ("participants", "outcomes", "exclusions", "value_issues", "flow", "trials", "harmonisation_log",
                  "visits", "instruments")


def _write_table(name: str, path):
    return write_csv(shared(name), path)


# below this many rows in all, the derived tables are validated and written here: starting two
# workers takes about 15 ms, more than they save (the demo's 20,000 rows: 20 and 30 ms here
# against 32 and 41 ms in two processes)
POOLED_ROWS = 100_000


def _jobs_for(tables: dict, jobs: int) -> int:
    """``jobs``, or 1 when the tables are too small for workers to pay (``POOLED_ROWS``)."""
    return jobs if sum(len(t) for t in tables.values()) >= POOLED_ROWS else 1


def _write_derived(tables: dict, paths: Paths, jobs: int) -> None:
    """Every derived table as CSV, the largest first, in ``jobs`` processes (at a million
    participants three files of about four seconds each)."""
    names = sorted(DERIVED_TABLES, key=lambda name: -len(tables[name]))
    run_tasks([(_write_table, (name, paths.derived_file(name))) for name in names], _jobs_for(tables, jobs),
              data=tables)
    for name in DERIVED_TABLES:
        log.info("wrote %s", paths.derived_file(name))


_SCHEMAS = {"participants": PARTICIPANTS, "outcomes": OUTCOMES, "exclusions": EXCLUSIONS,
            "value_issues": VALUE_ISSUES}


def _validate_table(name: str) -> None:
    validate(shared(name), _SCHEMAS[name], name)


def _validate_derived(tables: dict, jobs: int) -> None:
    """The derived tables against their schemas, in ``jobs`` processes (at a million
    participants the participants and outcomes take about two seconds each); a failure is
    raised as it would be in a serial run (the first table in order)."""
    checked = {name: tables[name] for name in _SCHEMAS}
    run_tasks([(_validate_table, (name,)) for name in _SCHEMAS], _jobs_for(checked, jobs), data=checked)


def harmonise(paths: Paths, progress=None, jobs: int = 1) -> dict:
    specs = sorted(paths.specs.glob("*.yaml"))
    with timed_stage("harmonise"):
        bar = progress(len(specs), "harmonise") if progress else None
        _, tables = harmonise_all(paths.specs, paths.raw, progress=(lambda _: bar.update()) if bar else None,
                                  jobs=jobs)
        if bar:
            bar.close()
        _validate_derived(tables, jobs)
        for row in tables["flow"].itertuples():
            log.info(
                "%s: %d received, %d excluded, %d analysed", row.trial_id, row.received, row.excluded, row.analysed
            )
        _write_derived(tables, paths, jobs)
    return tables


def check(paths: Paths) -> tuple[list[str], list[str]]:
    """Every problem with specs and raw files (not only the first): specs that do not load or
    match their files, specs that look wrong (one reason hitting more than a tenth of a trial's
    records or a column's values), two specs reading one table, two trials holding the same
    participants. Notes count the records to be excluded and the values to be set missing."""
    problems, notes = [], []
    spec_files = sorted(p for p in paths.specs.glob("*.yaml") if not p.name.startswith("_"))
    if not spec_files:
        return [f"no trial specs in {paths.specs}"], notes
    specs, results = [], []
    for path in spec_files:
        try:
            spec = load_spec(path)
        except InputError as exc:
            problems.append(exc.message())
            continue
        specs.append(spec)
    problems += cross_trial_problems(specs)
    for spec in specs:
        try:
            result = harmonise_trial(spec, paths.raw)
        except InputError as exc:
            problems.append(exc.message())
            continue
        results.append(result)
        problems += spec_problems(result)
        if len(result.exclusions) or len(result.value_issues):
            notes.append(f"{spec.trial_id}: {len(result.exclusions)} raw record(s) will be excluded and "
                         f"{len(result.value_issues)} value(s) set missing or not used, each with a reason "
                         "(exclusions.csv and value_issues.csv after `harmonise`)")
    problems += [p for p in cross_trial_problems(specs, results) if p not in problems]
    return problems, notes


def fit(paths: Paths, progress=None, jobs: int = 1) -> list:
    from analysis.analyses.fit import fit_all

    return fit_all(paths, progress=progress, jobs=jobs)
