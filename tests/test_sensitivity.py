"""analysis.sensitivity and analysis.imputation."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import demo
from analysis.imputation import impute_once, linear_trial_regression, logistic_trial_regression, rubin
from analysis.modifiers import fit_modifier
from analysis.paths import Paths
from analysis.sensitivity import (PRIMARY, improvement_recovery, influence_summary, leave_one_out,
                                  multiple_imputation, two_stage_rows, window_average_outcomes)


def test_rubin_hand_computed():
    """q = (1, 2, 3), u = 0.5 each, m = 3 (by hand): qbar = 2, W = 0.5, B = 1,
    T = 0.5 + (4/3) 1 = 1.8333, SE = 1.35401."""
    r = rubin([1, 2, 3], [0.5, 0.5, 0.5], df_complete=100)
    assert r["estimate"] == pytest.approx(2.0)
    assert r["within"] == pytest.approx(0.5) and r["between"] == pytest.approx(1.0)
    assert r["se"] == pytest.approx(np.sqrt(0.5 + 4 / 3))


def test_barnard_rubin_df_formula():
    """Barnard and Rubin (1999), eq. 3: nu = (1/nu_old + 1/nu_obs)^-1, with
    nu_old = (m-1)/lambda^2 and nu_obs = (nu_com+1)/(nu_com+3) nu_com (1 - lambda)."""
    q, u, m, nu_com = np.array([0.2, 0.5, 0.1, 0.4, 0.3]), np.array([0.04, 0.05, 0.03, 0.05, 0.04]), 5, 40.0
    t = u.mean() + (1 + 1 / m) * q.var(ddof=1)
    lam = (1 + 1 / m) * q.var(ddof=1) / t
    nu_old = (m - 1) / lam**2
    nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam)
    r = rubin(q, u, df_complete=nu_com)
    assert r["df"] == pytest.approx(1 / (1 / nu_old + 1 / nu_obs))
    assert r["fmi"] == pytest.approx((r["df"] + 1) / (r["df"] + 3) * lam + 2 / (r["df"] + 3))
    # with no between-imputation variance the df is the complete-data df
    assert rubin([1.0, 1.0], [0.2, 0.2], df_complete=30)["df"] == pytest.approx(30 * 31 / 33)


def _implied_joint_covariance(reg):
    """The (alpha, beta) covariance that TrialRegression.draw samples from, formed densely."""
    cross = reg.lever @ reg.beta_cov
    top = np.diag(reg.alpha_cond_var) + cross @ reg.lever.T
    return np.block([[top, cross], [cross.T, reg.beta_cov]])


def _trial_data(seed, k=7, n=400, p=3):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, n)
    z = rng.normal(size=(n, p))
    lin = 0.3 * codes + z @ np.linspace(1, -1, p)
    return codes, z, lin, rng, np.column_stack([np.eye(k)[codes], z])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_trial_regression_equals_indicator_regression(seed):
    """Second implementation: least squares on k trial indicator columns (what the
    imputation did before it had to scale to 1,000 trials). Frisch-Waugh-Lovell makes the
    two identical, so the tolerance is rounding (1e-10)."""
    codes, z, lin, rng, x = _trial_data(seed)
    y = lin + rng.normal(size=len(lin))
    reg = linear_trial_regression(codes, 7, z, y)
    coef, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
    inv = np.linalg.inv(x.T @ x)
    np.testing.assert_allclose(np.r_[reg.alpha, reg.beta], coef, atol=1e-10)
    np.testing.assert_allclose(_implied_joint_covariance(reg), inv, atol=1e-10)
    np.testing.assert_allclose(reg.alpha_var, np.diag(inv)[:7], atol=1e-10)
    assert reg.rss == pytest.approx(rss[0], rel=1e-10) and reg.dof == len(y) - x.shape[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_trial_regression_equals_dense_newton(seed):
    """Second implementation: Newton's method on the dense (k + p) x (k + p) Hessian with
    trial indicator columns and the same ridge. Same optimum and inverse Hessian to 1e-8
    (both iterate to steps below 1e-8)."""
    codes, z, lin, rng, x = _trial_data(seed)
    y = (rng.random(len(lin)) < 1 / (1 + np.exp(-(lin - 1)))).astype(float)
    y[codes == 3] = 1.0  # a separated trial: the ridge keeps its intercept finite in both
    reg = logistic_trial_regression(codes, 7, z, y)
    beta, pen = np.zeros(x.shape[1]), 1e-4 * np.eye(x.shape[1])
    for _ in range(100):
        mu = 1 / (1 + np.exp(-x @ beta))
        hess = (x * (mu * (1 - mu))[:, None]).T @ x + pen
        beta += np.linalg.solve(hess, x.T @ (y - mu) - pen @ beta)
    mu = 1 / (1 + np.exp(-x @ beta))
    inv = np.linalg.inv((x * (mu * (1 - mu))[:, None]).T @ x + pen)
    np.testing.assert_allclose(np.r_[reg.alpha, reg.beta], beta, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(_implied_joint_covariance(reg), inv, rtol=1e-6, atol=1e-8)


def test_trial_regression_draws_have_the_posterior_moments():
    """Simulation check of TrialRegression.draw: 20,000 draws reproduce the mean and the
    joint covariance (Monte Carlo error of a variance with 20,000 draws is about 1 %: 5 %
    relative tolerance on the diagonal, 0.05 absolute on correlations)."""
    codes, z, lin, rng, x = _trial_data(5, k=4, n=120, p=2)
    reg = linear_trial_regression(codes, 4, z, lin + rng.normal(size=len(lin)))
    draws = np.array([np.r_[reg.draw(rng, scale=2.0)] for _ in range(20_000)])
    target = 2.0 * _implied_joint_covariance(reg)
    sd = np.sqrt(np.diag(target))
    np.testing.assert_allclose(draws.mean(axis=0), np.r_[reg.alpha, reg.beta], atol=4 * sd.max() / np.sqrt(20_000))
    np.testing.assert_allclose(draws.var(axis=0), np.diag(target), rtol=0.05)
    np.testing.assert_allclose(np.corrcoef(draws.T), target / np.outer(sd, sd), atol=0.05)


def test_imputation_fills_only_missing_values_and_respects_ranges(demo_run):
    p = demo_run.tables["participants"]
    d = p[p.comparison.isin(["exercise", "none_usual_care"])].assign(pain=50.0, function=40.0)
    before = d.copy()
    out = impute_once(d, ["bmi", "heavy_work", "medication"], rng=np.random.default_rng(1))
    for col in ("bmi", "heavy_work", "medication"):
        assert out[col].notna().all()
        seen = before[col].notna()
        assert np.array_equal(out.loc[seen, col], before.loc[seen, col])
    assert set(out.heavy_work.unique()) <= {0.0, 1.0}
    assert out.bmi.between(12, 70).all()


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
        shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "specs", paths.specs)
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
        from analysis.samples import outcome_sample
        trials = outcome_sample(p, o, c, out, w).trial_id.unique()
        assert sorted(sub.analysis) == sorted(f"leave_out:{t}" for t in trials)
    # plant an outlier: exercise participants of T06 much better on short-term pain
    o2 = o.copy()
    ex = set(p.loc[(p.trial_id == "T06") & (p.exercise == 1), "participant_id"])
    hit = (o2.trial_id == "T06") & o2.participant_id.isin(ex) & (o2.window == "short")
    o2.loc[hit, "pain"] = (o2.loc[hit, "pain"] - 30).clip(lower=0)
    from analysis.fit import overall_one
    with_outlier = overall_one(p, o2, "none_usual_care", "pain", "short")
    loo = pd.DataFrame(leave_one_out(p, o2))
    without = loo[(loo.analysis == "leave_out:T06") & (loo.comparison == "none_usual_care") & (loo.outcome == "pain")].iloc[0]
    assert without.estimate > with_outlier["estimate"]  # removing the planted trial moves the effect back towards 0
    est = pd.DataFrame([with_outlier])
    infl = influence_summary(loo[(loo.comparison == "none_usual_care") & (loo.outcome == "pain")], est)
    assert infl.iloc[0].largest_estimate_change_trial == "T06"


def test_two_stage_rows_cover_every_overall_result(demo_run):
    rows = pd.DataFrame(two_stage_rows(demo_run.tables["participants"], demo_run.tables["outcomes"], "DL"))
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
    out = impute_once(d, ["bmi", "employed"], rng=np.random.default_rng(1))
    assert out.employed.isna().all() and out.bmi.notna().all()
    rows = pd.DataFrame(multiple_imputation(p, o, m=2, comparisons=("none_usual_care",), covariates=("bmi", "employed")))
    empty = rows[rows.term == "exercise:employed"]
    assert len(empty) == 2 and empty.estimate.isna().all()
    assert empty.note.str.contains("no trial of this comparison measured employed").all()
    assert rows[rows.term == "exercise:bmi"].estimate.notna().all()
