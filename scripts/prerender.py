"""Quarto pre-render step: derived data and results exist and are current, and the freeze
matches them.

1. `python -m analysis check --results` says whether results are missing or stale against the
   current specs, raw files and analysis code; if so, `python -m analysis all` rebuilds them.
2. Chapters are frozen (each runs once per format and is kept), but Quarto re-runs a frozen
   chapter only when its own .qmd changes: `analysis.book.freeze.clear_if_changed` deletes
   _freeze whenever the results, derived data, package or shared set-up changed, and
   `repair_supporting` keeps one format's frozen result from deleting another format's figures.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    status = subprocess.call([sys.executable, "-m", "analysis", "check", "--results"], cwd=ROOT)
    if status != 0:
        print("pre-render: rebuilding derived data and results with `python -m analysis all`", flush=True)
        status = subprocess.call([sys.executable, "-m", "analysis", "all"], cwd=ROOT)
        if status != 0:
            return status
    sys.path.insert(0, str(ROOT))
    from analysis.book.freeze import clear_if_changed, repair_supporting

    if clear_if_changed(ROOT):
        print("pre-render: results, data or code changed since the last render: every chapter is re-executed",
              flush=True)
    repair_supporting(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
