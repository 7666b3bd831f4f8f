"""The book, without the Quarto CLI: every chapter executes in a real Jupyter kernel from the
project root (Quarto's execute-dir: project, with the inline figure backend Quarto sets up),
and what the cells emit is checked the way a reader would see it: every figure cell gives
exactly one image, every table cell one table, nothing is written to stderr, and every
cross-reference points at a label whose cell produced its figure or table."""

import re

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.paths import PROJECT_ROOT
from tests.book.chapters import (
    CELL,
    INLINE,
    QUARTO_SETUP,
    REFERENCE,
    SECTION,
    book_files,
    cell_label,
    expand,
    notebook,
    prose,
    quarto_config,
)

FILES = book_files()
EXECUTABLE = [f for f in FILES if notebook(f).cells]  # the references page has no code
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


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
    for fmt in ("html", "typst"):
        for key in ("css", "include-in-header"):
            if key in cfg["format"][fmt]:
                assert (PROJECT_ROOT / cfg["format"][fmt][key]).exists()
    for f in FILES:  # every include resolves
        expand(f)


def test_every_figure_and_table_is_labelled_and_captioned():
    for f in FILES:
        for body in CELL.findall(expand(f)):
            label = re.search(r"#\|\s*label:\s*((fig|tbl)-[\w-]+)", body)
            if label:
                assert re.search(rf"#\|\s*{label.group(2)}-cap:", body), label.group(1)


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


# ----------------------------------------------------------------------------- executed chapters


def _execute(data_dir, results_dir) -> dict:
    """Every chapter run once in its own kernel, as Quarto runs it for one format."""
    import os

    env = {"IPD_DATA_DIR": str(data_dir), "IPD_RESULTS_DIR": str(results_dir),
           "QUARTO_PROJECT_ROOT": str(PROJECT_ROOT), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        out = {}
        for path in EXECUTABLE:
            nb = notebook(path)
            nb.cells.insert(0, nbformat.v4.new_code_cell(QUARTO_SETUP))
            NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
            out[path.name] = nb
        return out
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def executed(demo_results):
    return _execute(demo_results.paths.data_dir, demo_results.paths.results_dir)


@pytest.fixture(scope="module")
def executed_federated(federated_run):
    """The chapters from a federated run's results: its results folder is also its data folder
    (the stations' aggregates are in ``<results-dir>/derived``; no master data exist)."""
    results = federated_run.federated.results_dir
    return _execute(results, results)


def _images(cell):
    return [o for o in cell.get("outputs", []) if any(m in o.get("data", {}) for m in IMAGE_TYPES)]


def _tables(cell):
    return [o for o in cell.get("outputs", []) if "<table" in o.get("data", {}).get("text/html", "")]


def _emitted_labels(executed):
    """Labels whose cell produced what its prefix promises: one image (fig-) or table (tbl-)."""
    labels = set()
    for nb in executed.values():
        for cell in nb.cells:
            label = cell_label(cell)
            if label and ((label.startswith("fig-") and len(_images(cell)) == 1)
                          or (label.startswith("tbl-") and len(_tables(cell)) == 1)):
                labels.add(label)
    return labels


@pytest.mark.parametrize("name", [f.name for f in EXECUTABLE])
def test_chapter_cells_emit_what_the_reader_sees(executed, name):
    _check_outputs(executed[name], name)


@pytest.mark.parametrize("name", [f.name for f in EXECUTABLE])
def test_chapters_render_from_federated_results(executed_federated, name):
    _check_outputs(executed_federated[name], name)


def test_federated_run_is_described_where_the_reader_looks(executed_federated):
    def text(nb):
        return "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "")
                       + o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))

    methods, reproducibility = text(executed_federated["methods.qmd"]), text(executed_federated["reproducibility.qmd"])
    assert "run federated on vantage6" in methods and "[@moncada2020]" in methods
    assert "The run is incomplete" in reproducibility and "T98" in reproducibility
    assert "Statistics refused" in reproducibility or "No station refused" in reproducibility


def _check_outputs(nb, name):
    for cell in nb.cells:
        label = cell_label(cell)
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", (name, cell.source[:80], out.get("evalue"))
            assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), (name, out.get("text"))
        if label and label.startswith("fig-"):
            assert len(_images(cell)) == 1, (name, label, [list(o.get("data", {})) for o in cell.outputs])
            assert not _tables(cell), (name, label)
        if label and label.startswith("tbl-"):
            assert len(_tables(cell)) == 1, (name, label)
            assert not _images(cell), (name, label)
    inline = [c for c in nb.cells if c.source.startswith("str(")]
    for cell in inline:  # inline values render as text, never as 'nan' or a Python repr of an object
        text = cell.outputs[0]["data"]["text/plain"]
        assert not re.search(r"\bnan\b", text.lower()) and " object at 0x" not in text, (name, cell.source, text)


def test_every_cross_reference_resolves_to_an_emitted_label(executed):
    emitted = _emitted_labels(executed)
    sections = {s for f in FILES for s in SECTION.findall(expand(f))}
    for f in FILES:
        for ref in REFERENCE.findall(prose(expand(f))):
            target = sections if ref.startswith("sec-") else emitted
            assert ref in target, (f.name, ref)
    figures_and_tables = {lab for f in FILES for body in CELL.findall(expand(f))
                          for lab in re.findall(r"#\|\s*label:\s*((?:fig|tbl)-[\w-]+)", body)}
    referenced = {r for f in FILES for r in REFERENCE.findall(prose(expand(f)))}
    assert figures_and_tables <= emitted, figures_and_tables - emitted
    assert figures_and_tables <= referenced, figures_and_tables - referenced  # the text cites each one


def test_the_output_checks_can_fail(executed):
    """A figure cell that emits nothing (what matplotlib.use('Agg') did) is caught."""
    blank = nbformat.v4.new_code_cell("#| label: fig-blank\nx = 1")
    blank.outputs = []
    assert len(_images(blank)) == 0
    assert "fig-blank" not in _emitted_labels({"x": nbformat.v4.new_notebook(cells=[blank])})


def test_abstract_is_structured_and_at_most_250_words(executed):
    """The abstract as printed (inline values filled in), up to the note about the report."""
    index = next(f for f in FILES if f.name == "index.qmd")
    text = prose(expand(index)).split("::::")[0]
    values = iter(c.outputs[0]["data"]["text/plain"].strip("'\"") for c in executed["index.qmd"].cells
                  if c.source.startswith("str("))
    text = INLINE.sub(lambda _: next(values), text)
    text = re.sub(r"^#.*$", "", text, flags=re.M)  # the heading
    text = re.sub(r"\[@[^\]]+\]|\*\*", "", text)  # citations and bold markers
    for heading in ("Objective.", "Design.", "Methods.", "Results.", "Conclusions."):
        assert heading in text, heading
    words = len(text.split())
    assert 100 <= words <= 250, words
