"""Project paths, anchored at the project root (never at the caller's working directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROJECT_ROOT", "Paths"]

PROJECT_ROOT = Path(os.environ.get("QUARTO_PROJECT_ROOT") or Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class Paths:
    data_dir: Path = PROJECT_ROOT / "data"
    results_dir: Path = PROJECT_ROOT / "results"

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
