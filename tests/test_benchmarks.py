"""The benchmark reads the pipeline's own stage timings from its log: the names and format
must match what benchmarks/run.py parses (a silent mismatch would leave the table empty)."""

import logging

from analysis import demo
from analysis.analyses.fit import fit_all
from analysis.paths import Paths
from analysis.pipeline import harmonise
from benchmarks.run import STAGE


def test_pipeline_logs_every_stage_the_benchmark_reads(tmp_path, caplog):
    paths = Paths(tmp_path / "data", tmp_path / "results")
    demo.write_raw(paths.raw, n_trials=6, n_total=600, spec_dir=paths.specs)
    with caplog.at_level(logging.INFO, logger="analysis"):
        harmonise(paths)
        fit_all(paths, imputations=2)
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(caplog.text)}
    assert set(stages) == {"harmonise", "overall effects", "modifiers", "sensitivity", "descriptives"}
    assert all(s >= 0 for s in stages.values())
