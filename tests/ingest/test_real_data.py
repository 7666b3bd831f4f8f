"""Real trial data as it arrives: several tables per trial, explicit date formats, missing-value
codes (spec and SPSS/Stata declarations), SAS files, other encodings, intention-to-treat
accounting and the guards against spec mistakes. Each case is built by hand, as a trial team
would send it, and checked for its values and its messages."""

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml

from analysis.errors import InputError
from analysis.ingest.harmonise import harmonise_trial
from analysis.ingest.spec import load_spec
from analysis.paths import Paths
from analysis.pipeline import check, harmonise

OUTCOMES = {"pain": {"instrument": "vas_100", "baseline": "pain0", "followup": {3: "pain3", 12: "pain12"}},
            "function": {"instrument": "rmdq_24", "baseline": "rmdq0", "followup": {3: "rmdq3", 12: "rmdq12"}}}
ARM = {"column": "arm", "labels": {"E": "exercise", "C": "none_usual_care"}}


def _wide(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "pid": [f"P{i:02d}" for i in range(1, n + 1)], "arm": ["E", "C"] * (n // 2),
        "age": rng.integers(25, 70, n).astype(float), "pain0": rng.integers(30, 90, n).astype(float),
        "rmdq0": rng.integers(5, 20, n).astype(float), "pain3": rng.integers(10, 80, n).astype(float),
        "rmdq3": rng.integers(2, 18, n).astype(float), "pain12": rng.integers(10, 80, n).astype(float),
        "rmdq12": rng.integers(2, 18, n).astype(float),
    })


def _spec(**fields):
    spec = {"trial_id": "R1", "participant_id": "pid", "arm": ARM, "outcomes": OUTCOMES,
            "covariates": {"age": {"column": "age"}}, "risk_of_bias": "low",
            "source": {"file": "R1.csv", "format": "csv"}}
    spec.update(fields)
    return spec


