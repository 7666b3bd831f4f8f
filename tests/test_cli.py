"""The command line on good and bad input: messages name file, trial, column and what was
expected; user errors exit non-zero without a traceback."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from analysis.cli import main
from analysis.paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def raw_source(tmp_path_factory):
    from analysis import demo

    raw = tmp_path_factory.mktemp("raw")
    demo.write_raw(raw, seed=2020)
    return raw


@pytest.fixture
def one_trial(tmp_path, raw_source):
    """A data folder holding trial T01 only (CSV, wide) and, for long layouts, T12 (CSV, long)."""
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    (data / "raw").mkdir()
    for t, ext in (("T01", "csv"), ("T12", "csv")):
        shutil.copy(PROJECT_ROOT / "data" / "specs" / f"{t}.yaml", data / "specs")
        shutil.copy(raw_source / f"{t}.{ext}", data / "raw")
    return data


def run(data, *verb):
    return main([*verb, "--data-dir", str(data), "--results-dir", str(data.parent / "results")])


def edit_spec(data, trial, fn):
    path = data / "specs" / f"{trial}.yaml"
    spec = yaml.safe_load(path.read_text())
    fn(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_clean_data_passes_check(one_trial, capsys):
    assert run(one_trial, "check") == 0
    assert "check passed" in capsys.readouterr().out


def test_missing_raw_file(one_trial, capsys):
    (one_trial / "raw" / "T01.csv").unlink()
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "T01.csv" in err and "trial T01" in err and "not found" in err


def test_unreadable_file(one_trial, capsys):
    edit_spec(one_trial, "T01", lambda s: s["source"].update(file="T01.xlsx", format="xlsx"))
    (one_trial / "raw" / "T01.xlsx").write_bytes(b"\x00\x01 not a spreadsheet")
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "T01.xlsx" in err and "cannot read the file as xlsx" in err


def test_yaml_syntax_error_names_the_line(one_trial, capsys):
    path = one_trial / "specs" / "T01.yaml"
    lines = path.read_text().splitlines()
    lines[8] = "  format: [csv"
    path.write_text("\n".join(lines))
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "T01.yaml" in err and "YAML syntax error at line" in err


def test_unknown_column_in_spec(one_trial, capsys):
    edit_spec(one_trial, "T01", lambda s: s["covariates"]["age"].update(column="age_at_entry"))
    assert run(one_trial, "check") == 1
    err = capsys.readouterr().err
    assert "not found in the file: 'age_at_entry' (spec field covariates.age.column)" in err
    assert "trial T01" in err and "T01.csv" in err and "expected columns of the file, found 'pid'" in err


def test_unknown_instrument(one_trial, capsys):
    edit_spec(one_trial, "T01", lambda s: s["outcomes"]["pain"].update(instrument="vas_150"))
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "field outcomes.pain.instrument" in err and "unknown instrument 'vas_150'" in err and "vas_100" in err


def test_unmapped_arm_label(one_trial, capsys):
    edit_spec(one_trial, "T01", lambda s: s["arm"]["labels"].pop("2"))
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "arm label(s) '2' are not mapped" in err and "column 'group'" in err and "expected one of ['1']" in err


def test_non_numeric_value_is_set_missing_with_reason(one_trial, capsys):
    """Intention to treat: an unreadable age is set missing; the participant stays."""
    path = one_trial / "raw" / "T01.csv"
    df = pd.read_csv(path, dtype=str)
    df.loc[4, "age"] = "forty"
    df.to_csv(path, index=False)
    assert run(one_trial, "harmonise") == 0
    issues = pd.read_csv(one_trial / "derived" / "value_issues.csv", dtype=str)
    row = issues[(issues.source_row == "5") & (issues.trial_id == "T01")]
    assert len(row) == 1 and (row.column == "age").all() and (row.value == "forty").all()
    assert (row.reason == "non_numeric").all()
    participants = pd.read_csv(one_trial / "derived" / "participants.csv", dtype=str)
    person = participants[(participants.trial_id == "T01") & (participants.participant_id == df.loc[4, "pid"])]
    assert len(person) == 1 and person.age.isna().all() and person.pain_bl.notna().all()


def test_wholly_non_numeric_column_stops(one_trial, capsys):
    path = one_trial / "raw" / "T01.csv"
    df = pd.read_csv(path, dtype=str)
    df["age"] = "n/k"
    df.loc[:3, "age"] = "adult"
    df.to_csv(path, index=False)
    assert run(one_trial, "harmonise") == 2
    err = capsys.readouterr().err
    assert "column 'age': column is not numeric" in err and "'adult'" in err


def test_out_of_range_score_is_set_missing_and_duplicates_excluded(one_trial):
    path = one_trial / "raw" / "T01.csv"
    df = pd.read_csv(path, dtype=str)
    df.loc[9, "pain_0"] = "101"
    df.loc[11, "pid"] = df.loc[10, "pid"]
    df.to_csv(path, index=False)
    assert run(one_trial, "harmonise") == 0
    issues = pd.read_csv(one_trial / "derived" / "value_issues.csv", dtype=str)
    issues = issues[issues.trial_id == "T01"]
    hit = issues[issues.source_row == "10"]
    assert (hit.column == "pain_0").all() and (hit.value == "101").all() and (hit.reason == "out_of_range").all()
    ex = pd.read_csv(one_trial / "derived" / "exclusions.csv", dtype=str)
    ex = ex[ex.trial_id == "T01"]
    assert ex.loc[ex.source_row.isin(["11", "12"]), "reason"].str.contains("duplicate_id").all()
    assert "10" not in set(ex.source_row)  # the participant with the bad score stays


def test_followup_fitting_no_window_is_logged(one_trial):
    """T12 (long) has a 24-month visit: each such record is in the value log as not used."""
    assert run(one_trial, "harmonise") == 0
    issues = pd.read_csv(one_trial / "derived" / "value_issues.csv", dtype=str)
    outside = issues[issues.reason == "followup_outside_windows"]
    assert len(outside) > 0 and set(outside.trial_id) == {"T12"}
    raw = pd.read_csv(one_trial / "raw" / "T12.csv", sep=";", dtype=str)
    # source_row is the 1-based data row (header excluded)
    assert set(raw.timepoint.iloc[outside.source_row.astype(int) - 1]) == {"24mo"}


def test_unmapped_visit_code_in_long_layout(one_trial, capsys):
    edit_spec(one_trial, "T12", lambda s: s["long"]["time_values"].pop("6mo"))
    assert run(one_trial, "check") == 1
    err = capsys.readouterr().err
    assert "visit code(s) '6mo' are not in long.time_values" in err and "T12" in err


def test_check_reports_every_problem_not_only_the_first(one_trial, capsys):
    edit_spec(one_trial, "T01", lambda s: s["outcomes"]["pain"].update(instrument="vas_150"))
    edit_spec(one_trial, "T12", lambda s: s.update(risk_of_bias="unclear"))
    assert run(one_trial, "check") == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "T01" in err and "risk_of_bias" in err


def test_no_traceback_in_a_real_process(one_trial):
    (one_trial / "raw" / "T01.csv").unlink()
    proc = subprocess.run([sys.executable, "-m", "analysis", "harmonise", "--data-dir", str(one_trial)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: file ")


def test_help_for_every_verb():
    for verb in ("demo-data", "harmonise", "fit", "all", "check"):
        proc = subprocess.run([sys.executable, "-m", "analysis", verb, "--help"], capture_output=True, text=True,
                              cwd=PROJECT_ROOT)
        assert proc.returncode == 0 and "--data-dir" in proc.stdout


def test_harmonise_is_byte_identical_across_runs_and_seed_sensitive(tmp_path):
    from analysis.pipeline import harmonise
    from tests.conftest import make_data_dir

    runs = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        paths = make_data_dir(tmp_path / name, seed=seed)
        harmonise(paths)
        runs.append({f.name: f.read_bytes() for f in sorted(paths.derived.glob("*.csv"))})
    assert runs[0] == runs[1]
    assert runs[0]["participants.csv"] != runs[2]["participants.csv"]


def test_scaled_demo_keeps_messiness_and_accounts_for_every_row(tmp_path):
    data = tmp_path / "data"
    assert main(["demo-data", "--trials", "8", "--participants", "600", "--data-dir", str(data)]) == 0
    assert len(list((data / "specs").glob("*.yaml"))) == 8
    assert {p.suffix for p in (data / "raw").iterdir() if not p.name.startswith("DEMO_")} == {
        ".csv",
        ".xlsx",
        ".sav",
        ".dta",
    }  # too few trials for the demo's SAS transport file (its 25th)
    assert main(["harmonise", "--data-dir", str(data)]) == 0
    flow = pd.read_csv(data / "derived" / "flow.csv")
    assert flow.received.sum() == 600 and (flow.received == flow.excluded + flow.analysed).all()
    assert flow.excluded.sum() + flow.values_set_missing.sum() >= 8  # dirty records are planted at scale too


def test_scaled_demo_refuses_to_overwrite_the_committed_specs(capsys):
    assert main(["demo-data", "--trials", "8", "--participants", "600"]) == 2
    assert "committed specs" in capsys.readouterr().err


def test_export_stats_and_fit_from_stats(one_trial, tmp_path):
    assert run(one_trial, "harmonise") == 0
    assert run(one_trial, "export-stats") == 0
    stats = one_trial / "stats"
    assert sorted(p.name for p in stats.glob("*.json")) == ["T01.json", "T12.json"]
    out = tmp_path / "from_stats"
    assert main(["fit", "--from-stats", str(stats), "--data-dir", str(one_trial), "--results-dir", str(out)]) == 0
    est = pd.read_csv(out / "estimates.csv")
    assert len(est) == 27 and est[est.outcome == "recovered"].note.str.contains("not available").all()


@pytest.mark.parametrize("own_process", [False, True])
def test_loading_freezes_only_new_modules_objects_and_only_in_its_own_process(tmp_path, monkeypatch, own_process):
    """``_loading`` turns the collector off while a command's modules load and, in a process
    of its own, freezes what they made; loading nothing new freezes nothing, and the
    collector is on again after either. Source of truth: ``gc.get_freeze_count`` (0 in this
    test process) and ``gc.isenabled``."""
    import gc
    import types

    from analysis import cli

    (tmp_path / "freshly_loaded_module.py").write_text("VALUES = [[i] for i in range(100)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = types.SimpleNamespace(own_process=own_process)
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    try:
        with cli._loading(args):
            assert not gc.isenabled()
        assert gc.get_freeze_count() == 0 and gc.isenabled()  # nothing loaded: nothing frozen
        with cli._loading(args):
            import freshly_loaded_module  # noqa: F401
        assert gc.isenabled()
        assert (gc.get_freeze_count() > 100) == own_process
    finally:
        gc.unfreeze()
        sys.modules.pop("freshly_loaded_module", None)


def test_all_from_empty_writes_the_demo_in_one_process_beside_this_one(tmp_path, monkeypatch):
    """`all` on an empty raw folder writes the synthetic demo in one child process (this one
    loads the analysis modules meanwhile: a second writer made three busy processes on two
    cores) and then harmonises and fits with the jobs asked for. Source of truth: the
    arguments each step received, and the 27 raw files the writer made."""
    from analysis import cli

    started, steps = [], []

    def start_here(fn, args, paths):  # the child's work, done here to look at it
        started.append((fn, args.jobs))
        fn(args, paths)
        return lambda: steps.append("waited")

    monkeypatch.setattr(cli, "_start_in_child", start_here)
    monkeypatch.setattr(cli, "cmd_harmonise", lambda args, paths: steps.append(("harmonise", args.jobs)) or 0)
    monkeypatch.setattr(cli, "cmd_fit", lambda args, paths: steps.append(("fit", args.jobs)) or 0)
    data = tmp_path / "data"
    shutil.copytree(PROJECT_ROOT / "data" / "specs", data / "specs")
    assert main(["all", "--jobs", "2", "--data-dir", str(data), "--results-dir", str(tmp_path / "results")]) == 0
    assert started == [(cli.cmd_demo_data, 1)]
    assert steps == ["waited", ("harmonise", 2), ("fit", 2)]
    assert len([p for p in (data / "raw").iterdir() if p.suffix in (".csv", ".xlsx", ".sav", ".dta", ".xpt")]) == 27
