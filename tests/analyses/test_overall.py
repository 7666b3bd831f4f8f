"""Overall effects on the demo data and the first (per-trial) stage of the two-stage check."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.analyses.overall import RESULT_COLUMNS, overall_estimates, overall_one, per_trial_effects, two_stage
from analysis.analyses.samples import comparison_participants, outcome_sample
from analysis.demo import TRUTH
from tests import reference as ref


@pytest.fixture(scope="module")
def estimates(demo_run):
    return overall_estimates(demo_run.tables["participants"], demo_run.tables["outcomes"])


def test_every_comparison_outcome_and_window(estimates):
    assert list(estimates.columns) == RESULT_COLUMNS
    assert len(estimates) == 27
    assert set(estimates.comparison) == {"none_usual_care", "other_conservative", "any_non_exercise"}
    assert estimates.estimate.notna().all() and estimates.converged.all()
    assert set(estimates.loc[estimates.outcome == "recovered", "scale"]) == {"log_or"}


@pytest.mark.parametrize("outcome", ["pain", "function"])
@pytest.mark.parametrize("comparison", ["none_usual_care", "other_conservative"])
def test_short_term_ci_covers_generator_truth(estimates, outcome, comparison):
    """Hayden et al. calibration: -10.7 pain / -10.2 function vs no treatment/usual care."""
    r = estimates.query("comparison == @comparison and outcome == @outcome and window == 'short'").iloc[0]
    truth = TRUTH["theta"][(comparison, outcome)]
    assert r.ci_low <= truth <= r.ci_high
    assert r.df < r.n_participants  # Satterthwaite df reflects the number of trials, not participants


def test_counts_are_those_of_the_model_frame(demo_run, estimates):
    """n_trials/n_participants equal the complete-case sample CONTRACT.md defines,
    recomputed here directly with pandas."""
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    r = estimates.query("comparison == 'none_usual_care' and outcome == 'pain' and window == 'short'").iloc[0]
    trials = p.groupby("trial_id").comparison.agg(set)
    eligible = trials[trials.map(lambda s: "exercise" in s and "none_usual_care" in s)].index
    sub = p[p.trial_id.isin(eligible) & p.comparison.isin(["exercise", "none_usual_care"])]
    sub = sub.merge(o[o.window == "short"], on=["trial_id", "participant_id"]).dropna(subset=["pain", "pain_bl"])
    assert (r.n_trials, r.n_participants) == (sub.trial_id.nunique(), len(sub))


def test_three_arm_trial_contributes_to_both_comparisons(demo_run):
    p = demo_run.tables["participants"]
    nuc = comparison_participants(p, "none_usual_care")
    oc = comparison_participants(p, "other_conservative")
    assert "T27" in set(nuc.trial_id) and "T27" in set(oc.trial_id)
    assert set(nuc[nuc.trial_id == "T27"].comparison) == {"exercise", "none_usual_care"}
    anyc = comparison_participants(p, "any_non_exercise")
    assert set(anyc[anyc.trial_id == "T27"].comparison) == {"exercise", "none_usual_care", "other_conservative"}


@pytest.mark.parametrize("comparison", ["none_usual_care", "other_conservative", "any_non_exercise"])
def test_comparison_participants_are_the_eligible_trials_arms(demo_run, comparison):
    """Source of truth: CONTRACT.md's definition written with pandas sets. The trials with an
    exercise arm and an arm of the comparison (any non-exercise arm for any_non_exercise), and
    those arms' participants, the same rows in the same order; a row without a trial is in none."""
    p = demo_run.tables["participants"]
    p = pd.concat([p, p.iloc[[0]].assign(trial_id=None)], ignore_index=True)
    wanted = (lambda arm: arm != "exercise") if comparison == "any_non_exercise" else (lambda arm: arm == comparison)
    arms = p.groupby("trial_id").comparison.agg(set)
    eligible = arms[arms.map(lambda s: "exercise" in s and any(wanted(a) for a in s))].index
    expected = p[p.trial_id.isin(eligible) & ((p.comparison == "exercise") | wanted(p.comparison))]
    pd.testing.assert_frame_equal(comparison_participants(p, comparison), expected)


def test_per_trial_effects_equal_lm_reference():
    """Per-trial lm(y ~ y0 + treat) estimates and variances (../shared/data/README.md),
    printed to 6 decimals."""
    d = ref.shared_csv("onestage_reference.csv").rename(columns={"treat": "exercise", "y": "pain", "y0": "pain_bl"})
    eff = per_trial_effects(d, "pain").set_index("trial_id")
    for tid, (est, var) in ref.TWO_STAGE_YI.items():
        assert eff.loc[tid, "estimate"] == pytest.approx(est, abs=1e-6)
        assert eff.loc[tid, "variance"] == pytest.approx(var, abs=1e-6)
    pooled = two_stage(eff.reset_index(), hartung_knapp=False)
    assert pooled.estimate == pytest.approx(ref.TWO_STAGE["REML"]["estimate"], abs=1e-5)


def test_per_trial_effects_equal_statsmodels_ols(demo_run):
    sample = outcome_sample(
        demo_run.tables["participants"], demo_run.tables["outcomes"], "none_usual_care", "function", "short"
    )
    eff = per_trial_effects(sample, "function").set_index("trial_id")
    for tid in eff.index[:5]:
        m = smf.ols("function ~ function_bl + exercise", sample[sample.trial_id == tid]).fit()
        assert eff.loc[tid, "estimate"] == pytest.approx(m.params["exercise"], rel=1e-9)
        assert eff.loc[tid, "variance"] == pytest.approx(m.bse["exercise"] ** 2, rel=1e-9)


def test_one_and_two_stage_agree_on_demo(estimates, demo_run):
    """Both estimate the same effect; on 17 trials they differ by well under one SE."""
    r = estimates.query("comparison == 'none_usual_care' and outcome == 'pain' and window == 'short'").iloc[0]
    sample = outcome_sample(
        demo_run.tables["participants"], demo_run.tables["outcomes"], "none_usual_care", "pain", "short"
    )
    ts = two_stage(per_trial_effects(sample, "pain"))
    assert abs(ts.estimate - r.estimate) < r.se


def test_no_data_at_a_window_gives_a_flagged_row(demo_run):
    p = demo_run.tables["participants"]
    o = demo_run.tables["outcomes"]
    o = o[o.window != "long"]
    row = overall_one(p, o, "none_usual_care", "pain", "long")
    assert np.isnan(row["estimate"]) and row["converged"] is False and "not estimable" in row["note"]
    row = overall_one(p, o, "none_usual_care", "recovered", "long")
    assert "not estimable" in row["note"] and row["n_trials"] == 0
