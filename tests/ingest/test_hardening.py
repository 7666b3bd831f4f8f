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
from analysis.ingest.harmonise import EXCLUSION_REASONS, VALUE_REASONS, harmonise_trial
from analysis.ingest.schema import EXCLUSIONS, OUTCOMES, PARTICIPANTS, VALUE_ISSUES
from analysis.ingest.spec import load_spec
from analysis.paths import PROJECT_ROOT, Paths

# ----------------------------------------------------------------------------- property-based

# mostly numbers, sometimes blank, now and then text of every kind (one in ten)
cell_number = st.integers(0, 9).flatmap(lambda k: st.sampled_from(["", "NA", "abc", "٣", "1e3", " 7 ", "∞"]) if k == 0
                                        else st.none() if k == 1
                                        else st.floats(-50, 150, allow_nan=False).map(lambda v: round(v, 1)))
arm_value = st.sampled_from(["Exercise", "Usual care", "", None, "Exercise", "Usual care", "Yoga"])
id_value = st.one_of(st.integers(1, 15).map(str), st.sampled_from(["", "ü-1", "x"]))
header = st.sampled_from(["pain_0", "päin_0", "Schmerz 0", "pain 0"])


date_value = st.one_of(st.none(), st.sampled_from(["2009-03-04", "04/03/2009", "13/01/2010", "2010-13-01",
                                                    "yesterday", "31/02/2009", "-99"]))


