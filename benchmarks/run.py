"""Benchmarks: `python -m benchmarks.run [--sizes 27x3514,100x50000,1000x1000000]`.

For each size, in its own process and on the same data: generate the messy raw files
(`demo-data --trials --participants`), run the whole `python -m analysis all` on them
(harmonise, all overall analyses with the mixed logistic ones, the modifiers and every
sensitivity analysis with 20 imputations) and take its own per-stage timings and its peak
memory, then fit one continuous one-stage model from raw arrays and statsmodels MixedLM on
the same sample and model (ratio). Also times `all` on the demo from an empty raw folder
(generation included; the median of five runs). Writes benchmarks/results.csv and the table
in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def timed(fn, repeat=1):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def raw_arrays(d):
    """The raw arrays a fit starts from (outside the timing: pandas selection is not the fit)."""
    return (
        d.trial_id.to_numpy(),
        d.pain.to_numpy(),
        d.exercise.to_numpy(float)[:, None],
        d.pain_bl.to_numpy()[:, None],
    )


def one_fit(arrays):
    """Per-trial statistics, REML and Satterthwaite df, from raw arrays."""
    from analysis.models.onestage import fit_reml, sufficient_stats

    trial, y, x, z = arrays
    return fit_reml(sufficient_stats(trial, y, x, z))


def mixedlm_fit(d):
    """The same model in statsmodels: stratified intercepts and baseline slopes, random exercise slope."""
    import statsmodels.formula.api as smf

    d = d.assign(y0c=d.pain_bl - d.groupby("trial_id").pain_bl.transform("mean"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm("pain ~ 0 + C(trial_id) + C(trial_id):y0c + exercise", d, groups="trial_id",
                           re_formula="0 + exercise").fit(reml=True)


def yardstick_sample(paths):
    """The sample one fit and MixedLM are timed on: short-term pain, exercise against no
    treatment or usual care, from the derived data at ``paths``."""
    from analysis.analyses.fit import load_derived
    from analysis.analyses.samples import outcome_sample

    return outcome_sample(*load_derived(paths), "none_usual_care", "pain", "short")


STAGE = re.compile(r"timing: (?P<stage>[a-z ]+) (?P<seconds>[0-9.]+) s")


def python_environment() -> dict:
    """The environment the measured commands run in: this one with Python's bytecode cache
    on, as it is by default. This machine sets PYTHONDONTWRITEBYTECODE, under which every
    run compiled the project's modules again from source (0.08 s of the demo's 2.5 s from
    empty, measured); a user's runs after the first read them from ``__pycache__``, and so
    do the measured runs after the first (which writes them)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_all(paths) -> tuple[float, dict, float]:
    """`python -m analysis all --verbose` on raw files already written: wall time, the
    per-stage times it logs, and the peak memory of that process (GiB)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "all",
            "--verbose",
            "--data-dir",
            str(paths.data_dir),
            "--results-dir",
            str(paths.results_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=python_environment(),
    )
    wall = time.perf_counter() - t0
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(out.stderr)}
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return wall, stages, peak


def bench_one_size(k: int, n: int, mixedlm_limit: int) -> dict:
    """Every measurement at one size: the pipeline's own stage timings from one run of
    `all`, then one fit from raw arrays and MixedLM on the same sample."""
    from analysis import demo
    from analysis.parallel import default_jobs
    from analysis.paths import Paths

    tmp = Path(tempfile.mkdtemp())
    paths = Paths(tmp / "data", tmp / "results")
    row = {"trials": k, "participants": n}
    try:
        row["generate_s"], _ = timed(lambda: demo.write_raw(paths.raw, n_trials=k, n_total=n, spec_dir=paths.specs,
                                                            jobs=default_jobs()))
        row["all_s"], stages, row["peak_rss_gib"] = run_all(paths)
        row["harmonise_s"] = stages["harmonise"]
        row["harmonise_rows_per_s"] = n / stages["harmonise"]
        row["all_overall_s"] = stages["overall effects"]
        row["modifiers_s"] = stages["modifiers"]
        row["sensitivity_s"] = stages["sensitivity"]
        sample = yardstick_sample(paths)
        arrays = raw_arrays(sample)
        one_fit(arrays)  # warm-up
        row["one_fit_s"], f = timed(lambda: one_fit(arrays), repeat=21 if n <= 100_000 else 5)
        row["sample_participants"] = len(sample)
        if len(sample) <= mixedlm_limit:
            row["mixedlm_s"], m = timed(lambda: mixedlm_fit(sample), repeat=3 if n <= 10_000 else 1)
            row["speedup"] = row["mixedlm_s"] / row["one_fit_s"]
            row["theta_rel_diff"] = abs(f.coef[0] - m.params["exercise"]) / abs(m.params["exercise"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


# this machine's phase moved one run of the demo from empty by more than a second (5.9 and
# 7.0 s right after the million-participant size, against a mean of 5.3 s over ten runs
# minutes later): the median of several runs is the measure, with their range beside it
DEMO_ALL_RUNS = 5


def bench_demo_all(runs: int = DEMO_ALL_RUNS) -> tuple[list[float], list[float]]:
    """`all` on the demo from an empty raw folder (generation included), ``runs`` times, each
    in a new folder: the wall times, and after each run one MixedLM fit of its sample (the
    yardstick, median of 3) timed in the same minute. This machine's speed drifts by 10 to
    15 % over the minutes a benchmark takes (the same fits' demo from empty took 2.4 to 2.8 s
    and their MixedLM fit 0.047 to 0.057 s in three runs, the fit timed minutes before the
    demo), so the ratio of the two is taken from measurements side by side."""
    from analysis.paths import Paths

    times, mixedlm = [], []
    for _ in range(runs):
        tmp = Path(tempfile.mkdtemp())
        try:
            shutil.copytree(ROOT / "data" / "specs", tmp / "data" / "specs")
            paths = Paths(tmp / "data", tmp / "results")
            times.append(run_all(paths)[0])
            mixedlm.append(timed(partial(mixedlm_fit, yardstick_sample(paths)), repeat=3)[0])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return times, mixedlm


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, numpy {np.__version__}"


def _fmt(v, spec, missing="not run"):
    return missing if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def write_readme(table: pd.DataFrame, demo_all: list[float], mixedlm_beside: list[float] | None = None):
    lines = [
        "| trials / participants | harmonise (rows/s) | one fit (ms) | MixedLM, same sample (s) | speed-up | "
        "theta rel. diff | all 27 overall analyses (s) | modifiers (s) | sensitivity, m = 20 (s) | whole `all` (s) | "
        "peak memory of `all` (GiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.to_dict("records"):
        g = r.get
        lines.append(
            f"| {r['trials']:,} / {r['participants']:,} | {g('harmonise_rows_per_s'):,.0f} | "
            f"{1000 * g('one_fit_s'):.1f} | {_fmt(g('mixedlm_s'), '.2f')} | "
            f"{_fmt(g('speedup'), ',.0f')}{'x' if np.isfinite(g('speedup', np.nan)) else ''} | "
            f"{_fmt(g('theta_rel_diff'), '.1e')} | {g('all_overall_s'):.1f} | {g('modifiers_s'):.1f} | "
            f"{g('sensitivity_s'):.1f} | {g('all_s'):.1f} | {g('peak_rss_gib'):.2f} |"
        )
    sizes = ",".join(f"{r.trials}x{r.participants}" for r in table.itertuples())
    body = (
        f"<!-- results -->\nMachine: {machine()}. Measured {time.strftime('%Y-%m-%d')} with "
        f"`python -m benchmarks.run --sizes {sizes}`.\n\n"
        + "\n".join(lines)
        + "\n\nThe stage times are those `python -m analysis all --verbose` logs in the same run as the whole "
        "`all` column (harmonise and fit; the raw files were written before). The analyses run as tasks in "
        "two processes, so a stage's time is the sum of its tasks' seconds (CPU time spent on it, not wall "
        "time), and the three stages add up to about twice the wall time of `fit`. The peak memory is the "
        "largest resident set size of any one process of that run (the pool's processes are forked from the "
        "main one and share its data). Each `python -m analysis` run is timed with Python's bytecode cache on, "
        "its default (this machine sets PYTHONDONTWRITEBYTECODE, which the measured runs do not inherit: "
        "`python_environment`). From an empty raw folder on the demo (generate, harmonise, "
        f"overall effects, modifiers, every sensitivity analysis with 20 imputations), `all` took "
        f"{_demo_all_text(demo_all, table, mixedlm_beside)}.\n"
    )
    readme = (HERE / "README.md").read_text()
    head = readme.split("<!-- results -->")[0]
    (HERE / "README.md").write_text(head + body)
    return body


def _demo_all_text(times: list[float], table: pd.DataFrame, mixedlm_beside: list[float] | None = None) -> str:
    """The median of the demo's runs from empty, their range, and the median as a multiple of
    one MixedLM fit of the demo's sample (the issue's yardstick): the median of the fits timed
    beside those runs (``mixedlm_beside``), else the size table's. Seconds to two decimals and
    the multiple to one, so that a multiple just above 50 does not print as 50."""
    median = float(np.median(times))
    text = (f"{median:.2f} s (median of {len(times)} runs: {min(times):.2f} to {max(times):.2f} s)"
            if len(times) > 1 else f"{median:.2f} s (one run)")
    demo = table[(table.trials == 27) & (table.participants == 3514)]
    in_table = float(demo.mixedlm_s.iloc[0]) if len(demo) else np.nan
    if not mixedlm_beside:
        return text + (f", {median / in_table:.1f} times one MixedLM fit of its sample"
                       if np.isfinite(in_table) else "")
    fit = float(np.median(mixedlm_beside))
    text += f", {median / fit:.1f} times one MixedLM fit of its sample timed beside them ({fit:.3f} s"
    if np.isfinite(in_table):
        text += (f", median of {len(mixedlm_beside)}; {median / in_table:.1f} times the fit in the table, "
                 f"{in_table:.3f} s, timed minutes before")
    return text + ")"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="27x3514,100x50000")
    parser.add_argument("--mixedlm-limit", type=int, default=40_000, help="largest sample given to MixedLM")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a single size, in this process; prints JSON
        k, n = map(int, args.one.split("x"))
        print(json.dumps(bench_one_size(k, n, args.mixedlm_limit)))
        return
    rows = []
    for size in args.sizes.split(","):
        print(f"benchmarking {size} ...", flush=True)
        out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--one", size, "--mixedlm-limit",
                              str(args.mixedlm_limit)],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "results.csv", index=False)
    print(write_readme(table, *bench_demo_all()))


if __name__ == "__main__":
    main()
