"""Run the federated analysis on vantage6's MockAlgorithmClient: one organisation per trial,
each seeing only a folder with its own spec and raw files; and write the central result as
the results tables (CONTRACT.md), with the sites' aggregates for the book in
``<results-dir>/derived/``."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import yaml
from vantage6.algorithm.tools.mock_client import MockAlgorithmClient

from analysis.errors import InputError
from analysis.federated.disclosure import SiteSettings
from analysis.io import write_csv, write_text
from analysis.paths import Paths
from analysis.provenance import provenance_record

__all__ = ["source_files", "station_folders", "run_mock", "write_result"]

def source_files(spec_path: Path) -> list[str]:
    """The raw files a spec names, read leniently: a spec that does not validate still goes
    to its site, which reports the problem itself."""
    try:
        raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(raw, dict):
        return []
    sources = raw.get("sources") or ([raw["source"]] if isinstance(raw.get("source"), dict) else [])
    return [s["file"] for s in sources if isinstance(s, dict) and isinstance(s.get("file"), str)]


def station_folders(paths: Paths, workdir: Path) -> list[tuple[str, Path]]:
    """One folder per trial (``specs/<trial>.yaml`` and its raw files in ``raw/``): what
    that trial's site would hold."""
    specs = sorted(p for p in paths.specs.glob("*.yaml") if not p.name.startswith("_"))
    if not specs:
        raise InputError("no trial specs found", file=paths.specs, expected="one <trial_id>.yaml per trial")
    out = []
    for spec in specs:
        folder = workdir / spec.stem
        (folder / "specs").mkdir(parents=True)
        (folder / "raw").mkdir()
        shutil.copy2(spec, folder / "specs" / spec.name)
        for name in source_files(spec):
            if (paths.raw / name).is_file():
                shutil.copy2(paths.raw / name, folder / "raw" / name)
        out.append((spec.stem, folder))
    return out


def run_mock(paths: Paths, settings: SiteSettings | dict | None = None, max_rounds: int = 500) -> dict:
    """The central function's result for the project's trials, one mock site per trial.
    ``settings`` are the stations' disclosure settings: one for all, or {station: settings}
    (a station not named keeps the defaults), as each node's administrator sets them."""
    by_station = settings if isinstance(settings, dict) else {}
    default = settings if isinstance(settings, SiteSettings) else SiteSettings()
    with tempfile.TemporaryDirectory(prefix="ipd-federated-") as tmp:
        stations = station_folders(paths, Path(tmp))
        datasets = []
        for name, folder in stations:
            own = by_station.get(name, default)
            row = {"name": name, "folder": str(folder), "min_cell": own.min_cell, "min_events": own.min_events}
            datasets.append([{"database": pd.DataFrame([row])}])
        client = MockAlgorithmClient(datasets=datasets, module="analysis.federated")
        organizations = [o["id"] for o in client.organization.list()]
        task = client.task.create(input_={"method": "central", "kwargs": {
            "organizations": organizations, "run": uuid.uuid4().hex, "max_rounds": max_rounds}},
            organizations=[organizations[0]], name="ipd-central", description="IPD meta-analysis")
        return client.result.from_task(task["id"])[0]


def write_result(result: dict, results_dir: Path, data_paths: Paths | None = None) -> list[Path]:
    """Write the central result: results tables, the sites' aggregates in ``derived/``,
    ``federation.json`` (sites, failures, rounds, bytes) and ``provenance.json``."""
    results_dir = Path(results_dir)
    written = []
    for name, table in result["tables"].items():
        df = pd.DataFrame(table["data"], columns=table["columns"])
        written.append(write_csv(df, results_dir / f"{name}.csv"))
    federation = result["federation"]
    written.append(write_text(json.dumps(federation, indent=2, sort_keys=True) + "\n",
                              Paths(results_dir=results_dir).federation_file))
    record = provenance_record(data_paths) if data_paths is not None else {}
    record = {k: v for k, v in record.items() if k in ("python", "packages", "git_commit", "demo_truth")}
    record.update(mode="federated", sites={s["site"]: s.get("digest") for s in federation["sites"]})
    record.setdefault("packages", {})["vantage6-algorithm-tools"] = version("vantage6-algorithm-tools")
    written.append(write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", results_dir / "provenance.json"))
    return written
