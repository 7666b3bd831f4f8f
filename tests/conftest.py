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


# the federated run: trials of both comparisons, small ones (T03, T08, T20) and a three-arm
# trial (T27), about a third of the demo (the mock runs every site in one process)
FEDERATED_TRIALS = ("T03", "T05", "T08", "T12", "T16", "T20", "T23", "T26", "T27")
BROKEN_SITE = "T98"


@dataclass
class FederatedRun:
    pooled: Paths  # the same trials analysed pooled
    federated: Paths  # the same trials plus a site whose spec is wrong
    returncode: int
    stdout: str
    stderr: str


def _copy_trials(source: Paths, target: Paths, trials) -> None:
    from analysis.federated.mock import source_files

    target.specs.mkdir(parents=True)
    target.raw.mkdir(parents=True)
    for trial in trials:
        spec = source.specs / f"{trial}.yaml"
        shutil.copy2(spec, target.specs)
        for name in source_files(spec):
            shutil.copy2(source.raw / name, target.raw / name)


@pytest.fixture(scope="session")
def federated_run(demo_run, tmp_path_factory) -> FederatedRun:
    """The pooled analysis and ``python -m analysis federated --mock`` (disclosure thresholds
    0, so that both see the same participants) on the same trials; the federation has one
    more site, whose spec names an arm column its file lacks, which must fail alone."""
    import subprocess
    import sys

    import yaml

    from analysis.analyses.fit import fit_all
    from analysis.pipeline import harmonise

    root = tmp_path_factory.mktemp("federated")
    pooled = Paths(root / "pooled" / "data", root / "pooled" / "results")
    federated = Paths(root / "federated" / "data", root / "federated" / "results")
    _copy_trials(demo_run.paths, pooled, FEDERATED_TRIALS)
    _copy_trials(demo_run.paths, federated, FEDERATED_TRIALS)
    broken = yaml.safe_load((federated.specs / "T05.yaml").read_text())
    broken["trial_id"] = BROKEN_SITE
    broken["arm"]["column"] = "ARM_GROUP"
    (federated.specs / f"{BROKEN_SITE}.yaml").write_text(yaml.safe_dump(broken))
    harmonise(pooled)
    fit_all(pooled, imputations=2)
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "federated", "--mock", "--data-dir", str(federated.data_dir),
         "--results-dir", str(federated.results_dir), "--min-cell", "0", "--min-events", "0"],
        capture_output=True, text=True, cwd=PROJECT_ROOT)
    return FederatedRun(pooled, federated, proc.returncode, proc.stdout, proc.stderr)
