"""Shared fixtures: one synthetic data set harmonised once per test session."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis import demo
from analysis.paths import PROJECT_ROOT, Paths

SPECS = PROJECT_ROOT / "data" / "specs"


@dataclass
class DemoRun:
    paths: Paths
    latent: demo.DemoData
    tables: dict


def make_data_dir(tmp: Path, seed: int = 2020) -> Paths:
    paths = Paths(tmp / "data", tmp / "results")
    shutil.copytree(SPECS, paths.specs)
    demo.write_raw(paths.raw, seed=seed)
    return paths


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    from analysis.pipeline import harmonise

    paths = make_data_dir(tmp_path_factory.mktemp("demo"))
    tables = harmonise(paths)
    return DemoRun(paths, demo.simulate(2020), tables)


@pytest.fixture(scope="session")
def demo_results(demo_run) -> DemoRun:
    """The demo run with every result fitted (5 imputations instead of 20, for speed)."""
    from analysis.analyses.fit import fit_all

    fit_all(demo_run.paths, imputations=5)
    return demo_run
