"""Hardening against bad input (property-based), atomic writes, stale results, byte-identical
rebuilds and privacy of every output."""

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.errors import InputError
from analysis.harmonise import harmonise_trial
from analysis.paths import PROJECT_ROOT, Paths
from analysis.schema import OUTCOMES, PARTICIPANTS
from analysis.spec import load_spec

# ----------------------------------------------------------------------------- property-based

cell_number = st.one_of(st.none(), st.floats(-50, 150, allow_nan=False).map(lambda v: round(v, 1)),
                        st.sampled_from(["", "NA", "abc", "٣", "1e3", " 7 ", "∞"]))
arm_value = st.sampled_from(["Exercise", "Usual care", "", None, "Exercise", "Usual care", "Yoga"])
id_value = st.one_of(st.integers(1, 15).map(str), st.sampled_from(["", "ü-1", "x"]))
header = st.sampled_from(["pain_0", "päin_0", "Schmerz 0", "pain 0"])


@st.composite
def trials(draw):
    n = draw(st.integers(0, 25))
    rows = {
        "pid": [draw(id_value) for _ in range(n)],
        "arm": [draw(arm_value) for _ in range(n)],
        "pain0": [draw(cell_number) for _ in range(n)],
        "pain3": [draw(cell_number) for _ in range(n)],
        "fun0": [draw(cell_number) for _ in range(n)],
        "fun3": [draw(cell_number) for _ in range(n)],
        "age": [draw(cell_number) for _ in range(n)],
    }
    all_missing = draw(st.sampled_from([None, "age", "pain3"]))
    if all_missing:
        rows[all_missing] = [None] * n
    pain_header = draw(header)
    data = pd.DataFrame(rows).rename(columns={"pain0": pain_header})
    spec = {
        "trial_id": "P1", "source": {"file": "P1.csv", "format": "csv"}, "participant_id": "pid",
        "arm": {"column": "arm", "labels": {"Exercise": "exercise", "Usual care": "none_usual_care"}},
        "outcomes": {"pain": {"instrument": draw(st.sampled_from(["vas_100", "nrs_10"])), "baseline": pain_header,
                              "followup": {3: "pain3"}},
                     "function": {"instrument": draw(st.sampled_from(["rmdq_24", "psfs_10", "odi_50"])), "baseline": "fun0",
                                  "followup": {draw(st.sampled_from([3, 6, 24])): "fun3"}}},
        "covariates": {"age": {"column": draw(st.sampled_from(["age", "age", "missing_column"]))}},
        "risk_of_bias": "low",
    }
    return data, spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trials())
def test_harmonise_accounts_for_every_row_or_stops_clearly(case):
    """Random tables and specs: either schema-valid output with every raw row accounted for,
    or an InputError naming the file or trial; never another exception, never a silent drop."""
    data, spec = case
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "specs").mkdir()
        (tmp / "raw").mkdir()
        data.to_csv(tmp / "raw" / "P1.csv", index=False)
        (tmp / "specs" / "P1.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
        try:
            r = harmonise_trial(load_spec(tmp / "specs" / "P1.yaml"), tmp / "raw")
        except InputError as exc:
            msg = exc.message()
            assert "P1" in msg and len(msg) > 30
            return
        PARTICIPANTS.validate(r.participants)
        OUTCOMES.validate(r.outcomes)
        logged = set(r.exclusions.source_row)
        assert logged | r.used_rows == set(range(1, r.n_rows + 1))
        assert not logged & r.used_rows
    finally:
        shutil.rmtree(tmp)


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
    from analysis.fit import fit_all

    outs = []
    for name in ("a", "b"):
        paths = Paths(demo_results.paths.data_dir, tmp_path / name)
        fit_all(paths, imputations=3)
        outs.append({f.name: f.read_bytes() for f in sorted(paths.results_dir.glob("*.csv"))})
    assert outs[0] == outs[1] and len(outs[0]) >= 6


# ----------------------------------------------------------------------------- privacy


def _book_outputs(rep):
    """Every table the book shows, as HTML."""
    from analysis import tables

    yield tables.trial_characteristics(rep).as_raw_html()
    yield tables.baseline_by_arm(rep).as_raw_html()
    yield tables.overall_summary(rep).as_raw_html()
    yield tables.modifier_table(rep).as_raw_html()
    yield tables.flow_table(rep).as_raw_html()
    yield tables.exclusion_reasons(rep).as_raw_html()
    yield tables.sensitivity_comparison(rep).as_raw_html()
    yield tables.mi_modifiers(rep).as_raw_html()


def test_no_output_contains_participant_data(demo_results):
    from analysis.report import Report

    rep = Report(demo_results.paths)
    latent = demo_results.latent
    secrets = set()
    for t, (w, _) in latent.raw.items():
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
    assert curves.groupby(["comparison", "outcome", "window", "covariate"]).size().max() <= 25
    # no participant-level value sequence (baseline pain of the master data) in any result
    values = set(np.round(rep.participants.pain_bl, 6).astype(str))
    for f in demo_results.paths.results_dir.glob("*.csv"):
        cells = set(pd.read_csv(f).astype(str).to_numpy().ravel())
        assert len(cells & values) < 50, f.name


def test_identifying_columns_are_logged_by_name_only(demo_run):
    log = demo_run.tables["harmonisation_log"]
    row = log[log.step == "identifying columns dropped on read"]
    assert set(row.detail) == {"name, date_of_birth, email"}


# ----------------------------------------------------------------------------- new-spec


@pytest.mark.parametrize("trial", ["T01", "T04", "T05", "T08", "T12"])
def test_new_spec_detects_roles_and_check_lists_what_is_missing(demo_run, trial, tmp_path):
    from analysis.cli import main

    raw = next(demo_run.paths.raw.glob(f"{trial}.*"))
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    shutil.copy(raw, data / "raw")
    assert main(["new-spec", str(raw), "--trial-id", trial, "--data-dir", str(data)]) == 0
    draft = yaml.safe_load((data / "specs" / f"{trial}.yaml").read_text())
    truth = yaml.safe_load((PROJECT_ROOT / "data" / "specs" / f"{trial}.yaml").read_text())
    assert draft["participant_id"] == truth["participant_id"]
    assert draft["arm"]["column"] == truth["arm"]["column"]
    assert draft["source"]["layout"] == truth["source"]["layout"]
    assert draft["outcomes"]["pain"]["baseline"] == truth["outcomes"]["pain"]["baseline"]
    assert draft["outcomes"]["pain"]["instrument"] == truth["outcomes"]["pain"]["instrument"]
    if truth.get("drop_identifying"):
        assert set(draft["drop_identifying"]) == set(truth["drop_identifying"])
    from analysis.pipeline import check

    problems, _ = check(Paths(data, tmp_path / "results"))
    assert len(problems) == 1 and "arm.labels" in problems[0] and "risk_of_bias" in problems[0]
