"""Command line: ``python -m analysis <verb>`` (verbs and paths fixed by CONTRACT.md)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from analysis import collector
from analysis.errors import InputError
from analysis.paths import Paths

__all__ = ["main"]

log = logging.getLogger("analysis")


def _progress(total: int, desc: str):
    """A progress bar on stderr for long steps (quiet when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="trial", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


@contextmanager
def _loading(args):
    """Load a command's modules with the garbage collector off and, in a process of its own
    (``python -m analysis``: ``args.own_process``), set the objects they made aside from it
    (``gc.freeze``). pandas, scipy, pandera and the analysis modules make some 220,000
    long-lived objects among which there is nothing to collect, and each full pass of the
    collector over them cost 0.05 to 0.09 s (0.11 s of the demo's `fit` in all, timed with
    ``gc.callbacks``). Frozen only when modules were loaded, and never in a caller's process
    (a test's): frozen then, other objects (garbage in reference cycles among them) would
    never be freed."""
    modules = len(sys.modules)
    with collector.paused():
        try:
            yield
        finally:
            if args.own_process and len(sys.modules) > modules:
                gc.freeze()


def cmd_demo_data(args, paths: Paths) -> int:
    with _loading(args):
        from analysis import demo
        from analysis.parallel import default_jobs

    scaled = (args.trials, args.participants) != (demo.N_TRIALS, demo.N_TOTAL)
    if scaled and paths.specs.resolve() == (Paths().data_dir / "specs").resolve() and not args.data_dir_given:
        raise InputError("a scaled demo writes its own specs; give --data-dir for another folder so that the "
                         "committed specs of the 27-trial demo stay as they are", file=paths.specs)
    try:
        files = demo.write_raw(paths.raw, seed=args.seed, n_trials=args.trials, n_total=args.participants,
                               spec_dir=paths.specs if scaled else None,
                               jobs=getattr(args, "jobs", None) or default_jobs())
    except ValueError as exc:
        raise InputError(str(exc), expected="--trials >= 3 and --participants >= 10 per trial") from None
    if args.specs:
        paths.specs.mkdir(parents=True, exist_ok=True)
        for d in demo.designs():
            (paths.specs / f"{d.trial_id}.yaml").write_text(demo.spec_text(d), encoding="utf-8")
    print(f"wrote {len(files)} synthetic raw trial files (seed {args.seed}) to {paths.raw}")
    return 0


def cmd_harmonise(args, paths: Paths) -> int:
    with _loading(args):
        from analysis.parallel import default_jobs
        from analysis.pipeline import harmonise

    tables = harmonise(paths, progress=_progress, jobs=getattr(args, "jobs", None) or default_jobs())
    flow = tables["flow"]
    print(f"harmonised {len(flow)} trials: {flow.received.sum()} participants received, "
          f"{flow.excluded.sum()} excluded (see exclusions.csv), {flow.analysed.sum()} in the master data, "
          f"{flow.values_set_missing.sum()} values set missing (see value_issues.csv) -> {paths.derived}")
    return 0


def cmd_check(args, paths: Paths) -> int:
    with _loading(args):
        from analysis.pipeline import check
        from analysis.provenance import is_stale, read_provenance

    if args.results:
        if is_stale(paths):
            print(f"results in {paths.results_dir} are missing or stale against the current specs, raw files "
                  "or analysis code: run `python -m analysis all`", file=sys.stderr)
            return 1
        if read_provenance(paths).get("mode") == "federated":  # is_stale does not check these
            print("results come from a federated run: their inputs stayed at the stations and are not checked here")
        else:
            print("results are current: inputs unchanged since they were made")
        return 0
    problems, notes = check(paths)
    for note in notes:
        print(note)
    if problems:
        print(f"{len(problems)} problem(s) found:", file=sys.stderr)
        for p in problems:
            print(f"- {p}", file=sys.stderr)
        return 1
    print("check passed: every spec is valid and every raw file can be harmonised")
    return 0


def cmd_export_stats(args, paths: Paths) -> int:
    with _loading(args):
        from analysis.analyses.fit import load_derived
        from analysis.analyses.summaries import export_trial_stats

    participants, outcomes = load_derived(paths)
    out = args.out or paths.data_dir / "stats"
    written = export_trial_stats(participants, outcomes, out)
    print(f"wrote per-trial statistics (no row-level data) for {len(written)} trials to {out}")
    return 0


def cmd_fit(args, paths: Paths) -> int:
    if args.from_stats:
        with _loading(args):
            from analysis.analyses.summaries import fit_from_stats
            from analysis.io import write_csv

        est, mods = fit_from_stats(args.from_stats)
        written = [write_csv(est, paths.result_file("estimates")), write_csv(mods, paths.result_file("modifiers"))]
        print("wrote " + ", ".join(str(p) for p in written) + " (from per-trial statistics: continuous outcomes only)")
        return 0
    with _loading(args):
        import analysis.analyses.fit  # noqa: F401 (``fit`` loads it when called: here it is frozen too)
        from analysis.parallel import default_jobs
        from analysis.pipeline import fit

    written = fit(paths, progress=_progress, jobs=args.jobs or default_jobs())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_new_spec(args, paths: Paths) -> int:
    with _loading(args):
        from analysis.ingest.newspec import write_draft

    target = write_draft(args.raw_file, args.trial_id, paths.specs)
    print(f"wrote a draft spec to {target}: confirm the lines marked CONFIRM, fill each TODO, "
          f"then run `python -m analysis check`")
    return 0


def _start_in_child(fn, *args):
    """Start ``fn`` in a forked child; returns the function that waits for it (and exits
    as the child did when it failed). The synthetic-data generator leaves a process's memory
    in a state in which the fit that follows ran 40 % slower (measured on the demo: 11.8 s
    against 8.3 s of CPU); a child's memory goes away with it, and this process can do other
    work meanwhile."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        fn(*args)
        return lambda: None
    sys.stdout.flush()  # nothing buffered here is printed twice by the child
    sys.stderr.flush()
    child = multiprocessing.get_context("fork").Process(target=fn, args=args)
    child.start()

    def wait():
        child.join()
        if child.exitcode:
            raise SystemExit(child.exitcode)

    return wait


def cmd_all(args, paths: Paths) -> int:
    raw_empty = not paths.raw.exists() or not any(
        p for p in paths.raw.iterdir() if not p.name.startswith((".", "README"))
    )
    wait = None
    if raw_empty:
        args.specs = False
        args.trials, args.participants = 27, 3514
        # the generator's modules, numpy and pandas among them (0.2 s), load here and the child
        # inherits them: this process needs numpy and pandas too (loading the generator's
        # modules in the child instead used 0.12 s more CPU time and saved no time)
        with _loading(args):
            import analysis.demo  # noqa: F401

        # one process writes the files while this one loads the analysis modules, the longer of
        # the two (0.4 s against 0.3 s); with two writers, three busy processes shared the two
        # cores and the loading here took 0.55 s
        writer_args = argparse.Namespace(**{**vars(args), "jobs": 1})
        wait = _start_in_child(cmd_demo_data, writer_args, paths)
    # the analysis modules (about a second of imports), the statistical-file reader and the
    # validation backends load before any work (while the child, if any, writes the files):
    # harmonise's forked workers inherit them instead of each loading them, and they are
    # frozen with nothing else (``_loading``)
    with _loading(args):
        import pyreadstat  # noqa: F401

        import analysis.analyses.fit  # noqa: F401
        import analysis.pipeline  # noqa: F401
        from analysis.ingest.schema import load_backends

        load_backends()

    if wait:
        wait()
    cmd_harmonise(args, paths)
    args.from_stats = None
    return cmd_fit(args, paths)


def cmd_federated(args, paths: Paths) -> int:
    """The federated analysis: on vantage6's mock client (one site per trial), or the result
    of a real network's central task written as the results tables."""
    import contextlib
    import io
    import json

    with _loading(args):
        from analysis.federated.mock import run_mock, write_result

    if args.result is not None:
        try:
            result = json.loads(args.result.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the central task's result: {exc}", file=args.result,
                             expected="the JSON the central function returned") from None
        if not isinstance(result, dict) or "tables" not in result or "federation" not in result:
            raise InputError("not a result of this project's central function", file=args.result,
                             expected='a JSON object with "tables" and "federation"')
        data_paths = None
    elif args.mock:
        with _loading(args):
            from analysis.federated.disclosure import SiteSettings

        settings = SiteSettings(args.min_cell, args.min_events)
        print(f"running the federated analysis on vantage6's mock client: one site per trial in {paths.specs} "
              f"(disclosure: cells of {settings.min_cell}+ participants, {settings.min_events}+ events)",
              file=sys.stderr)
        with contextlib.redirect_stdout(io.StringIO()):  # the mock prints a line for every wait
            result = run_mock(paths, settings)
        data_paths = paths
    else:
        print("error: say --mock (vantage6's mock client on this project's trials) or --result FILE "
              "(a real network's central result)", file=sys.stderr)
        return 2
    written = write_result(result, paths.results_dir, data_paths)
    fed = result["federation"]
    ok = [s for s in fed["sites"] if s["ok"]]
    sent = sum(s.get("bytes_received", 0) for s in fed["sites"])
    print(f"federated analysis: {len(ok)} of {len(fed['sites'])} sites answered, {fed['rounds']} likelihood rounds, "
          f"{sent / 1e6:.1f} MB from the sites; wrote {len(written)} files to {paths.results_dir}")
    if not fed["complete"]:
        for failure in fed["failures"]:
            print(f"site {failure['site']} failed: {failure['error']}", file=sys.stderr)
        print("the results are INCOMPLETE: they leave out the failed sites' trials", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Paths().data_dir,
                        help="folder holding specs/, raw/ and derived/ (default: data/ of the project)")
    common.add_argument("--results-dir", type=Path, default=Paths().results_dir,
                        help="folder for the results CSV files (default: results/ of the project)")
    common.add_argument("-v", "--verbose", action="store_true", help="log each step")
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Reproducible one-stage IPD meta-analysis of exercise for persistent low back pain.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="verb")
    p = sub.add_parser("demo-data", parents=[common], help="write the synthetic raw trial files")
    p.add_argument("--seed", type=int, default=2020, help="random seed (default 2020)")
    p.add_argument("--specs", action="store_true", help="also (re)write the demo specs in data/specs/")
    p.add_argument("--trials", type=int, default=27, help="number of trials (default 27: the calibrated demo)")
    p.add_argument("--participants", type=int, default=3514, help="participants in all (default 3514)")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes writing trials side by side (default: all cores; the files are the same)")
    p.set_defaults(func=cmd_demo_data)
    p = sub.add_parser("harmonise", parents=[common], help="validate and harmonise raw files into data/derived/")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes harmonising trials side by side (default: all cores; results are identical)")
    p.set_defaults(func=cmd_harmonise)
    p = sub.add_parser("fit", parents=[common], help="fit every prespecified analysis into results/")
    p.add_argument(
        "--from-stats",
        type=Path,
        default=None,
        help="fit the continuous one-stage models from per-trial statistics (export-stats) instead of raw data",
    )
    p.add_argument("--jobs", type=int, default=None,
                   help="processes for independent analyses (default: all cores; results are identical)")
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser(
        "export-stats", parents=[common], help="write per-trial sufficient statistics (no row-level data)"
    )
    p.add_argument("--out", type=Path, default=None, help="folder for <trial_id>.json (default: <data-dir>/stats)")
    p.set_defaults(func=cmd_export_stats)
    p = sub.add_parser("all", parents=[common], help="demo-data (if data/raw is empty), harmonise, fit")
    p.add_argument("--seed", type=int, default=2020, help="seed for demo-data (default 2020)")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes for independent analyses (default: all cores; results are identical)")
    p.set_defaults(func=cmd_all)
    p = sub.add_parser("federated", parents=[common],
                       help="the federated analysis (vantage6): sites send statistics, never participant data")
    p.add_argument("--mock", action="store_true",
                   help="run it on vantage6's mock client, one site per trial of --data-dir (each sees only its "
                        "own spec and raw files)")
    p.add_argument("--result", type=Path, default=None,
                   help="instead, write the results from a real network's central task result (JSON)")
    p.add_argument("--min-cell", type=int, default=5,
                   help="mock sites' disclosure threshold: fewest participants per arm (default 5)")
    p.add_argument("--min-events", type=int, default=3,
                   help="mock sites' threshold: fewest events and non-events per arm (default 3)")
    p.set_defaults(func=cmd_federated)
    p = sub.add_parser("new-spec", parents=[common], help="draft data/specs/<trial_id>.yaml from a raw file")
    p.add_argument("raw_file", type=Path, help="the raw trial file (csv, xlsx, sav or dta)")
    p.add_argument("--trial-id", required=True, help="identifier of the trial (the spec's file name)")
    p.set_defaults(func=cmd_new_spec)
    p = sub.add_parser(
        "check", parents=[common], help="validate specs and raw files only; exit 1 with a report on problems"
    )
    p.add_argument(
        "--results", action="store_true", help="instead, report whether results are stale against the inputs"
    )
    p.set_defaults(func=cmd_check)
    return parser


def quick_exit(code: int):
    """End the process once the command is done, without tearing down every imported module
    (pandas, scipy, ...): that took a quarter of a second of each command on the demo, freeing
    memory the system takes back at once anyway (mypy ends the same way). Every file is
    written and closed by then; the streams and the log are flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(int(code or 0))


def main(argv=None, own_process: bool = False) -> int:
    """Run one command; ``own_process``: this process exists only for it (``python -m
    analysis``), so what its modules leave behind may be set aside from the garbage collector
    for good (``_loading``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.data_dir_given = "--data-dir" in argv
    args.own_process = own_process
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    paths = Paths(args.data_dir.resolve(), args.results_dir.resolve())
    try:
        return args.func(args, paths)
    except InputError as exc:
        print(f"error: {exc.message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: files already written are complete; nothing was left half-written", file=sys.stderr)
        return 130
