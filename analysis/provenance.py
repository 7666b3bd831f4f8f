"""Provenance of the results: input checksums, package versions, seed and git commit, so a
reviewer can tell whether results are stale and what produced them."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from analysis.io import write_text
from analysis.paths import PROJECT_ROOT, Paths

__all__ = [
    "demo_seed",
    "demo_truth",
    "input_checksums",
    "inputs_digest",
    "provenance_record",
    "write_provenance",
    "read_provenance",
    "is_stale",
    "PACKAGES",
]

PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "pandera", "pydantic", "pyreadstat", "openpyxl",
            "matplotlib", "great-tables")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_checksums(paths: Paths) -> dict:
    """SHA-256 of every spec, raw file and analysis source file, by relative path."""
    files = sorted(paths.specs.glob("*.yaml")) + sorted(
        p for p in paths.raw.glob("*") if p.is_file() and p.name != "README.md"
    )
    out = {f"{p.parent.name}/{p.name}": _sha256(p) for p in files}
    for p in sorted((PROJECT_ROOT / "analysis").rglob("*.py")):
        out[p.relative_to(PROJECT_ROOT).as_posix()] = _sha256(p)
    return out


def inputs_digest(checksums: dict) -> str:
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "analysis", "data/specs"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5)
        return (
            out.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def demo_truth(paths: Paths) -> list | None:
    """The truth the synthetic generator built into the raw files (None for real data)."""
    path = paths.raw / "DEMO_TRUTH.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance_record(paths: Paths, seed=None) -> dict:
    checks = input_checksums(paths)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"inputs_sha256": inputs_digest(checks), "inputs": checks, "python": platform.python_version(),
            "packages": versions, "demo_seed": seed, "demo_truth": demo_truth(paths), "git_commit": _git_commit()}


def demo_seed(paths: Paths, seed=None):
    """``seed``, or when None the seed the synthetic generator wrote beside the raw files
    (None for real data)."""
    seed_file = paths.raw / "DEMO_SEED"
    if seed is None and seed_file.exists():
        seed = int(seed_file.read_text().strip())
    return seed


def write_provenance(paths: Paths, seed=None, record: dict | None = None) -> Path:
    """provenance.json: ``record``, or when None ``provenance_record`` of ``paths`` now."""
    record = provenance_record(paths, demo_seed(paths, seed)) if record is None else record
    return write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", paths.results_dir / "provenance.json")


def read_provenance(paths: Paths) -> dict | None:
    path = paths.results_dir / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_stale(paths: Paths) -> bool:
    """True when results are missing or were made from other inputs than the current ones."""
    record = read_provenance(paths)
    if record is None or not paths.result_file("estimates").exists():
        return True
    if record.get("mode") == "federated":
        return False  # the inputs are at the stations: nothing here to compare, nothing here to rebuild from
    return record.get("inputs_sha256") != inputs_digest(input_checksums(paths))
