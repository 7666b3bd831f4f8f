"""Render benchmark: `python -m benchmarks.render` (needs the Quarto CLI on PATH).

In a fresh copy of the project (the files a clone has), times:

- `python -m analysis all` from an empty data folder (the demo);
- the first `quarto render` of all three formats (results current, nothing frozen);
- a repeated `quarto render` with nothing changed (chapters come from the freeze);
- a render after the results changed (the pre-render step clears the freeze);
- `quarto render --profile submission` (the manuscript PDF; the Typst freeze is reused).

Quarto keeps a Jupyter kernel alive between the formats of a chapter when it runs in a
terminal; from scripts it does not. Both are measured (`--execute-daemon` / `--no-execute-daemon`).
Writes benchmarks/render.csv and the render section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "<!-- render -->"


def copy_checkout(target: Path):
    """The files a fresh clone would have (tracked, or new and not ignored), copied to target."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def timed_run(cmd, cwd=ROOT) -> float:
    """Seconds a command takes; a failure stops the benchmark with its output."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def run(daemon: bool) -> dict:
    quarto = shutil.which("quarto")
    if quarto is None:
        raise SystemExit("the Quarto CLI is not on PATH")
    flag = "--execute-daemon" if daemon else "--no-execute-daemon"
    tmp = Path(tempfile.mkdtemp())
    try:
        copy_checkout(tmp)
        row = {"kernel_daemon": daemon}
        row["analysis_all_s"] = timed_run([sys.executable, "-m", "analysis", "all"], tmp)
        row["first_render_s"] = timed_run([quarto, "render", flag], tmp)
        row["repeat_render_s"] = timed_run([quarto, "render", flag], tmp)
        changed = tmp / "results" / "heterogeneity.csv"  # a results file changes: every chapter re-runs
        changed.write_text(changed.read_text() + "\n")
        row["after_results_change_s"] = timed_run([quarto, "render", flag], tmp)
        row["submission_render_s"] = timed_run([quarto, "render", "--profile", "submission", flag], tmp)
        row["from_empty_total_s"] = row["analysis_all_s"] + row["first_render_s"]
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_readme(table: pd.DataFrame):
    lines = ["| Quarto kernel daemon | `analysis all` from empty (s) | first render, 3 formats (s) "
             "| repeated render (s) | render after results changed (s) | submission PDF (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {'on (terminal)' if r.kernel_daemon else 'off (scripts, CI)'} | {r.analysis_all_s:.1f} | "
                     f"{r.first_render_s:.1f} | {r.repeat_render_s:.1f} | {r.after_results_change_s:.1f} | "
                     f"{r.submission_render_s:.1f} |")
    body = (f"{MARK}\nMeasured {time.strftime('%Y-%m-%d')} with `python -m benchmarks.render` on the machine above "
            f"(Quarto {subprocess.run(['quarto', '--version'], capture_output=True, text=True).stdout.strip()}).\n\n"
            + "\n".join(lines) + "\n")
    readme = (HERE / "README.md").read_text()
    head, _, rest = readme.partition(MARK)
    tail = rest.split("<!-- /render -->", 1)[1] if "<!-- /render -->" in rest else ""
    (HERE / "README.md").write_text(head + body + "<!-- /render -->" + tail)
    return body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", choices=["both", "on", "off"], default="both")
    args = parser.parse_args(argv)
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.daemon]
    table = pd.DataFrame([run(d) for d in modes])
    table.to_csv(HERE / "render.csv", index=False)
    print(write_readme(table))


if __name__ == "__main__":
    main()