def _trial(tmp: Path, spec: dict, files: dict, trial_id="R1") -> Paths:
    paths = Paths(tmp / "data", tmp / "results")
    paths.specs.mkdir(parents=True, exist_ok=True)
    paths.raw.mkdir(parents=True, exist_ok=True)
    for name, write in files.items():
        write(paths.raw / name) if callable(write) else write.to_csv(paths.raw / name, index=False)
    (paths.specs / f"{trial_id}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    return paths


def _run(paths: Paths, trial_id="R1"):
    return harmonise_trial(load_spec(paths.specs / f"{trial_id}.yaml"), paths.raw)


# ----------------------------------------------------------------------------- several tables


def test_a_trial_in_three_tables_joined_on_the_participant_id(tmp_path):
    """A randomisation list (the randomised participants), a baseline table and a long table
    of visits, each naming the id column its own way. A participant missing from the baseline
    table stays (intention to treat); rows of unknown participants are logged with file and row."""
    wide = _wide(8)
    randomisation = wide[["pid", "arm"]].rename(columns={"pid": "rand_id"})
    baseline = wide[["pid", "age", "pain0", "rmdq0"]].iloc[:7]  # P08 has no baseline row
    baseline = pd.concat([baseline, pd.DataFrame({"pid": ["X99"], "age": [40.0], "pain0": [50.0], "rmdq0": [9.0]})])
    visits = pd.concat([
        wide[["pid", "pain3", "rmdq3"]].rename(columns={"pain3": "vas", "rmdq3": "rmdq"}).assign(visit="3m"),
        wide[["pid", "pain12", "rmdq12"]].rename(columns={"pain12": "vas", "rmdq12": "rmdq"}).assign(visit="12m"),
    ]).rename(columns={"pid": "subject"})
    visits = pd.concat([visits, pd.DataFrame({"subject": ["Z42", "P01"], "visit": ["3m", None], "vas": [20.0, 30.0],
                                              "rmdq": [5.0, 6.0]})], ignore_index=True)
    spec = _spec(source=None, sources=[
        {"file": "rand.csv", "format": "csv", "participant_id": "rand_id"},
        {"file": "baseline.csv", "format": "csv"},
        {"file": "visits.csv", "format": "csv", "layout": "long", "participant_id": "subject"}],
        long={"time_column": "visit", "time_values": {"3m": 3, "12m": 12}},
        outcomes={"pain": {"instrument": "vas_100", "baseline": "pain0", "column": "vas"},
                  "function": {"instrument": "rmdq_24", "baseline": "rmdq0", "column": "rmdq"}})
    spec.pop("source")
    paths = _trial(tmp_path, spec, {"rand.csv": randomisation, "baseline.csv": baseline, "visits.csv": visits})
    r = _run(paths)
    assert list(r.participants.participant_id) == list(wide.pid)  # all 8 randomised, in their order
    p08 = r.participants.set_index("participant_id").loc["P08"]
    assert np.isnan(p08.pain_bl) and np.isnan(p08.age) and p08.comparison == "none_usual_care"
    p01 = r.participants.set_index("participant_id").loc["P01"]
    assert p01.pain_bl == wide.pain0[0] and p01.function_bl == pytest.approx(100 * wide.rmdq0[0] / 24)
    o = r.outcomes.set_index(["participant_id", "window"])
    assert o.loc[("P01", "short"), "pain"] == wide.pain3[0] and o.loc[("P01", "long"), "pain"] == wide.pain12[0]
    assert o.loc[("P08", "long"), "pain"] == wide.pain12[7]  # follow-up of the participant without baseline
    unknown = r.exclusions[r.exclusions.reason.str.startswith("unknown_id")]
    assert set(zip(unknown.source_file, unknown.source_row, unknown.participant_id)) == {
        ("baseline.csv", 8, "X99"), ("visits.csv", 17, "Z42")}
    missing_visit = r.value_issues[r.value_issues.reason == "missing_visit"]
    assert list(zip(missing_visit.source_file, missing_visit.source_row)) == [("visits.csv", 18)]
    # every row of every table is accounted for, once
    excluded = set(zip(r.exclusions.source_file, r.exclusions.source_row))
    unused = set(zip(missing_visit.source_file, missing_visit.source_row))
    assert excluded | unused | r.used_rows == r.raw_rows and len(r.raw_rows) == 8 + 8 + 18


def test_workbook_sheets_and_a_sheet_that_is_not_there(tmp_path):
    wide = _wide(6)

    def workbook(path):
        with pd.ExcelWriter(path) as xl:
            readme = pd.DataFrame({"About": ["baseline on 'baseline', visits on 'visits'"]})
            readme.to_excel(xl, sheet_name="readme", index=False)
            wide.to_excel(xl, sheet_name="baseline", index=False)

    spec = _spec(source={"file": "R1.xlsx", "format": "xlsx", "sheet": "baseline"})
    paths = _trial(tmp_path, spec, {"R1.xlsx": workbook})
    assert list(_run(paths).participants.participant_id) == list(wide.pid)
    spec["source"]["sheet"] = "data"
    (paths.specs / "R1.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError) as err:
        _run(paths)
    assert "no sheet 'data' in the workbook" in err.value.message() and "['readme', 'baseline']" in err.value.message()


def test_a_long_table_with_baseline_visits_beside_a_baseline_table_stops(tmp_path):
    wide = _wide(4)
    visits = pd.DataFrame({"pid": wide.pid, "visit": "0", "vas": 50.0, "rmdq": 9.0})
    spec = _spec(source=None, sources=[{"file": "b.csv", "format": "csv"},
                                       {"file": "v.csv", "format": "csv", "layout": "long"}],
                 long={"time_column": "visit", "time_values": {"0": 0, "3": 3}},
                 outcomes={"pain": {"instrument": "vas_100", "baseline": "pain0", "column": "vas"},
                           "function": {"instrument": "rmdq_24", "baseline": "rmdq0", "column": "rmdq"}})
    spec.pop("source")
    paths = _trial(tmp_path, spec, {"b.csv": wide[["pid", "arm", "age", "pain0", "rmdq0"]], "v.csv": visits})
    with pytest.raises(InputError) as err:
        _run(paths)
    assert "baseline (month 0) visits as well as a table of participants" in err.value.message()


# ----------------------------------------------------------------------------- dates


def _dated(dates, fmt=None, n=None):
    n = n or len(dates)
    wide = _wide(n)
    data = wide.drop(columns="age").assign(yob=[1960.0] * n, enrolled=dates)
    age = {"birth_year": "yob", "enrolment_date": "enrolled"}
    if fmt:
        age["date_format"] = fmt
    return data, _spec(covariates={"age": age})


def test_day_first_dates_without_a_format_stop_check_and_are_never_guessed(tmp_path):
    data, spec = _dated(["03/04/2009", "05/06/2010", "11/12/2009", "25/12/2009"])
    paths = _trial(tmp_path, spec, {"R1.csv": data})
    problems, _ = check(paths)
    assert len(problems) == 1
    msg = problems[0]
    for part in ("R1.csv", "trial R1", "column 'enrolled'", "'03/04/2009'", "covariates.age.date_format",
                 "never guessed"):
        assert part in msg, part


def test_day_first_dates_with_their_format_give_exact_ages(tmp_path):
    data, spec = _dated(["03/04/2009", "05/06/2010", "11/12/2009", "25/12/2009"], fmt="%d/%m/%Y")
    r = _run(_trial(tmp_path, spec, {"R1.csv": data}))
    enrolled = [date(2009, 4, 3), date(2010, 6, 5), date(2009, 12, 11), date(2009, 12, 25)]
    expected = [(d - date(1960, 7, 1)).days / 365.25 for d in enrolled]  # birth year: 1 July
    assert np.allclose(r.participants.age, expected)
    assert ("dates read", "enrolled: format %d/%m/%Y") in r.log


def test_a_date_that_does_not_exist_is_set_missing_not_excluded(tmp_path):
    dates = ["03/04/2009", "31/02/2009"] + ["05/06/2010"] * 10
    data, spec = _dated(dates, fmt="%d/%m/%Y")
    r = _run(_trial(tmp_path, spec, {"R1.csv": data}))
    assert len(r.participants) == 12 and np.isnan(r.participants.age[1]) and not np.isnan(r.participants.age[0])
    issue = r.value_issues[r.value_issues.reason == "invalid_date"]
    assert list(zip(issue.source_row, issue.column, issue.value)) == [(2, "enrolled", "31/02/2009")]


def test_excel_date_cells_and_serial_numbers_are_dates(tmp_path):
    data, spec = _dated([None] * 4)
    # Excel serial numbers 40184 and 39814 are 6 January 2010 and 1 January 2009 (39448 is 1 January 2008)
    data["enrolled"] = [datetime(2009, 4, 3), 40184.0, datetime(2009, 12, 11), 39814.0]
    spec["source"] = {"file": "R1.xlsx", "format": "xlsx"}
    r = _run(_trial(tmp_path, spec, {"R1.xlsx": lambda p: data.to_excel(p, index=False)}))
    enrolled = [date(2009, 4, 3), date(2010, 1, 6), date(2009, 12, 11), date(2009, 1, 1)]
    assert np.allclose(r.participants.age, [(d - date(1960, 7, 1)).days / 365.25 for d in enrolled])


# ----------------------------------------------------------------------------- missing-value codes


def test_missing_value_codes_are_set_missing_counted_and_never_exclusions(tmp_path):
    data = _wide(12).astype(object)
    data.loc[2, "pain12"] = -99
    data.loc[3, "rmdq3"] = 999
    data.loc[4, "age"] = "."
    data.loc[5, "age"] = -9  # a code for age only
    spec = _spec(missing_values=[-99, 999, "."], missing_values_by_column={"age": [-9]})
    r = _run(_trial(tmp_path, spec, {"R1.csv": data}))
    assert len(r.participants) == 12 and r.exclusions.empty
    codes = r.value_issues[r.value_issues.reason == "missing_code"]
    assert set(zip(codes.source_row, codes.column, codes.value)) == {
        (3, "pain12", "-99"), (4, "rmdq3", "999"), (5, "age", "."), (6, "age", "-9")}
    assert r.participants.age.isna().sum() == 2
    o = r.outcomes.set_index(["participant_id", "window"])
    assert np.isnan(o.loc[("P03", "long"), "pain"]) and o.loc[("P03", "long"), "function"] > 0
    assert any(step == "missing-value codes set missing" and detail.startswith("age: 2") for step, detail in r.log)


def test_coded_covariates_map_codes_and_stop_at_a_value_without_one(tmp_path):
    """Source of truth: the spec's codes. A coded covariate maps each raw code however it is
    written (1, 1.0, " 1 ") to 0/1, its missing code and empty cells to missing; a value the
    spec does not code stops harmonisation with the file, the column, the values and how many
    rows carry them (never guessed)."""
    data = _wide(8).astype(object)
    data["work"] = [1, "1.0", " 2 ", 2, 9, None, 1, 2]
    coded = {"column": "work", "codes": {1: 1, 2: 0}, "missing": [9]}
    spec = _spec(covariates={"age": {"column": "age"}, "heavy_work": coded})
    r = _run(_trial(tmp_path, spec, {"R1.csv": data}))
    np.testing.assert_array_equal(r.participants.heavy_work.to_numpy(), [1, 1, 0, 0, np.nan, np.nan, 1, 0])
    data["work"] = [1, "yes", 2, "yes", "maybe", 2, 1, 2]
    with pytest.raises(InputError) as err:
        _run(_trial(tmp_path / "bad", spec, {"R1.csv": data}))
    message = err.value.message()
    assert "'maybe', 'yes'" in message and "(3 rows)" in message and "work" in message and "R1.csv" in message


def test_spss_and_stata_missing_value_declarations_are_honoured(tmp_path):
    data = _wide(12)
    data.loc[1, "pain3"] = -1.0
    data.loc[2, "pain3"] = 98.0  # inside the declared range 97-99: missing, not a score of 98
    sav = lambda p: pyreadstat.write_sav(data, str(p), missing_ranges={"pain3": [-1.0, {"lo": 97.0, "hi": 99.0}]})  # noqa: E731
    r = _run(_trial(tmp_path / "sav", _spec(source={"file": "R1.sav", "format": "sav"}), {"R1.sav": sav}))
    declared = r.value_issues[r.value_issues.reason == "declared_missing"]
    assert set(zip(declared.source_row, declared.column)) == {(2, "pain3"), (3, "pain3")}
    assert r.outcomes.set_index(["participant_id", "window"]).loc[("P03", "short"), "pain"] != 98.0
    stata = data.astype({"age": object})
    stata.loc[4, "age"] = "a"  # Stata's .a: refused to answer
    dta = lambda p: pyreadstat.write_dta(stata, str(p), missing_user_values={"age": ["a"]})  # noqa: E731
    r = _run(_trial(tmp_path / "dta", _spec(source={"file": "R1.dta", "format": "dta"}), {"R1.dta": dta}))
    declared = r.value_issues[r.value_issues.reason == "declared_missing"]
    assert list(zip(declared.source_row, declared.column, declared.value)) == [(5, "age", "a")]
    assert np.isnan(r.participants.age[4]) and len(r.participants) == 12


# ----------------------------------------------------------------------------- readers


def test_sas_transport_files_are_read(tmp_path):
    data = _wide(10)
    xpt = lambda p: pyreadstat.write_xport(data, str(p), file_format_version=8)  # noqa: E731
    r_xpt = _run(_trial(tmp_path / "x", _spec(source={"file": "R1.xpt", "format": "xpt"}), {"R1.xpt": xpt}))
    r_csv = _run(_trial(tmp_path / "c", _spec(), {"R1.csv": data}))
    pd.testing.assert_frame_equal(r_xpt.participants, r_csv.participants)
    pd.testing.assert_frame_equal(r_xpt.outcomes, r_csv.outcomes)


def test_a_latin1_file_says_which_encoding_to_set(tmp_path):
    data = _wide(4).assign(centre=["Zürich", "Genève", "Köln", "Århus"])
    latin = lambda p: data.to_csv(p, index=False, encoding="latin-1")  # noqa: E731
    paths = _trial(tmp_path, _spec(), {"R1.csv": latin})
    with pytest.raises(InputError) as err:
        _run(paths)
    msg = err.value.message()
    assert "R1.csv" in msg and "not encoded as utf-8" in msg and "source.encoding" in msg
    assert "cp1252" in msg and "'Z\\xfcrich'" not in msg and "Zürich" in msg  # how the bytes read as cp1252
    spec = _spec(source={"file": "R1.csv", "format": "csv", "encoding": "latin-1"})
    (paths.specs / "R1.yaml").write_text(yaml.safe_dump(spec))
    assert len(_run(paths).participants) == 4


# ----------------------------------------------------------------------------- intention to treat


def test_a_bad_value_costs_that_value_only(tmp_path):
    data = _wide(12).astype(object)
    data.loc[0, "pain12"] = 130  # out of range: only this follow-up value is lost
    data.loc[1, "age"] = 7  # implausible
    data.loc[2, "pain0"] = "lots"  # unreadable
    spec = _spec(exclude={"P12": "consent withdrawn, data may not be used"})
    r = _run(_trial(tmp_path, spec, {"R1.csv": data}))
    p = r.participants.set_index("participant_id")
    assert list(p.index) == [f"P{i:02d}" for i in range(1, 12)]  # P12 excluded by the spec, no one else
    assert np.isnan(p.loc["P02", "age"]) and np.isnan(p.loc["P03", "pain_bl"]) and p.loc["P03", "age"] > 0
    o = r.outcomes.set_index(["participant_id", "window"])
    assert np.isnan(o.loc[("P01", "long"), "pain"]) and o.loc[("P01", "short"), "pain"] == data.pain3[0]
    reasons = dict(zip(zip(r.value_issues.source_row, r.value_issues.column), r.value_issues.reason))
    assert reasons == {(1, "pain12"): "out_of_range", (2, "age"): "implausible_age", (3, "pain0"): "non_numeric"}
    assert list(r.exclusions.reason) == ["excluded_by_spec: consent withdrawn, data may not be used"]


def test_outcomes_hold_only_visits_with_a_value(demo_run):
    o = demo_run.tables["outcomes"]
    assert (o.pain.notna() | o.function.notna()).all()


# ----------------------------------------------------------------------------- guards


def test_a_reason_hitting_more_than_a_tenth_of_a_column_blames_the_spec(tmp_path):
    """Here the spec names the wrong pain instrument (0-10 for a 0-100 scale): 30% of the
    baseline scores are out of range. check fails and says the spec is the likely problem."""
    data = _wide(20)
    data["pain0"] = [5.0] * 14 + [55.0] * 6
    spec = _spec(outcomes={**OUTCOMES, "pain": {**OUTCOMES["pain"], "instrument": "nrs_10"}})
    paths = _trial(tmp_path, spec, {"R1.csv": data})
    problems, _ = check(paths)
    assert any("column 'pain0'" in p and "set missing as out_of_range" in p and "points at the spec" in p
               for p in problems), problems
    # counted per (column, reason), in the order of the columns' names, with the distinct values
    # as examples (the follow-ups, on the wrong scale too, are all out of range)
    guarded = [p.split(": ", 1)[1].split(";")[0] for p in problems if "set missing as" in p]
    assert guarded[0] == "6 of 20 values (30%) set missing as out_of_range (e.g. '55')", guarded
    assert [p.split("column ")[1].split(":")[0] for p in problems if "set missing as" in p] == [
        "'pain0'", "'pain12'", "'pain3'"]
    with pytest.raises(InputError) as err:
        harmonise(paths)
    assert "the spec is the likely problem" in err.value.message()


def test_two_specs_reading_one_table_and_one_trial_under_two_names_are_caught(tmp_path):
    data = _wide(12)
    paths = _trial(tmp_path, _spec(), {"R1.csv": data})
    copied = _spec(trial_id="R2")
    (paths.specs / "R2.yaml").write_text(yaml.safe_dump(copied))
    problems, _ = check(paths)
    assert any("both specs read R1.csv" in p for p in problems)
    (paths.raw / "R2.csv").write_text((paths.raw / "R1.csv").read_text())
    copied["source"]["file"] = "R2.csv"
    (paths.specs / "R2.yaml").write_text(yaml.safe_dump(copied))
    problems, _ = check(paths)
    assert problems == ["trials R1 and R2 hold 12 participants with the same identifier and the same baseline "
                        "values: the same trial under two names, or a raw file copied into both"]
