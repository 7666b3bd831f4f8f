"""analysis.analyses.fit: running the modifier stage in a second process (``jobs``) changes
nothing in the results (source of truth: the serial run of the same code, byte for byte)."""

from analysis import demo
from analysis.analyses.fit import fit_all
from analysis.paths import Paths
from analysis.pipeline import harmonise


def test_parallel_run_writes_byte_identical_results(tmp_path):
    data = tmp_path / "data"
    demo.write_raw(data / "raw", n_trials=6, n_total=600, spec_dir=data / "specs")
    serial, parallel = Paths(data, tmp_path / "serial"), Paths(data, tmp_path / "parallel")
    harmonise(serial)
    written_serial = fit_all(serial, imputations=2, jobs=1)
    written_parallel = fit_all(parallel, imputations=2, jobs=2)
    names = sorted(p.name for p in written_serial)
    assert names == sorted(p.name for p in written_parallel) and "modifiers.csv" in names
    for name in names:
        if name != "provenance.json":  # records when it was made
            assert (serial.results_dir / name).read_bytes() == (parallel.results_dir / name).read_bytes(), name
