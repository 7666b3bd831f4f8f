"""The book, without the Quarto CLI: every chapter executes in a real Jupyter kernel from
the project root (Quarto's execute-dir: project), and the project is statically sound."""

import re

import pytest
from nbclient import NotebookClient

from analysis.paths import PROJECT_ROOT
from tests.book.chapters import (
    CELL,
    INLINE,
    book_files,
    expand,
    notebook,
    prose,
    quarto_config,
)

FILES = book_files()
EXECUTABLE = [f for f in FILES if notebook(f).cells]  # the references page has no code


def test_quarto_config_points_at_existing_files():
    cfg = quarto_config()
    assert cfg["project"]["type"] == "book" and cfg["project"]["execute-dir"] == "project"
    assert FILES[0].name == "index.qmd"
    for f in FILES:
        assert f.exists(), f
    for key in ("bibliography", "csl"):
        assert (PROJECT_ROOT / cfg[key]).exists()
    assert (PROJECT_ROOT / cfg["project"]["pre-render"]).exists()
    assert set(cfg["format"]) == {"html", "typst", "docx"} and cfg["format"]["typst"]["citeproc"] is True
    for f in FILES:  # every include resolves
        expand(f)


def _labels_and_refs():
    labels, refs = set(), set()
    for f in FILES:
        text = expand(f)
        labels |= set(re.findall(r"#\|\s*label:\s*((?:fig|tbl)-[\w-]+)", text))
        labels |= set(re.findall(r"\{#(sec-[\w-]+)", text))
        refs |= set(re.findall(r"(?<![\w])@((?:fig|tbl|sec)-[\w-]+)", prose(text)))
    return labels, refs


def test_every_cross_reference_has_a_label():
    labels, refs = _labels_and_refs()
    assert refs, "the text cross-references its figures and tables"
    assert refs <= labels, refs - labels


def test_every_figure_and_table_is_labelled_captioned_and_referenced():
    labels, refs = _labels_and_refs()
    for f in FILES:
        for body in CELL.findall(expand(f)):
            label = re.search(r"#\|\s*label:\s*((fig|tbl)-[\w-]+)", body)
            if label:
                assert re.search(rf"#\|\s*{label.group(2)}-cap:", body), label.group(1)
    assert {lab for lab in labels if lab.startswith(("fig-", "tbl-"))} <= refs


def test_every_citation_is_in_the_bibliography():
    bib = (PROJECT_ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    cited = set()
    for f in FILES:
        cited |= set(re.findall(r"(?<![\w`])@([A-Za-z][\w]*)(?![\w-])", INLINE.sub("", prose(expand(f)))))
    cited -= {"fig", "tbl", "sec", "eq"}
    assert cited and cited <= keys, cited - keys


def test_no_hard_coded_result_numbers_in_prose(demo_results):
    """Headline numbers (from the results) must come from inline code, never typed."""
    from analysis.book.report import Report, fmt

    rep = Report(demo_results.paths)
    headline = set()
    for c in ("none_usual_care", "other_conservative"):
        for o in ("pain", "function"):
            r = rep.overall(c, o, "short")
            headline |= {fmt(r.estimate), fmt(r.ci_low), fmt(r.ci_high)}
    headline |= {str(rep.n_received()), str(rep.n_analysed()), "10.7", "10.2", "14.1", "13.2"}
    for f in FILES:
        text = INLINE.sub("", prose(expand(f))).replace("−", "-")
        for number in headline:
            plain = number.replace("−", "-")
            assert not re.search(rf"(?<![\w.]){re.escape(plain)}(?![\d])", text), (f.name, number)


@pytest.mark.parametrize("path", EXECUTABLE, ids=[f.name for f in EXECUTABLE])
def test_chapter_executes_in_a_jupyter_kernel(path, demo_results, monkeypatch):
    monkeypatch.setenv("IPD_DATA_DIR", str(demo_results.paths.data_dir))
    monkeypatch.setenv("IPD_RESULTS_DIR", str(demo_results.paths.results_dir))
    monkeypatch.setenv("QUARTO_PROJECT_ROOT", str(PROJECT_ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = notebook(path)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}})
    client.execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", (path.name, cell.source, out.get("evalue"))
    inline = [c for c in nb.cells if c.source.startswith("str(")]
    for cell in inline:  # inline values render as text, never as 'nan' or a Python repr of an object
        text = cell.outputs[0]["data"]["text/plain"]
        assert not re.search(r"\bnan\b", text.lower()) and " object at 0x" not in text, (path.name, cell.source, text)
