"""Keep Quarto's freeze honest. Quarto re-executes a frozen chapter only when the chapter's own
.qmd changes, not when the results, the derived data, the package or an included file change.
The pre-render step calls ``clear_if_changed`` so that any such change re-executes every
chapter, and an unchanged book renders from the freeze in seconds."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

__all__ = ["book_inputs", "inputs_digest", "clear_if_changed", "repair_supporting", "DIGEST_FILE"]

DIGEST_FILE = "book-inputs.sha256"


def book_inputs(root: Path, data_dir: Path | None = None, results_dir: Path | None = None) -> list[Path]:
    """Everything a chapter's execution reads besides its own .qmd: results, derived data, the
    package, the shared set-up include and the project configuration."""
    root = Path(root)
    data_dir = Path(data_dir) if data_dir else root / "data"
    results_dir = Path(results_dir) if results_dir else root / "results"
    files = [p for p in sorted(results_dir.glob("*")) if p.is_file() and p.name != "README.md"]
    files += [p for p in sorted((data_dir / "derived").glob("*.csv"))]
    files += sorted((root / "analysis").rglob("*.py"))
    files += sorted(root.glob("_*.qmd")) + sorted(root.glob("_quarto*.yml"))
    bench = root / "benchmarks" / "results.csv"
    return files + ([bench] if bench.exists() else [])


def inputs_digest(root: Path, **dirs) -> str:
    h = hashlib.sha256()
    for path in book_inputs(root, **dirs):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def clear_if_changed(root: Path, **dirs) -> bool:
    """Delete _freeze when the book's inputs changed since the freeze was made; record the
    digest the next render compares with. Returns True when the freeze was cleared."""
    freeze = Path(root) / "_freeze"
    stamp = freeze / DIGEST_FILE
    digest = inputs_digest(root, **dirs)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return False
    cleared = freeze.exists()
    if cleared:
        shutil.rmtree(freeze)
    freeze.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return cleared


FIGURE_DIRS = {"html": "figure-html", "typ": "figure-typst", "docx": "figure-docx", "tex": "figure-latex"}


def repair_supporting(root: Path) -> int:
    """Make each frozen result claim only its own figures. Quarto 1.10 records a chapter's whole
    ``<chapter>_files`` folder as the result's supporting files when that format was the only
    one executed (a typst-only or submission render); a later full render then deletes the
    whole folder after building the PDF, and the Word file loses every figure. Narrowing the
    claim to the format's own ``figure-*`` folder keeps the other formats' figures.
    Returns the number of frozen results changed."""
    changed = 0
    for result_file in Path(root, "_freeze").glob("**/execute-results/*.json"):
        figures = FIGURE_DIRS.get(result_file.stem)
        if figures is None:
            continue
        doc = json.loads(result_file.read_text())
        supporting = doc.get("result", {}).get("supporting", [])
        fixed = [f"{s}/{figures}" if s.endswith("_files") else s for s in supporting]
        if fixed != supporting:
            doc["result"]["supporting"] = fixed
            result_file.write_text(json.dumps(doc, indent=2))
            changed += 1
    return changed
