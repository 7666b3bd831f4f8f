"""Benchmarks: `python benchmarks/run.py [--sizes demo,100x50000,1000x1000000] [--skip-mixedlm-above N]`.

Measures, on the same data and the same model, one continuous one-stage fit from raw arrays
(per-trial statistics + REML + Satterthwaite df) against statsmodels MixedLM, the mixed
logistic fit, and all overall analyses of the demo; writes benchmarks/results.csv and the
table in benchmarks/README.md. Timings are medians of repeated runs on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def simulate(k: int, n_total: int, seed: int = 1) -> pd.DataFrame:
    """Continuous and binary IPD from the one-stage models (trial sizes vary 0.5x-1.5x)."""
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.5, 1.5, k)
    sizes = np.maximum(4, np.round(sizes / sizes.sum() * n_total)).astype(int)
    trial = np.repeat(np.arange(k), sizes)
    n = len(trial)
    treat = (rng.random(n) < 0.5).astype(float)
    y0 = rng.normal(55, 16, n)
    u = rng.normal(0, 3.5, k)[trial]
    y = 40 + rng.normal(0, 5, k)[trial] + 0.5 * (y0 - 55) + treat * (-10.7 + u) + rng.normal(0, 14, n)
    eta = -2 + rng.normal(0, 0.5, k)[trial] - 0.02 * (y0 - 55) + treat * (0.5 + rng.normal(0, 0.3, k)[trial])
    rec = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"trial_id": trial, "exercise": treat, "pain_bl": y0, "function_bl": rng.normal(45, 15, n),
                         "pain": y, "recovered": rec})


def timed(fn, repeat=5):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def raw_arrays(d):
    """The raw arrays a fit starts from (outside the timing: pandas selection is not the fit)."""
    return (d.trial_id.to_numpy(), d.pain.to_numpy(), d.exercise.to_numpy()[:, None], d.pain_bl.to_numpy()[:, None])


def one_fit(arrays):
    """Per-trial statistics, REML and Satterthwaite df, from raw arrays."""
    from analysis.onestage import fit_reml, sufficient_stats

    trial, y, x, z = arrays
    return fit_reml(sufficient_stats(trial, y, x, z))


def mixedlm_fit(d):
    import statsmodels.formula.api as smf

    d = d.assign(y0c=d.pain_bl - d.groupby("trial_id").pain_bl.transform("mean"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm("pain ~ 0 + C(trial_id) + C(trial_id):y0c + exercise", d, groups="trial_id",
                           re_formula="0 + exercise").fit(reml=True)


def logistic_fit(d):
    from analysis.glmm import fit_mixed_logistic

    return fit_mixed_logistic(d.trial_id.to_numpy(), d.recovered.to_numpy(), d[["pain_bl", "function_bl"]].to_numpy(),
                              d.exercise.to_numpy(), n_nodes=15)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench_size(k, n, mixedlm_limit):
    d = simulate(k, n)
    row = {"trials": k, "participants": len(d)}
    arrays = raw_arrays(d)
    one_fit(arrays)  # warm-up (imports, first-call costs)
    row["one_fit_s"], f = timed(lambda: one_fit(arrays), repeat=21 if n <= 100_000 else 5)
    row["theta"] = f.coef[0]
    row["logistic_fit_s"], g = timed(lambda: logistic_fit(d), repeat=3 if n <= 100_000 else 1)
    if n <= mixedlm_limit:
        row["mixedlm_s"], m = timed(lambda: mixedlm_fit(d), repeat=3 if n <= 10_000 else 1)
        row["mixedlm_theta"] = float(m.params["exercise"])
        row["speedup"] = row["mixedlm_s"] / row["one_fit_s"]
        row["theta_rel_diff"] = abs(row["theta"] - row["mixedlm_theta"]) / abs(row["mixedlm_theta"])
    row["peak_rss_gib"] = peak_rss_gib()
    return row


def bench_demo_pipeline():
    """All overall analyses of the demo (every outcome, window, comparison, recovery included)."""
    import tempfile

    from analysis import demo
    from analysis.fit import overall_estimates
    from analysis.paths import PROJECT_ROOT, Paths
    from analysis.pipeline import harmonise

    tmp = Path(tempfile.mkdtemp())
    paths = Paths(tmp / "data", tmp / "results")
    import shutil

    shutil.copytree(PROJECT_ROOT / "data" / "specs", paths.specs)
    demo.write_raw(paths.raw)
    t0 = time.perf_counter()
    tables = harmonise(paths)
    t_harm = time.perf_counter() - t0
    t_overall, _ = timed(lambda: overall_estimates(tables["participants"], tables["outcomes"]), repeat=3)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "analysis", "all", "--data-dir", str(paths.data_dir), "--results-dir",
                    str(paths.results_dir)], check=True, capture_output=True, cwd=PROJECT_ROOT)
    t_all = time.perf_counter() - t0
    rows = int(tables["flow"].received.sum())
    return {"harmonise_s": t_harm, "harmonise_rows_per_s": rows / t_harm, "all_overall_fits_s": t_overall,
            "pipeline_all_s": t_all}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="27x3514,100x50000")
    parser.add_argument("--skip-mixedlm-above", type=int, default=60_000)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        k, n = map(int, size.split("x"))
        print(f"benchmarking {k} trials / {n} participants ...", flush=True)
        rows.append(bench_size(k, n, args.skip_mixedlm_above))
    table = pd.DataFrame(rows)
    demo_row = bench_demo_pipeline()
    table.to_csv(HERE / "results.csv", index=False)
    lines = [
        "| trials | participants | one fit (ms) | MixedLM (s) | speed-up | theta rel. diff | mixed logistic fit (s) | peak RSS (GiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.to_dict("records"):
        ml = r.get("mixedlm_s", np.nan)
        lines.append(f"| {r['trials']} | {r['participants']} | {1000 * r['one_fit_s']:.1f} | "
                     + (f"{ml:.2f} | {r['speedup']:.0f}x | {r['theta_rel_diff']:.1e}" if np.isfinite(ml) else "not run | - | -")
                     + f" | {r['logistic_fit_s']:.2f} | {r['peak_rss_gib']:.2f} |")
    demo_lines = [
        f"- harmonisation of the 27 demo trials: {demo_row['harmonise_s']:.2f} s ({demo_row['harmonise_rows_per_s']:.0f} participants/s)",
        f"- all 27 overall analyses of the demo (3 comparisons x 3 outcomes x 3 windows, recovery included): {demo_row['all_overall_fits_s']:.2f} s",
        f"- the whole `python -m analysis all` on the demo (harmonise, overall, modifiers, every sensitivity analysis with 20 imputations): {demo_row['pipeline_all_s']:.1f} s",
    ]
    readme = (HERE / "README.md").read_text() if (HERE / "README.md").exists() else ""
    marker = "<!-- results -->"
    head = readme.split(marker)[0] if marker in readme else readme
    body = f"{marker}\nMachine: {machine()}. Measured {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(lines) + "\n\n" + "\n".join(demo_lines) + "\n"
    (HERE / "README.md").write_text(head + body)
    print(body)


if __name__ == "__main__":
    main()
