"""The rendered book, with the real Quarto CLI (skipped where `quarto` is not on PATH, as in
CI): a render exits 0 with no warning, every labelled figure is an image in HTML, PDF and Word,
every labelled table is a table in each, and no PDF page has words printed over other words.

The book is rendered once, in a copy of the project holding the demo's data and results, so
the test never touches the working tree's _book, _freeze or results."""

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from benchmarks.render import copy_checkout
from tests.book.chapters import CELL, book_files, expand
from tests.book.pdf import overprinted, page_count

QUARTO = shutil.which("quarto")
pytestmark = pytest.mark.skipif(QUARTO is None, reason="the Quarto CLI is not on PATH")
LABELS = sorted({lab for f in book_files() for body in CELL.findall(expand(f))
                 for lab in re.findall(r"#\|\s*label:\s*((?:fig|tbl)-[\w-]+)", body)})
FIGURES = [lab for lab in LABELS if lab.startswith("fig-")]
TABLES = [lab for lab in LABELS if lab.startswith("tbl-")]


@pytest.fixture(scope="module")
def rendered(demo_results, tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    copy_checkout(root)  # the files a fresh clone would have
    for sub in ("raw", "derived"):
        shutil.copytree(demo_results.paths.data_dir / sub, root / "data" / sub, dirs_exist_ok=True)
    shutil.copytree(demo_results.paths.results_dir, root / "results", dirs_exist_ok=True)
    out = subprocess.run([QUARTO, "render", "-M", "keep-typ:true"], cwd=root, capture_output=True, text=True,
                         timeout=1200)
    return root, out


def _warnings(log: str) -> list[str]:
    """Lines of a Quarto log that warn: "warning" anywhere, or "(W)", which opens the warnings
    of Quarto's own filters (e.g. "(W) invalid font weight initial")."""
    return [line for line in log.splitlines() if re.search(r"warn|^\(W\)", line, re.I)]


def test_render_exits_cleanly_without_warnings(rendered):
    root, out = rendered
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert not _warnings(log), log[-4000:]
    assert "rebuilding" not in log  # the demo's results were current: the pre-render step kept them


def _check_html(root):
    pages = {p: p.read_text() for p in (root / "_book").rglob("*.html")}
    for label in LABELS:
        page, html = next(((p, h) for p, h in pages.items() if f'id="{label}"' in h), (None, ""))
        assert page is not None, label
        block = html[html.index(f'id="{label}"'):]
        block = block[:block.index("</figure>") if "</figure>" in block else 20000]
        if label.startswith("fig-"):
            src = re.search(r'<img src="([^"]+)"', block)
            assert src and (page.parent / src.group(1)).exists(), label
        else:
            assert "<table" in block, label


def test_every_figure_and_table_is_in_the_html(rendered):
    _check_html(rendered[0])


def test_every_figure_and_table_is_in_the_pdf(rendered):
    """Typst source: each label sits on a figure holding an image (vector SVG) or a table;
    the PDF itself: each is numbered and captioned."""
    root, _ = rendered
    typ = (root / "index.typ").read_text()
    for label in LABELS:
        at = re.search(rf"^<{label}>$", typ, re.M).start()  # the label itself, not a #ref to it
        start = typ.rfind("#figure(", 0, at)
        body = typ[start:at]
        assert ("image(" in body) if label.startswith("fig-") else ("table(" in body), label
    pdf = next((root / "_book").glob("*.pdf"))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert len(re.findall(r"Figure \d+\.\d+:", text)) >= len(FIGURES)
    assert len(re.findall(r"Table [A-Z0-9]+\.\d+:", text)) >= len(TABLES)


def test_every_figure_and_table_is_in_the_docx(rendered):
    root, _ = rendered
    docx = next((root / "_book").glob("*.docx"))
    with zipfile.ZipFile(docx) as z:
        xml = z.read("word/document.xml").decode()
        media = [n for n in z.namelist() if n.startswith("word/media/")]
    assert len(media) >= len(FIGURES)
    for label in LABELS:
        at = xml.index(f'w:name="{label}"')
        after = xml[at:at + 200000]
        if label.startswith("fig-"):
            assert "<w:drawing>" in after[:after.find("</w:p>", after.find("<w:drawing>")) + 10], label
        else:
            assert "<w:tbl>" in after, label


def test_no_pdf_page_is_overprinted(rendered):
    root, _ = rendered
    pdf = next((root / "_book").glob("*.pdf"))
    pairs = overprinted(pdf)
    assert not pairs, [(a.page, a.text, b.text) for a, b in pairs[:20]]
    assert page_count(pdf) < 60


def test_the_overprint_check_sees_overprinting(tmp_path):
    """Two words set at the same place are found; the same words side by side are not."""
    typst = Path(QUARTO).parent / "tools" / "typst"
    typst = str(typst) if typst.exists() else "typst"
    doc = tmp_path / "over.typ"
    doc.write_text("#place(dx: 10pt, dy: 10pt)[Received]\n#place(dx: 14pt, dy: 10pt)[Analysed]\n"
                   "#place(dx: 10pt, dy: 60pt)[Received Analysed]\n")
    try:
        subprocess.run([QUARTO, "typst", "compile", str(doc)], check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError:
        subprocess.run([typst, "compile", str(doc)], check=True, capture_output=True, timeout=120)
    pairs = overprinted(doc.with_suffix(".pdf"))
    assert len(pairs) == 1 and {pairs[0][0].text, pairs[0][1].text} == {"Received", "Analysed"}


@pytest.fixture(scope="module")
def submitted(rendered):
    root, _ = rendered
    out = subprocess.run([QUARTO, "render", "--profile", "submission"], cwd=root, capture_output=True, text=True,
                         timeout=1200)
    return root, out


def test_submission_manuscript(submitted):
    """One PDF: a title page, the abstract, the five main chapters with their tables and figures,
    Vancouver references, line numbers; no appendix and no warning."""
    root, out = submitted
    log = out.stdout + out.stderr
    assert out.returncode == 0 and not _warnings(log), log[-3000:]
    pdfs = list((root / "_submission").glob("*.pdf"))
    assert len(pdfs) == 1 and not list((root / "_submission").glob("*.docx"))
    pdf = pdfs[0]
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Exercise treatment effect modifiers" in first and "Abstract" not in first  # a title page
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
    for heading in ("Abstract", "Methods", "Trials and participants", "Overall effects of exercise",
                    "Who benefits most", "Sensitivity analyses", "References"):
        assert heading in text, heading
    assert "Harmonisation log" not in text and "Reproducibility" not in text
    numbered = [x for x in text.splitlines() if re.match(r"^\s{0,6}\d{1,2}\s{2,}\S", x)]
    assert len(numbered) > 150  # line numbers in the margin
    assert re.search(r"\b1\. Hayden JA", text)  # Vancouver: numbered, authors surname first
    for kind in ("Figure", "Table"):  # numbered through the manuscript, not per chapter
        numbers = [int(n) for n in re.findall(rf"{kind} (\d+):", text)]
        assert numbers == list(range(1, len(numbers) + 1)), (kind, numbers)
    assert len(re.findall(r"Figure \d+:", text)) >= 8 and len(re.findall(r"Table \d+:", text)) >= 8
    assert not overprinted(pdf)


@pytest.fixture(scope="module")
def rerendered(submitted):
    """The report rendered again after the submission: every chapter comes from the freeze,
    the PDF's frozen results among them made by the manuscript render."""
    root, _ = submitted
    out = subprocess.run([QUARTO, "render"], cwd=root, capture_output=True, text=True, timeout=1200)
    return root, out


def test_a_frozen_rerender_keeps_every_figure_in_every_format(rerendered):
    root, out = rerendered
    log = out.stdout + out.stderr
    assert out.returncode == 0 and not _warnings(log), log[-3000:]
    assert "Executing" not in log  # nothing re-executed: the freeze was used
    _check_html(root)
    with zipfile.ZipFile(next((root / "_book").glob("*.docx"))) as z:
        assert len([n for n in z.namelist() if n.startswith("word/media/")]) >= len(FIGURES)
    pdf_text = subprocess.run(["pdftotext", str(next((root / "_book").glob("*.pdf"))), "-"], capture_output=True,
                              text=True, check=True).stdout
    assert len(re.findall(r"Figure \d+\.\d+:", pdf_text)) >= len(FIGURES)
