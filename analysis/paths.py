"""Project paths, anchored at the project root (never at the caller's working directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROJECT_ROOT", "Paths"]

PROJECT_ROOT = Path(os.environ.get("QUARTO_PROJECT_ROOT") or Path(__file__).resolve().parents[1])


def _default(env: str, folder: str) -> Path:
    """A folder of the project, unless IPD_DATA_DIR / IPD_RESULTS_DIR point elsewhere
    (the book and the tests use these to read another data set)."""
    return Path(os.environ[env]) if os.environ.get(env) else PROJECT_ROOT / folder


@dataclass(frozen=True)
class Paths:
    data_dir: Path = field(default_factory=lambda: _default("IPD_DATA_DIR", "data"))
    results_dir: Path = field(default_factory=lambda: _default("IPD_RESULTS_DIR", "results"))

    @property
    def specs(self) -> Path:
        return self.data_dir / "specs"

    @property
    def raw(self) -> Path:
        return self.data_dir / "raw"

    @property
    def derived(self) -> Path:
        return self.data_dir / "derived"

    def derived_file(self, name: str) -> Path:
        return self.derived / f"{name}.csv"

    def result_file(self, name: str) -> Path:
        return self.results_dir / f"{name}.csv"

    @property
    def federation_file(self) -> Path:
        """What a federated run records about its sites (absent after a pooled run)."""
        return self.results_dir / "federation.json"
