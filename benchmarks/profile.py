"""Where `fit` spends its time, by layer: `python -m benchmarks.profile --data-dir DIR`.

Runs `fit_all` (serially, one process) under cProfile on harmonised data and splits its time
into the estimators (`analysis/models`: every call into that layer from outside it, with all
it calls) and the rest (sample building with pandas, bookkeeping, result tables, I/O). Prints
the shares and the ten most expensive functions outside the estimators.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from analysis.analyses.fit import fit_all
from analysis.paths import Paths

MODELS = "/analysis/models/"


def layer_shares(stats: pstats.Stats) -> dict:
    """Seconds inside the estimators: the cumulative time of every call edge that enters
    analysis/models from outside it (recursion inside the layer is not counted twice)."""
    inside = 0.0
    for func, (_, _, _, _, callers) in stats.stats.items():
        if MODELS not in func[0]:
            continue
        for caller, (_, _, _, cumulative) in callers.items():
            if MODELS not in caller[0]:
                inside += cumulative
    return {"models_s": inside}


def profile_fit(paths: Paths, imputations: int = 20) -> dict:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    fit_all(paths, imputations=imputations, jobs=1)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    shares = layer_shares(stats)
    shares.update(total_s=total, wall_s=wall, models_share=shares["models_s"] / total)
    outside = sorted(((tt, f) for f, (_, _, tt, _, _) in stats.stats.items() if MODELS not in f[0]), reverse=True)
    shares["top_outside"] = [(f"{Path(f[0]).name}:{f[2]}", round(tt, 2)) for tt, f in outside[:10]]
    return shares


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Paths().data_dir, help="harmonised data (default data/)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = profile_fit(Paths(args.data_dir, Path(tmp)))
    print(f"fit under cProfile: {out['total_s']:.1f} s; inside the estimators (analysis/models): "
          f"{out['models_s']:.1f} s ({100 * out['models_share']:.0f} %)")
    for name, seconds in out["top_outside"]:
        print(f"  {seconds:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
