"""Read the Quarto book the way Quarto does, without Quarto: chapters from _quarto.yml,
includes expanded, Python cells and inline expressions in document order."""

import re
from pathlib import Path

import nbformat
import yaml

from analysis.paths import PROJECT_ROOT

CELL = re.compile(r"^```\{python\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)
INLINE = re.compile(r"`\{python\}\s+(.+?)`")
INCLUDE = re.compile(r"\{\{<\s*include\s+(\S+)\s*>\}\}")


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def quarto_config(profile: str = "book") -> dict:
    """_quarto.yml merged with a profile's file, as Quarto merges them."""
    base = yaml.safe_load((PROJECT_ROOT / "_quarto.yml").read_text())
    return _merge(base, yaml.safe_load((PROJECT_ROOT / f"_quarto-{profile}.yml").read_text()))


def book_files(profile: str = "book") -> list[Path]:
    book = quarto_config(profile)["book"]
    return [PROJECT_ROOT / f for f in book["chapters"] + book.get("appendices", [])]


def expand(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return INCLUDE.sub(lambda m: expand((path.parent / m.group(1)).resolve()), text)


def prose(text: str) -> str:
    """The document without its code cells (inline expressions kept)."""
    return CELL.sub("", text)


LABEL = re.compile(r"^#\|\s*label:\s*([\w-]+)", re.M)
SECTION = re.compile(r"\{#(sec-[\w-]+)")
REFERENCE = re.compile(r"(?<![\w])@((?:fig|tbl|sec)-[\w-]+)")
# what Quarto's Jupyter engine does before a chapter's own cells: the inline backend, whose
# figure formatter turns a returned Figure into an image output (figures.py selects no backend)
QUARTO_SETUP = ("import matplotlib_inline.backend_inline as _inline\n"
                "_inline.set_matplotlib_formats('png')")


def cell_label(cell) -> str | None:
    m = LABEL.search(cell.source)
    return m.group(1) if m else None


def notebook(path: Path) -> nbformat.NotebookNode:
    """Cells and inline expressions in order, as Quarto's Jupyter engine would run them."""
    text = expand(path)
    cells, pos = [], 0
    for m in CELL.finditer(text):
        for expr in INLINE.findall(text[pos:m.start()]):
            cells.append(nbformat.v4.new_code_cell(f"str({expr})"))
        cells.append(nbformat.v4.new_code_cell(m.group(1)))
        pos = m.end()
    for expr in INLINE.findall(text[pos:]):
        cells.append(nbformat.v4.new_code_cell(f"str({expr})"))
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}})
