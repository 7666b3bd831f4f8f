"""Federated benchmark: `python -m benchmarks.federated [--sizes 27x3514,100x50000]`.

For each size, on data made by the scaled generator (the demo itself at 27 x 3,514), times
the pooled `python -m analysis all` and then `python -m analysis federated --mock` on the same
raw files (vantage6's MockAlgorithmClient, one site per trial, all in one process: on a real
network the sites work in parallel), and reports the likelihood rounds, the bytes each station
sent, and the largest differences from the pooled estimates. Disclosure thresholds are 0, so
that both analyses see the same participants. Writes benchmarks/federated.csv and the
federated section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import demo
from benchmarks.render import timed_run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "<!-- federated -->"
KEYS = ["analysis", "comparison", "outcome", "window", "term"]


def _largest_difference(pooled: Path, federated: Path, recovered: bool) -> float:
    """Largest relative difference of estimate and SE over the overall and modifier rows."""
    worst = 0.0
    for name in ("estimates", "modifiers"):
        a, b = pd.read_csv(pooled / f"{name}.csv"), pd.read_csv(federated / f"{name}.csv")
        m = a.merge(b, on=KEYS, suffixes=("", "_fed"))
        m = m[(m.outcome == "recovered") == recovered]
        for col in ("estimate", "se"):
            x, y = m[col].to_numpy(float), m[f"{col}_fed"].to_numpy(float)
            both = np.isfinite(x) & np.isfinite(y)
            rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), 1e-8)
            worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def run_size(n_trials: int, n_participants: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ipd-fed-bench-"))
    data, pooled, federated = tmp / "data", tmp / "pooled", tmp / "federated"
    py = [sys.executable, "-m", "analysis"]
    demo.write_raw(data / "raw", n_trials=n_trials, n_total=n_participants, spec_dir=data / "specs")
    pooled_s = timed_run(py + ["all", "--data-dir", str(data), "--results-dir", str(pooled)])
    federated_s = timed_run(py + ["federated", "--mock", "--min-cell", "0", "--min-events", "0",
                               "--data-dir", str(data), "--results-dir", str(federated)])
    fed = json.loads((federated / "federation.json").read_text())
    sent = np.array([s["bytes_received"] for s in fed["sites"]], float)
    return {"trials": n_trials, "participants": n_participants, "pooled_all_s": round(pooled_s, 1),
            "federated_mock_s": round(federated_s, 1), "rounds": fed["rounds"],
            "station_kb_median": round(float(np.median(sent)) / 1e3, 1), "station_kb_max": round(sent.max() / 1e3, 1),
            "total_mb": round(sent.sum() / 1e6, 1),
            "continuous_max_rel_diff": _largest_difference(pooled, federated, False),
            "logistic_max_rel_diff": _largest_difference(pooled, federated, True)}


def _markdown(df: pd.DataFrame) -> str:
    head = ("| trials / participants | pooled `all` (s) | `federated --mock` (s) | likelihood rounds | "
            "sent per station, median / max (kB) | sent in all (MB) | largest rel. diff., continuous | "
            "largest rel. diff., mixed logistic |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [f"| {r.trials} / {r.participants:,} | {r.pooled_all_s:.1f} | {r.federated_mock_s:.1f} | {r.rounds} | "
            f"{r.station_kb_median:,.0f} / {r.station_kb_max:,.0f} | {r.total_mb:.1f} | "
            f"{r.continuous_max_rel_diff:.1e} | {r.logistic_max_rel_diff:.1e} |" for r in df.itertuples()]
    return "\n".join([head, *rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="27x3514", help="comma-separated TRIALSxPARTICIPANTS (default 27x3514)")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        k, n = (int(v) for v in size.lower().split("x"))
        rows.append(run_size(k, n))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(HERE / "federated.csv", index=False)
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = (f"{MARK}\nMeasured {time.strftime('%Y-%m-%d')} with `python -m benchmarks.federated --sizes "
             f"{args.sizes}` on the machine below.\n\n{_markdown(df)}\n{MARK.replace('<!-- ', '<!-- /')}")
    start, end = text.find(MARK), text.find(MARK.replace("<!-- ", "<!-- /"))
    if start >= 0 and end >= 0:
        text = text[:start] + block + text[end + len(MARK) + 1:]
        readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
