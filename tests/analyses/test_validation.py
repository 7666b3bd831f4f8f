"""analysis.analyses.validation and the validation appendix's agreement table.

Source of truth: the published values of metafor, lme4, lmerTest and glmer
(analysis/book/reference_values.py). The estimators themselves are tested against them in
tests/models with a tolerance per quantity; here the results file that the book shows must
hold the same numbers. Tolerance 1e-5 relative: the published values carry six decimals
(dat.bcg) or more, so their rounding alone is up to about 3e-6 relative; observed
differences are at most 3e-6, except Paule-Mandel's tau^2 (below)."""

import pandas as pd
import pytest

from analysis.analyses.validation import reference_estimates
from analysis.book.reference_values import CHECKS
from analysis.book.report import Report
from analysis.book.validation import reference_agreement, truth_recovery

# metafor solves Paule-Mandel with uniroot's default tolerance (about 1.2e-4 absolute on
# tau^2 = 0.318, i.e. 4e-4 relative; see tests/models/test_meta.py). Observed: 8e-5.
LOOSER = {"bcg.PM.tau2": 4e-4}


@pytest.fixture(scope="module")
def ours():
    return reference_estimates().set_index("check").value


def test_every_shown_check_is_computed(ours):
    assert set(ours.index) == set(CHECKS)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_reference_estimates_agree_with_published_values(ours, check):
    published = CHECKS[check][2]
    assert ours[check] == pytest.approx(published, rel=LOOSER.get(check, 1e-5))


def test_agreement_table_reads_the_results(demo_results):
    rep = Report(demo_results.paths)
    table = reference_agreement(rep)
    assert len(table) == len(CHECKS)
    assert (table["Relative difference"] < 4e-4).all()
    written = pd.read_csv(demo_results.paths.result_file("reference_checks"))
    assert table["This project"].tolist() == [written.set_index("check").value[c] for c in CHECKS]


def test_truth_recovery_uses_the_truth_recorded_with_the_synthetic_data(demo_results, tmp_path):
    """The generator records its truth beside the raw files; provenance carries it into the
    results, and the appendix sets the estimates beside it. Real data have no truth."""
    from analysis import demo

    rep = Report(demo_results.paths)
    recovery = truth_recovery(rep)
    assert len(recovery) == len(demo.truth_table()) == 16
    assert recovery.Truth.tolist() == [t["truth"] for t in demo.truth_table()]
    real = Report(demo_results.paths)
    real.__dict__["provenance"] = {"demo_truth": None}
    assert truth_recovery(real) is None
