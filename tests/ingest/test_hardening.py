"""Hardening of harmonisation against bad input (property-based), identifying columns, and
drafting specs from new files."""

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.errors import InputError
from analysis.ingest.harmonise import harmonise_trial
from analysis.ingest.schema import OUTCOMES, PARTICIPANTS
from analysis.ingest.spec import load_spec
from analysis.paths import PROJECT_ROOT, Paths

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
        "trial_id": "P1",
        "source": {"file": "P1.csv", "format": "csv"},
        "participant_id": "pid",
        "arm": {"column": "arm", "labels": {"Exercise": "exercise", "Usual care": "none_usual_care"}},
        "outcomes": {
            "pain": {
                "instrument": draw(st.sampled_from(["vas_100", "nrs_10"])),
                "baseline": pain_header,
                "followup": {3: "pain3"},
            },
            "function": {
                "instrument": draw(st.sampled_from(["rmdq_24", "psfs_10", "odi_50"])),
                "baseline": "fun0",
                "followup": {draw(st.sampled_from([3, 6, 24])): "fun3"},
            },
        },
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
