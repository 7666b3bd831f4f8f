"""Snapshot tests of the main tables' data (syrupy): any change to a published number is
seen in review. Values rounded to 2 decimals so that floating-point noise cannot flip them."""

import numpy as np
import pandas as pd

from analysis.analyses.descriptives import baseline_aggregates, baseline_summary
from analysis.book import tables
from analysis.book.report import Report
from analysis.io import read_csv


def _records(df: pd.DataFrame):
    return df.round(2).replace({np.nan: None}).to_dict("records")


def test_overall_summary_snapshot(demo_results, snapshot):
    assert (
        _records(tables.overall_summary_data(Report(demo_results.paths), ("pain", "function", "recovered"))) == snapshot
    )


def test_baseline_table_snapshot(demo_results, snapshot):
    assert _records(tables.baseline_by_arm_data(Report(demo_results.paths))) == snapshot


def test_modifier_table_snapshot(demo_results, snapshot):
    assert _records(tables.modifier_table_data(Report(demo_results.paths), "none_usual_care", "short")) == snapshot


def test_baseline_table_suppresses_small_cells(demo_results):
    rep = Report(demo_results.paths)
    p = read_csv(demo_results.paths.derived_file("participants"))
    p.loc[p.comparison == "other_conservative", "heavy_work"] = 0.0
    p.loc[p.index[p.comparison == "other_conservative"][:3], "heavy_work"] = 1.0  # 3 < 5
    rep.__dict__["baseline"] = baseline_summary(baseline_aggregates(p))
    row = tables.baseline_by_arm_data(rep).set_index("Characteristic").loc["Heavy physical work demands, n (%)"]
    assert row["Other conservative"].startswith("suppressed")
