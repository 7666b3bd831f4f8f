"""Quarto pre-render step: make sure derived data and results exist and are current.

Chapters are not frozen; they only read results/ and data/derived/, so the expensive work
(harmonising and fitting) happens here once per render, not once per chapter and format.
`python -m analysis check --results` says whether results are missing or stale against the
current inputs (specs, raw files, analysis code); if so, `python -m analysis all` rebuilds.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    status = subprocess.call([sys.executable, "-m", "analysis", "check", "--results"], cwd=ROOT)
    if status == 0:
        return 0
    print("pre-render: rebuilding derived data and results with `python -m analysis all`", flush=True)
    return subprocess.call([sys.executable, "-m", "analysis", "all"], cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
