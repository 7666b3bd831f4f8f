"""Parallel runs (``jobs``) change nothing: harmonising trials in several processes and
fitting the analyses as tasks in several processes write the same files as a serial run
(source of truth: the serial run of the same code, byte for byte), and an input error
raised in a worker reaches the user as it would in a serial run."""

import pickle
import re

import pytest

from analysis import demo
from analysis.analyses.fit import fit_all
from analysis.errors import InputError
from analysis.paths import Paths
from analysis.pipeline import DERIVED_TABLES, harmonise


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data = tmp_path_factory.mktemp("small") / "data"
    demo.write_raw(data / "raw", n_trials=6, n_total=600, spec_dir=data / "specs")
    return data


def test_parallel_harmonise_writes_byte_identical_derived_data(small, tmp_path, monkeypatch):
    from analysis import pipeline

    monkeypatch.setattr(pipeline, "POOLED_ROWS", 0)  # validated and written in two processes too
    serial = Paths(small, tmp_path / "r")
    harmonise(serial, jobs=1)
    first = {name: serial.derived_file(name).read_bytes() for name in DERIVED_TABLES}
    harmonise(serial, jobs=2)
    for name in DERIVED_TABLES:
        assert serial.derived_file(name).read_bytes() == first[name], name


def test_parallel_run_writes_byte_identical_results(small, tmp_path):
    serial, parallel = Paths(small, tmp_path / "serial"), Paths(small, tmp_path / "parallel")
    harmonise(serial)
    written_serial = fit_all(serial, imputations=2, jobs=1)
    written_parallel = fit_all(parallel, imputations=2, jobs=2)
    names = sorted(p.name for p in written_serial)
    assert names == sorted(p.name for p in written_parallel) and "modifiers.csv" in names
    for name in names:
        if name != "provenance.json":  # records when it was made
            assert (serial.results_dir / name).read_bytes() == (parallel.results_dir / name).read_bytes(), name


def test_imputations_split_over_tasks_equal_one_serial_run(small, tmp_path, monkeypatch):
    """Each imputation has its own random stream, so spreading them over tasks (here one
    imputation per task, in two processes) gives the rows of one serial
    ``multiple_imputation`` call (source of truth; equal up to the ten significant digits the
    results files keep: rtol 1e-9)."""
    import pandas as pd

    from analysis.analyses import fit
    from analysis.analyses.sensitivity import multiple_imputation

    paths = Paths(small, tmp_path / "r")
    harmonise(paths)
    participants, outcomes = fit.load_derived(paths)  # what fit_all reads
    monkeypatch.setattr(fit, "IMPUTATIONS_PER_TASK", 1)
    fit_all(paths, imputations=3, jobs=2)
    written = pd.read_csv(paths.result_file("sensitivity"))
    written = written[written.analysis == "multiple_imputation"].reset_index(drop=True)
    serial = pd.DataFrame(multiple_imputation(participants, outcomes, m=3))
    assert len(written) == len(serial) > 0
    pd.testing.assert_frame_equal(written[serial.columns.drop("note")], serial[serial.columns.drop("note")],
                                  check_dtype=False, rtol=1e-9)


def test_an_input_error_from_a_worker_keeps_file_trial_and_column(tmp_path):
    data = tmp_path / "data"
    demo.write_raw(data / "raw", n_trials=3, n_total=300, spec_dir=data / "specs")
    spec = data / "specs" / "T02.yaml"
    spec.write_text(re.sub(r"(?m)^participant_id: .*$", "participant_id: NO_SUCH_ID", spec.read_text()))
    errors = []
    for jobs in (1, 2):
        with pytest.raises(InputError) as caught:
            harmonise(Paths(data, tmp_path / "r"), jobs=jobs)
        errors.append(caught.value)
    assert str(errors[0]) == str(errors[1])
    assert errors[1].trial == "T02" and errors[1].column == "NO_SUCH_ID"
    again = pickle.loads(pickle.dumps(errors[1]))
    assert (again.file, again.trial, again.column, str(again)) == (errors[1].file, "T02", errors[1].column,
                                                                   str(errors[1]))


def test_small_derived_tables_are_validated_and_written_here():
    """Below ``POOLED_ROWS`` rows in all, starting workers costs more than they save (the
    demo's tables: measured in ``pipeline``), so the tables are handled in this process;
    from there on, in ``jobs`` processes."""
    from analysis import pipeline

    rows = pipeline.POOLED_ROWS
    assert pipeline._jobs_for({"a": range(rows // 2), "b": range(rows // 2 - 1)}, 2) == 1
    assert pipeline._jobs_for({"a": range(rows // 2), "b": range(rows - rows // 2)}, 2) == 2
