"""analysis.analyses.sensitivity: every sensitivity analysis, multiple imputation included."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import demo
from analysis.analyses.modifiers import fit_modifier
from analysis.analyses.overall import trial_effects
from analysis.analyses.sensitivity import (
    PRIMARY,
    improvement_recovery,
    influence_summary,
    leave_one_out,
    multiple_imputation,
    two_stage_rows,
    window_average_outcomes,
)
from analysis.models.imputation import (
    impute_once,
)
from analysis.paths import Paths
from analysis.settings import BINARY_COVARIATES
from tests.conftest import SPECS


def test_mi_recovers_truth_at_least_as_well_as_complete_case():
    """Modifiers with systematic missingness (heavy_work, medication, bmi) vs no
    treatment/usual care, short term, pain and function, over three seeds of the demo.
    'As well' means: mean absolute error of MI at most that of complete case plus 10 % (Monte
    Carlo tolerance), and mean 95% CI width at most 5 % wider than complete case."""
    from analysis.pipeline import harmonise

    truth = {"heavy_work": 6.0, "medication": -5.0, "bmi": 0.6}
    err_cc, err_mi, w_cc, w_mi = [], [], [], []
    for seed in (1, 2, 3):
        tmp = Path(tempfile.mkdtemp())
        paths = Paths(tmp / "data", tmp / "results")
        shutil.copytree(SPECS, paths.specs)
        demo.write_raw(paths.raw, seed=seed)
        t = harmonise(paths)
        p, o = t["participants"], t["outcomes"]
        mi = pd.DataFrame(multiple_imputation(p, o, m=10, seed=seed, comparisons=("none_usual_care",),
                                              covariates=tuple(truth)))
        for cov, value in truth.items():
            for outcome in ("pain", "function"):
                cc = fit_modifier(p, o, "none_usual_care", outcome, "short", cov)[0][0]
                r = mi[(mi.outcome == outcome) & (mi.term == f"exercise:{cov}")].iloc[0]
                scale = 1.0 if cov != "bmi" else 10.0  # put BMI (per kg/m2) on the others' scale
                err_cc.append(abs(cc["estimate"] - value) * scale)
                err_mi.append(abs(r.estimate - value) * scale)
                w_cc.append((cc["ci_high"] - cc["ci_low"]) * scale)
                w_mi.append((r.ci_high - r.ci_low) * scale)
                assert r.n_participants >= cc["n_participants"]  # MI keeps every participant
        shutil.rmtree(tmp)
    assert np.mean(err_mi) <= 1.10 * np.mean(err_cc)
    assert np.mean(w_mi) <= 1.05 * np.mean(w_cc)


def test_leave_one_out_rows_and_planted_outlier(demo_run):
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    rows = pd.DataFrame(leave_one_out(p, o))
    for c, out, w in PRIMARY:
        sub = rows[(rows.comparison == c) & (rows.outcome == out)]
        from analysis.analyses.samples import outcome_sample
        trials = outcome_sample(p, o, c, out, w).trial_id.unique()
        assert sorted(sub.analysis) == sorted(f"leave_out:{t}" for t in trials)
    # plant an outlier: exercise participants of T06 much better on short-term pain
    o2 = o.copy()
    ex = set(p.loc[(p.trial_id == "T06") & (p.exercise == 1), "participant_id"])
    hit = (o2.trial_id == "T06") & o2.participant_id.isin(ex) & (o2.window == "short")
    o2.loc[hit, "pain"] = (o2.loc[hit, "pain"] - 30).clip(lower=0)
    from analysis.analyses.overall import overall_one
    with_outlier = overall_one(p, o2, "none_usual_care", "pain", "short")
    loo = pd.DataFrame(leave_one_out(p, o2))
    without = loo[
        (loo.analysis == "leave_out:T06") & (loo.comparison == "none_usual_care") & (loo.outcome == "pain")
    ].iloc[0]
    assert without.estimate > with_outlier["estimate"]  # removing the planted trial moves the effect back towards 0
    est = pd.DataFrame([with_outlier])
    infl = influence_summary(loo[(loo.comparison == "none_usual_care") & (loo.outcome == "pain")], est)
    assert infl.iloc[0].largest_estimate_change_trial == "T06"


def test_two_stage_rows_cover_every_overall_result(demo_run):
    effects = trial_effects(demo_run.tables["participants"], demo_run.tables["outcomes"])
    rows = pd.DataFrame(two_stage_rows(effects, "DL"))
    assert len(rows) == 27 and set(rows.analysis) == {"two_stage_dl"}
    assert (rows.df == rows.n_trials - 1)[rows.estimate.notna()].all()  # Hartung-Knapp t(k-1)


def test_alternative_definitions(demo_run):
    visits = pd.read_csv(demo_run.paths.derived_file("visits"), dtype={"participant_id": str})
    avg = window_average_outcomes(visits)
    # a participant seen twice in a window gets the mean of both visits
    multi = visits.groupby(["trial_id", "participant_id", "window"]).filter(lambda g: len(g) > 1).head(2)
    key = tuple(multi.iloc[0][["trial_id", "participant_id", "window"]])
    got = avg.set_index(["trial_id", "participant_id", "window"]).loc[key]
    assert got.pain == pytest.approx(multi.pain.mean())
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    imp = improvement_recovery(p, o)
    row = imp.merge(p, on=["trial_id", "participant_id"]).dropna(subset=["recovered"]).iloc[0]
    assert row.recovered == float(row.pain <= 0.7 * row.pain_bl and row.function <= 0.7 * row.function_bl)


def test_sensitivity_file_has_every_analysis(demo_results):
    s = pd.read_csv(demo_results.paths.result_file("sensitivity"))
    names = set(s.analysis.str.split(":").str[0])
    assert {"two_stage_reml", "two_stage_dl", "two_stage_pm", "common_effect", "trial_residual_variances", "leave_out",
            "low_risk_of_bias", "window_average", "recovery_improvement", "multiple_imputation"} <= names
    mi = s[s.analysis == "multiple_imputation"]
    assert mi.fmi.between(0, 1).all() and (mi.df > 0).all()


def test_covariate_no_trial_measured_is_reported_not_imputed(demo_run):
    """Real data: a comparison in which no trial measured a covariate. There is nothing to
    impute it from, so it stays missing, the other variables are imputed without it and the
    multiple-imputation rows for its interaction say why they are empty."""
    p = demo_run.tables["participants"].assign(employed=np.nan)
    o = demo_run.tables["outcomes"]
    d = p[p.comparison.isin(["exercise", "none_usual_care"])].assign(pain=50.0, function=40.0)
    out = impute_once(d, ["bmi", "employed"], rng=np.random.default_rng(1), binary=BINARY_COVARIATES)
    assert out.employed.isna().all() and out.bmi.notna().all()
    rows = pd.DataFrame(
        multiple_imputation(p, o, m=2, comparisons=("none_usual_care",), covariates=("bmi", "employed"))
    )
    empty = rows[rows.term == "exercise:employed"]
    assert len(empty) == 2 and empty.estimate.isna().all()
    assert empty.note.str.contains("no trial of this comparison measured employed").all()
    assert rows[rows.term == "exercise:bmi"].estimate.notna().all()


def test_overall_and_refitting_analyses_join_each_window_once(demo_run, monkeypatch):
    """fit_all's overall task keeps the joined windows (WindowArms) for the overall, per-trial,
    common-effect, trial-variance and leave-one-out analyses. Source of truth: the same
    analyses each joining for itself (the rows must be equal exactly), and a count of joins."""
    from analysis.analyses import overall
    from analysis.analyses.overall import WindowArms, overall_estimates, overall_rows
    from analysis.analyses.samples import window_frame
    from analysis.settings import WINDOWS

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    alone = (overall_estimates(p, o), trial_effects(p, o), leave_one_out(p, o),
             overall_rows(p, o, overall.ALL_OVERALL[:6], analysis="common_effect", random_effect=False))
    joins = []
    monkeypatch.setattr(overall, "window_frame", lambda *a: joins.append(a[2]) or window_frame(*a))
    windows = WindowArms(p, o)
    shared = (overall_estimates(p, o, windows=windows), trial_effects(p, o, windows=windows),
              leave_one_out(p, o, windows),
              overall_rows(p, o, overall.ALL_OVERALL[:6], analysis="common_effect", random_effect=False,
                           windows=windows))
    assert sorted(joins) == sorted(w.name for w in WINDOWS)
    for mine, theirs in zip(shared, alone):
        pd.testing.assert_frame_equal(pd.DataFrame(mine), pd.DataFrame(theirs), check_exact=True)


def test_low_risk_and_improvement_analyses_from_the_primary_joins_equal_their_own(demo_run):
    """sensitivity_estimates takes the low-risk-of-bias and improvement-recovery windows from
    the primary windows' joins (rows of the low-risk trials; recovery recomputed from the
    joined outcomes and baselines). Source of truth: each analysis on its own data, joining
    for itself (low-risk trials' participants and outcomes; improvement_recovery's outcomes):
    the rows must be equal exactly."""
    from analysis.analyses.overall import ALL_OVERALL, overall_rows
    from analysis.analyses.sensitivity import sensitivity_estimates

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    trials = demo_run.tables["trials"]
    visits = pd.read_csv(demo_run.paths.derived_file("visits"), dtype={"participant_id": str})
    low = set(trials.loc[trials.risk_of_bias == "low", "trial_id"])
    assert 0 < len(low) < len(trials)
    recovered = [r for r in ALL_OVERALL if r[1] == "recovered"]
    alone = pd.concat([
        pd.DataFrame(overall_rows(p[p.trial_id.isin(low)], o[o.trial_id.isin(low)], ALL_OVERALL,
                                  analysis="low_risk_of_bias")),
        pd.DataFrame(overall_rows(p, improvement_recovery(p, o), recovered, analysis="recovery_improvement"))],
        ignore_index=True)
    sens = sensitivity_estimates(p, o, visits, trials, imputed=[])
    mine = sens[sens.analysis.isin(["low_risk_of_bias", "recovery_improvement"])].reset_index(drop=True)
    assert mine.drop(columns=list(alone.columns)).isna().all().all()  # the imputation-only columns
    pd.testing.assert_frame_equal(mine[alone.columns], alone, check_exact=True)


def test_completed_data_fits_equal_each_model_fitted_alone(demo_run):
    """The imputation refits share one pass of per-trial cross-products
    (``completed_data_fits``). Source of truth: each model fitted on its own, as the modifier
    analyses fit them (``continuous_stats``, ``continuous_design`` on the sample centred on
    the covariate). The two differ only in the rounding of the per-trial products, so
    estimates, variances, df and tau^2 agree to 1e-9 relative (the REML optimiser's own
    precision is far coarser than the 1e-15 perturbation it sees)."""
    from analysis.analyses.arrays import Sample
    from analysis.analyses.modifiers import continuous_design
    from analysis.analyses.overall import continuous_stats
    from analysis.analyses.sensitivity import IMPUTED_RANGES, _mi_sample, completed_data_fits
    from analysis.models.imputation import ChainedImputer
    from analysis.models.onestage import fit_reml

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    base = _mi_sample(p, o, "none_usual_care")
    covs = ["bmi", "heavy_work", "age"]
    imputer = ChainedImputer(base, covs, binary=BINARY_COVARIATES, ranges=IMPUTED_RANGES, iterations=2)
    d = Sample(base.trial_id.to_numpy(), imputer.draw(np.random.default_rng(3)))
    fits = completed_data_fits(d, covs)
    assert [key for key, _, _ in fits] == [(out, term) for out in ("pain", "function")
                                          for term in ["exercise"] + [f"exercise:{c}" for c in covs]]
    for (outcome, term), got, j in fits:
        cov = term.partition(":")[2]
        alone = fit_reml(continuous_design(d.centred_on(cov), outcome, cov) if cov
                         else continuous_stats(d, outcome))
        assert got.terms == alone.terms and j == (1 if cov else 0)
        for a, b in [(got.coef[j], alone.coef[j]), (got.cov[j, j], alone.cov[j, j]), (got.df[j], alone.df[j]),
                     (got.tau2, alone.tau2)]:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
        assert (got.n_trials, got.n_participants) == (alone.n_trials, alone.n_participants)
