"""analysis.analyses.arrays: the numpy analysis samples are the samples CONTRACT.md defines
(source of truth: samples.complete_cases and pandas' group means and variances on the same
demo data), row for row."""

import numpy as np
import pandas as pd
import pytest

from analysis.analyses.arrays import Arms, Sample
from analysis.analyses.modifiers import modifier_fits, modifier_tables, trials_varying
from analysis.analyses.samples import comparison_participants, complete_cases, window_frame
from analysis.settings import COMPARISONS, COVARIATES

OUTCOMES = ("pain", "function", "recovered")


@pytest.fixture(scope="module")
def frames(demo_run):
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    return {w: window_frame(p, o, w) for w in ("short", "long")}


@pytest.mark.parametrize("comparison", COMPARISONS)
@pytest.mark.parametrize("window", ["short", "long"])
def test_masked_samples_equal_pandas_complete_cases(frames, comparison, window):
    arms_frame = comparison_participants(frames[window], comparison)
    # rows in a shuffled order: Arms must sort them itself
    arms = Arms(arms_frame.sample(frac=1, random_state=1), [*OUTCOMES, "pain_bl", "function_bl", *COVARIATES])
    for outcome in OUTCOMES:
        for covariate in (None, *COVARIATES):
            expected = complete_cases(arms_frame, outcome, covariate)
            got = arms.complete(outcome, covariate)
            assert list(got.trial) == list(expected.trial_id)
            for column in got.columns:
                if column not in ("xbar", "xc"):
                    np.testing.assert_array_equal(got[column], expected[column].to_numpy(float))
            assert got.k == expected.trial_id.nunique() and len(got) == len(expected)
            if covariate is not None:
                # group means in another summation order: equal to rounding (1e-12 of the values)
                xbar = expected.groupby("trial_id")[covariate].transform("mean").to_numpy()
                np.testing.assert_allclose(got["xbar"], xbar, rtol=1e-12)


def test_trial_variances_and_varying_flags_equal_pandas(frames):
    d = complete_cases(comparison_participants(frames["short"], "none_usual_care"), "pain", "bmi")
    s = Sample.from_frame(d, "bmi")
    d = d.assign(xc=s["xc"])
    by_arm = d.groupby(["trial_id", "exercise"]).xc.var().unstack()
    for arm, rows in ((1, s["exercise"] == 1), (0, s["exercise"] == 0)):
        np.testing.assert_allclose(s.trial_variances(s["xc"], rows), by_arm[arm].reindex(s.labels).to_numpy(),
                                   rtol=1e-10, equal_nan=True)
    # a trial with one participant in an arm has no variance there (NaN, as pandas): not varying
    one = Sample(np.array(["A"] * 5 + ["B"] * 5), {"exercise": np.r_[1, 0, 0, 0, 0, 1, 1, 0, 0, 1.0],
                                                   "x": np.arange(10.0)}, "x")
    assert np.isnan(one.trial_variances(one["xc"], one["exercise"] == 1)[0])
    flags = trials_varying(one)
    assert list(flags.index) == ["A", "B"] and list(flags) == [False, True]


def test_modifier_parts_in_any_order_give_the_same_tables(demo_run):
    """fit_all fits the modifiers as separate tasks (comparison x outcome) in whatever order
    the processes finish; the tables are assembled in a fixed order."""
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    kw = dict(outcomes_list=("pain",), windows=["short"])
    whole = modifier_tables([modifier_fits(p, o, COMPARISONS, **kw)])
    parts = [modifier_fits(p, o, (c,), **kw) for c in reversed(COMPARISONS)]
    split = modifier_tables(parts)
    pd.testing.assert_frame_equal(whole[0], split[0])
    pd.testing.assert_frame_equal(whole[1], split[1])
    assert list(split[0].comparison.drop_duplicates()) == list(COMPARISONS)


def test_a_sample_is_grouped_by_trial(frames):
    """Per-trial codes come from where the trial label changes, so rows must be grouped:
    from_frame sorts a frame that is not (stable: each trial keeps its order), and a Sample
    built from ungrouped rows is refused rather than miscounted."""
    d = complete_cases(comparison_participants(frames["short"], "none_usual_care"), "pain")
    shuffled = Sample.from_frame(d.sample(frac=1, random_state=2))
    assert shuffled.k == d.trial_id.nunique() and list(shuffled.labels) == sorted(d.trial_id.unique())
    np.testing.assert_array_equal(shuffled.counts, d.groupby("trial_id").size().to_numpy())
    with pytest.raises(ValueError, match="grouped by trial"):
        Sample(np.array(["A", "B", "A"]), {"exercise": np.zeros(3)})
