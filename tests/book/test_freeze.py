"""analysis.book.freeze: the freeze is cleared exactly when something a chapter reads changed."""

import shutil

from analysis.book.freeze import DIGEST_FILE, clear_if_changed, inputs_digest
from analysis.paths import PROJECT_ROOT


def _project(tmp_path):
    root = tmp_path / "book"
    shutil.copytree(PROJECT_ROOT / "analysis", root / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "results").mkdir()
    (root / "data" / "derived").mkdir(parents=True)
    (root / "results" / "estimates.csv").write_text("a,b\n1,2\n")
    (root / "data" / "derived" / "participants.csv").write_text("x\n1\n")
    (root / "_common.qmd").write_text("setup\n")
    (root / "_quarto.yml").write_text("project: {}\n")
    return root


def test_freeze_kept_while_inputs_unchanged_and_cleared_when_they_change(tmp_path):
    root = _project(tmp_path)
    freeze = root / "_freeze"
    clear_if_changed(root)
    (freeze / "chapters").mkdir(parents=True)
    (freeze / "chapters" / "frozen.json").write_text("{}")
    assert not clear_if_changed(root)  # nothing changed: the frozen chapter is kept
    assert (freeze / "chapters" / "frozen.json").exists()
    for changed in ("results/estimates.csv", "data/derived/participants.csv", "_common.qmd",
                    "analysis/book/report.py", "_quarto.yml"):
        before = inputs_digest(root)
        path = root / changed
        path.write_text(path.read_text() + "\n# changed\n")
        assert inputs_digest(root) != before, changed
        (freeze / "chapters").mkdir(parents=True, exist_ok=True)
        (freeze / "chapters" / "frozen.json").write_text("{}")
        assert clear_if_changed(root), changed
        assert not (freeze / "chapters").exists(), changed
        assert (freeze / DIGEST_FILE).read_text().strip() == inputs_digest(root)


def test_a_new_results_file_counts_as_a_change(tmp_path):
    root = _project(tmp_path)
    assert not clear_if_changed(root)  # first render: there was no freeze to clear
    assert not clear_if_changed(root)
    (root / "results" / "heterogeneity.csv").write_text("k\n3\n")
    assert clear_if_changed(root)


def test_a_frozen_result_claims_only_its_own_figures(tmp_path):
    """The Quarto quirk behind a Word file without figures: a typst result frozen alone claims
    the chapter's whole files folder; after repair it claims its figure-typst folder only."""
    import json

    from analysis.book.freeze import repair_supporting

    results = tmp_path / "_freeze" / "chapters" / "descriptives" / "execute-results"
    results.mkdir(parents=True)
    (results / "typ.json").write_text(json.dumps({"hash": "h", "result": {"supporting": ["descriptives_files"]}}))
    (results / "docx.json").write_text(json.dumps({"hash": "h", "result": {
        "supporting": ["descriptives_files/figure-docx"]}}))
    assert repair_supporting(tmp_path) == 1
    assert json.loads((results / "typ.json").read_text())["result"]["supporting"] == [
        "descriptives_files/figure-typst"]
    assert json.loads((results / "docx.json").read_text())["result"]["supporting"] == [
        "descriptives_files/figure-docx"]
    assert repair_supporting(tmp_path) == 0  # idempotent
