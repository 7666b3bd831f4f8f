"""Reproducibility and privacy of the whole pipeline: atomic writes, stale results,
byte-identical rebuilds and no participant data in any output."""

import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from analysis.paths import PROJECT_ROOT, Paths

# ----------------------------------------------------------------------------- atomic writes


def test_interrupted_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "estimates.csv"
    target.write_text("old,complete,file\n")
    code = ("import numpy as np, pandas as pd; from analysis.io import write_csv; "
            f"write_csv(pd.DataFrame(np.random.rand(4_000_000, 6)), {str(target)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".estimates.csv.*.tmp")) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old,complete,file\n"


def test_write_csv_writes_what_pandas_writes(tmp_path, monkeypatch):
    """write_csv formats each column itself and hands the rows to a csv.writer (pandas
    formats floats cell by cell through Python calls). Source of truth: pandas' to_csv with
    the same float format, byte for byte, on the values that could differ (missing, -0
    beside 0, infinities, tiny, huge, whole numbers, repeated values and values that print
    alike, ints, unsigned ints, booleans, text with a comma, a quote or a line break, empty
    text, None, pandas' text type with missing values, Python objects of mixed kinds), over
    several chunks, on an empty frame, a single column with an empty value (the csv module
    quotes it), columns sharing a name, and on kinds of column written through pandas
    (nullable integers, categories, dates)."""
    from analysis import io

    monkeypatch.setattr(io, "_CHUNK_ROWS", 3)
    df = pd.DataFrame({
        "trial_id": ["T1", "T2", "a,b", "", None, 'say "no"', "two\nlines"],
        "x": [np.nan, -0.0, np.inf, -np.inf, 1e-300, 123456789012.0, 1 / 3],
        "whole": [1.0, 0.0, 100.0, np.nan, -5.0, 2.5, 1e10],
        "zeros": [0.0, -0.0, 0.0, -0.0, -0.0, 0.0, np.nan],  # one value to a hash, two in print
        "grid": [2.5, 2.5, np.nan, 2.5, 0.1 + 0.2, 0.3, 0.1 + 0.2],  # repeats: formatted once each
        "n": [1, 2, 3, 4, 5, 6, -7],
        "u": np.arange(7, dtype=np.uint8),
        "flag": [True, False, True, False, True, False, True],
        "text": pd.array(["a", None, "c", "", "e", None, "g"], dtype="string"),
        "str": pd.Series(["a", None, "c", "", "e", "f,g", "h"], dtype=pd.StringDtype(na_value=np.nan)),
        "mixed": pd.Series([True, np.nan, 1.5, None, "x", 0.1 + 0.2, False], dtype=object),
        "small": np.array([0.5, 1.25, np.nan, 3, 4, 5, 6], dtype=np.float32),
    })
    through_pandas = [df.assign(nullable=pd.array([1, None, 3, 4, 5, 6, 7], dtype="Int64")),
                      df.assign(category=pd.Categorical(["a", "b", None, "a", "b", "a", "b"])),
                      df.assign(date=pd.to_datetime(["2020-01-02"] * 6 + [None]))]
    repeated_names = df[["x", "n", "trial_id"]].set_axis(["a", "a", "a"], axis=1)
    frames = [df, df.iloc[:0], df[["x"]], df[["trial_id"]].iloc[3:4], df.iloc[:, :0], repeated_names,
              *through_pandas]
    for frame in frames:
        io.write_csv(frame, tmp_path / "ours.csv")
        with open(tmp_path / "pandas.csv", "w", newline="", encoding="utf-8") as fh:
            frame.to_csv(fh, index=False, float_format=io.FLOAT_FORMAT, lineterminator="\n")
        assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


# ----------------------------------------------------------------------------- staleness, rebuild


def test_results_are_reported_stale_when_an_input_changes(demo_results, tmp_path):
    from analysis.provenance import is_stale

    paths = Paths(tmp_path / "data", demo_results.paths.results_dir)
    shutil.copytree(demo_results.paths.data_dir, paths.data_dir)
    assert not is_stale(paths)
    spec = paths.specs / "T01.yaml"
    spec.write_text(spec.read_text().replace("risk_of_bias: ", "risk_of_bias:  "))
    assert is_stale(paths)
    out = subprocess.run([sys.executable, "-m", "analysis", "check", "--results", "--data-dir", str(paths.data_dir),
                          "--results-dir", str(paths.results_dir)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert out.returncode == 1 and "stale" in out.stderr


def test_rebuild_from_nothing_is_byte_identical(demo_results, tmp_path):
    """Fitting the same derived data twice into empty results folders gives identical files."""
    from analysis.analyses.fit import fit_all

    outs = []
    for name in ("a", "b"):
        paths = Paths(demo_results.paths.data_dir, tmp_path / name)
        fit_all(paths, imputations=3)
        outs.append({f.name: f.read_bytes() for f in sorted(paths.results_dir.glob("*.csv"))})
    assert outs[0] == outs[1] and len(outs[0]) >= 6


# ----------------------------------------------------------------------------- privacy


def _book_outputs(rep):
    """Every table the book shows, as HTML."""
    from analysis.book import tables

    yield tables.trial_characteristics(rep).as_raw_html()
    yield tables.baseline_by_arm(rep).as_raw_html()
    yield tables.overall_summary(rep).as_raw_html()
    yield tables.modifier_table(rep).as_raw_html()
    yield tables.flow_table(rep).as_raw_html()
    yield tables.exclusion_table(rep).as_raw_html()
    yield tables.recoding_table(rep).as_raw_html()
    yield tables.sensitivity_comparison(rep).as_raw_html()
    yield tables.mi_modifiers(rep).as_raw_html()
    yield tables.model_notes(rep).as_raw_html()


def test_no_output_contains_participant_data(demo_results):
    from analysis.book.report import Report

    rep = Report(demo_results.paths)
    latent = demo_results.latent
    secrets = set()
    for w, _ in latent.raw.values():
        for col in ("name", "email", "date_of_birth"):
            if col in w:
                secrets |= set(w[col].astype(str))
    prefixed = re.compile(r"\bT\d\d-\d{3}\b")  # participant identifiers of the prefixed style
    texts = [f.read_text() for f in demo_results.paths.results_dir.glob("*.csv")]
    texts += [(demo_results.paths.results_dir / "provenance.json").read_text()]
    texts += list(_book_outputs(rep))
    texts += [f.read_text() for f in demo_results.paths.derived.glob("*.csv")]  # derived: no identifying data
    for text in texts:
        assert not prefixed.search(text) or "participant_id" in text.splitlines()[0]
        assert not any(s in text for s in secrets if len(s) > 6)
    # results are aggregates: no participant identifier column, and the figure data's
    # rows are a fixed grid per analysis, not one per participant
    for f in demo_results.paths.results_dir.glob("*.csv"):
        assert "participant_id" not in pd.read_csv(f, nrows=1).columns, f.name
    curves = rep.modifier_effects
    per_analysis = curves.groupby(["comparison", "outcome", "window", "covariate", "kind"]).size()
    assert per_analysis.xs("curve", level="kind").max() <= 25
    assert per_analysis.xs("decile", level="kind").max() <= 9  # deciles: aggregates of >= 10 participants each
    # no run of participant-level values (each trial's baseline function, in master-data order)
    # in any results column: what a leaked row-level column would look like
    participants = pd.read_csv(demo_results.paths.derived_file("participants"))
    runs = _participant_runs(participants, "function_bl")
    for f in demo_results.paths.results_dir.glob("*.csv"):
        assert not _contains_run(pd.read_csv(f), runs), f.name
    leaked = participants.loc[participants.trial_id == "T02", ["function_bl"]]
    assert _contains_run(leaked.reset_index(drop=True), runs)  # the check does catch a leak


def _participant_runs(participants, column, length=5) -> set:
    """Every run of ``length`` consecutive values within a trial, rounded to 4 decimals."""
    runs = set()
    for _, g in participants.groupby("trial_id"):
        values = tuple(np.round(g[column].dropna().to_numpy(float), 4))
        runs |= {values[i:i + length] for i in range(len(values) - length + 1)}
    return runs


def _contains_run(frame: pd.DataFrame, runs: set, length=5) -> bool:
    for col in frame.select_dtypes("number").columns:
        values = tuple(np.round(frame[col].dropna().to_numpy(float), 4))
        if any(values[i:i + length] in runs for i in range(len(values) - length + 1)):
            return True
    return False