@st.composite
def trials(draw):
    """A random trial: values of every kind (numbers, codes, text, blanks, unicode), random
    spec choices (instruments, missing-value codes, exclusions, dates and their format), and
    either one wide table or a table of participants plus a long table of visits."""
    n = draw(st.integers(0, 25))
    rows = {
        "pid": [draw(id_value) for _ in range(n)],
        "arm": [draw(arm_value if draw(st.integers(0, 9)) == 0 else st.sampled_from(["Exercise", "Usual care", ""]))
                for _ in range(n)],
        "pain0": [draw(cell_number) for _ in range(n)],
        "pain3": [draw(cell_number) for _ in range(n)],
        "fun0": [draw(cell_number) for _ in range(n)],
        "fun3": [draw(cell_number) for _ in range(n)],
        "age": [draw(st.one_of(cell_number, st.sampled_from(["-99", "999"]))) for _ in range(n)],
        "yob": [draw(st.one_of(st.none(), st.sampled_from(["1960", "1985", "-99", "abc"]))) for _ in range(n)],
        "enrol": [draw(date_value if draw(st.integers(0, 4)) == 0 else st.sampled_from(["2009-03-04", "2010-11-23"]))
                  for _ in range(n)],  # ISO dates; written day-first below when the spec says so
    }
    all_missing = draw(st.sampled_from([None, "age", "pain3"]))
    if all_missing:
        rows[all_missing] = [None] * n
    pain_header = draw(header)
    data = pd.DataFrame(rows).rename(columns={"pain0": pain_header})
    two_tables = draw(st.booleans())
    fu_month = draw(st.sampled_from([3, 6, 24]))
    spec = {
        "trial_id": "P1",
        "participant_id": "pid",
        "arm": {"column": "arm", "labels": {"Exercise": "exercise", "Usual care": "none_usual_care"}},
        "outcomes": {
            "pain": {"instrument": draw(st.sampled_from(["vas_100", "nrs_10"])), "baseline": pain_header},
            "function": {"instrument": draw(st.sampled_from(["rmdq_24", "psfs_10", "odi_50"])), "baseline": "fun0"},
        },
        "risk_of_bias": "low",
    }
    if draw(st.booleans()):
        spec["covariates"] = {"age": {"column": draw(st.sampled_from(["age", "age", "missing_column"]))}}
    else:
        date_format = draw(st.sampled_from([None, "%d/%m/%Y", "%Y-%m-%d"]))
        spec["covariates"] = {"age": {"birth_year": "yob", "enrolment_date": "enrol", "date_format": date_format}}
        if date_format == "%d/%m/%Y":
            data["enrol"] = [f"{v[8:10]}/{v[5:7]}/{v[:4]}" if v in ("2009-03-04", "2010-11-23") else v
                             for v in data["enrol"]]
    codes = draw(st.lists(st.sampled_from([-99, 999, "abc"]), max_size=2, unique=True))
    if codes:
        spec["missing_values"] = codes
    if draw(st.booleans()):
        spec["missing_values_by_column"] = {"age": [999]}
    if n and draw(st.booleans()):
        spec["exclude"] = {rows["pid"][0] or "x": "consent withdrawn"}
    if not two_tables:
        spec["source"] = {"file": "P1.csv", "format": "csv"}
        spec["outcomes"]["pain"]["followup"] = {3: "pain3"}
        spec["outcomes"]["function"]["followup"] = {fu_month: "fun3"}
        return {"P1.csv": data}, spec
    visits = pd.DataFrame({"id": data.pid, "visit": "m3", "pain": data.pain3, "fun": data.fun3})
    extra = pd.DataFrame({"id": [draw(id_value) for _ in range(draw(st.integers(0, 3)))]})
    visits = pd.concat([visits, extra.assign(visit=draw(st.sampled_from(["m3", "m24", None])), pain=5, fun=5)])
    spec["sources"] = [{"file": "P1_base.csv", "format": "csv"},
                       {"file": "P1_visits.csv", "format": "csv", "layout": "long", "participant_id": "id"}]
    spec["long"] = {"time_column": "visit", "time_values": {"m3": 3, "m24": 24}}
    spec["outcomes"]["pain"]["column"] = "pain"
    spec["outcomes"]["function"]["column"] = "fun"
    return {"P1_base.csv": data.drop(columns=["pain3", "fun3"]), "P1_visits.csv": visits}, spec


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trials())
def test_harmonise_accounts_for_every_row_or_stops_clearly(case):
    """Random tables and specs: either schema-valid output with every raw row accounted for
    (behind the master data, excluded with a reason, or a visit logged as not used), or an
    InputError naming the file or trial; never another exception, never a silent drop."""
    files, spec = case
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "specs").mkdir()
        (tmp / "raw").mkdir()
        for name, data in files.items():
            data.to_csv(tmp / "raw" / name, index=False)
        (tmp / "specs" / "P1.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
        try:
            r = harmonise_trial(load_spec(tmp / "specs" / "P1.yaml"), tmp / "raw")
        except InputError as exc:
            msg = exc.message()
            assert "P1" in msg and len(msg) > 30
            return
        PARTICIPANTS.validate(r.participants)
        OUTCOMES.validate(r.outcomes)
        EXCLUSIONS.validate(r.exclusions)
        VALUE_ISSUES.validate(r.value_issues)
        assert r.raw_rows == {(name, row) for name, data in files.items() for row in range(1, len(data) + 1)}
        excluded = set(zip(r.exclusions.source_file, r.exclusions.source_row))
        unusable = r.value_issues.reason.isin(["followup_outside_windows", "duplicate_visit", "missing_visit"])
        unused = set(zip(r.value_issues.source_file[unusable], r.value_issues.source_row[unusable]))
        assert excluded | unused | r.used_rows == r.raw_rows
        assert not (excluded & r.used_rows) and not (unused & r.used_rows) and not (excluded & unused)
        assert set(r.exclusions.reason.str.split(":").str[0]) <= set(EXCLUSION_REASONS)
        assert set(r.value_issues.reason) <= set(VALUE_REASONS)
        # intention to treat: every participant kept has an identifier and a mapped arm
        assert (r.participants.participant_id != "").all() and r.participants.comparison.notna().all()
        excluded_ids = set(spec.get("exclude", {}))
        assert not excluded_ids & set(r.participants.participant_id)
        assert r.outcomes[["pain", "function"]].notna().any(axis=1).all()  # no empty visits
    finally:
        shutil.rmtree(tmp)


def test_identifying_columns_are_logged_by_name_only(demo_run):
    log = demo_run.tables["harmonisation_log"]
    row = log[log.step == "identifying columns dropped on read"]
    assert set(row.detail.str.split(r" \(").str[0]) == {"name, date_of_birth, email"}


# ----------------------------------------------------------------------------- new-spec


@pytest.mark.parametrize("trial", ["T01", "T03", "T04", "T05", "T08", "T11", "T12", "T22", "T25"])
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
    if "sources" in truth:  # a workbook: every sheet listed, the ones with the identifier drafted as sources
        text = (data / "specs" / f"{trial}.yaml").read_text()
        assert all(f"# sheet {s!r}" in text for s in ("readme", "baseline", "visits"))
        assert "(no participant identifier column: not used)" in text
        assert [(s["sheet"], s["layout"], s.get("participant_id")) for s in draft["sources"]] == [
            (s["sheet"], s["layout"], s.get("participant_id")) for s in truth["sources"]]
    else:
        assert draft["source"]["layout"] == truth["source"]["layout"]
    if "missing_values" in truth:  # the codes the team used, proposed for confirmation
        assert set(truth["missing_values"]) <= set(draft["missing_values"])
        assert "# CONFIRM: values that look like codes" in (data / "specs" / f"{trial}.yaml").read_text()
    if "date_format" in truth["covariates"]["age"]:
        assert draft["covariates"]["age"]["date_format"] == truth["covariates"]["age"]["date_format"]
    assert draft["outcomes"]["pain"]["baseline"] == truth["outcomes"]["pain"]["baseline"]
    assert draft["outcomes"]["pain"]["instrument"] == truth["outcomes"]["pain"]["instrument"]
    if truth.get("drop_identifying"):
        assert set(draft["drop_identifying"]) == set(truth["drop_identifying"])
    from analysis.pipeline import check

    problems, _ = check(Paths(data, tmp_path / "results"))
    assert len(problems) == 1 and "arm.labels" in problems[0] and "risk_of_bias" in problems[0]


def test_miscoded_birth_year_is_a_logged_value_not_a_crash(tmp_path):
    """Regression (found by the property test above): a birth year of -99 that is not a
    declared missing code made pandas' date assembly raise OutOfBoundsDatetime. It must become
    a missing age, logged with the birth year as read, and the participant stays (ITT)."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "raw").mkdir()
    raw = pd.DataFrame({"pid": ["1", "2"], "arm": ["Exercise", "Usual care"], "pain0": [50, 60], "fun0": [10, 12],
                        "pain3": [40, 55], "fun3": [8, 11], "yob": [-99, 1960], "enrol": ["2009-03-04"] * 2})
    raw.to_csv(tmp_path / "raw" / "P1.csv", index=False)
    spec = {"trial_id": "P1", "participant_id": "pid", "source": {"file": "P1.csv", "format": "csv"},
            "arm": {"column": "arm", "labels": {"Exercise": "exercise", "Usual care": "none_usual_care"}},
            "outcomes": {"pain": {"instrument": "vas_100", "baseline": "pain0", "followup": {3: "pain3"}},
                         "function": {"instrument": "rmdq_24", "baseline": "fun0", "followup": {3: "fun3"}}},
            "covariates": {"age": {"birth_year": "yob", "enrolment_date": "enrol"}}, "risk_of_bias": "low"}
    (tmp_path / "specs" / "P1.yaml").write_text(yaml.safe_dump(spec))
    r = harmonise_trial(load_spec(tmp_path / "specs" / "P1.yaml"), tmp_path / "raw")
    assert list(r.participants.participant_id) == ["1", "2"]
    age = r.participants.set_index("participant_id").age
    expected = (pd.Timestamp("2009-03-04") - pd.Timestamp("1960-07-01")).days / 365.25  # birthday taken as 1 July
    assert pd.isna(age["1"]) and age["2"] == pytest.approx(expected)
    issue = r.value_issues.query("participant_id == '1'").iloc[0]
    assert (issue.column, issue.value, issue.reason) == ("yob", "-99", "implausible_age")
