"""Reading a rendered PDF the way a production editor looks at it: words and their boxes
(poppler's pdftotext -bbox), pages, and words printed over other words."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


@dataclass(frozen=True)
class Word:
    page: int
    x0: float
    y0: float
    x1: float
    y1: float
    text: str

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0) * max(self.y1 - self.y0, 0)


def words(pdf: Path) -> list[Word]:
    """Every word of the PDF with its bounding box (points), page by page."""
    xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    out = []
    for page, body in enumerate(xml.split("<page ")[1:], start=1):
        for m in WORD.finditer(body):
            out.append(Word(page, *map(float, m.groups()[:4]), m.group(5)))
    return out


def overprinted(pdf: Path, min_dx: float = 1.0, min_dy: float = 0.5) -> list[tuple[Word, Word]]:
    """Pairs of words on one page whose boxes overlap by more than ``min_dx`` points across
    and ``min_dy`` of the lower box's height down: text printed over text (a table drawn over
    itself, a header wider than its column). Neighbouring words of a line never overlap
    (poppler's boxes end at the advance width), and lines of a paragraph overlap by less than
    half a line, so neither is reported."""
    pairs = []
    by_page: dict[int, list[Word]] = {}
    for w in words(pdf):
        if w.text.strip() and w.area > 0:
            by_page.setdefault(w.page, []).append(w)
    for page_words in by_page.values():
        page_words.sort(key=lambda w: w.y0)
        for i, a in enumerate(page_words):
            for b in page_words[i + 1:]:
                if b.y0 >= a.y1:
                    break
                dx = min(a.x1, b.x1) - max(a.x0, b.x0)
                dy = min(a.y1, b.y1) - max(a.y0, b.y0)
                if dx > min_dx and dy > min_dy * min(a.y1 - a.y0, b.y1 - b.y0):
                    pairs.append((a, b))
    return pairs


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))


def page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
