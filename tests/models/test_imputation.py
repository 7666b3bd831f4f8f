"""analysis.models.imputation: Rubin's rules, the trial regressions behind the draws, and one
imputation of the demo data."""

import numpy as np
import pytest

from analysis.analyses.sensitivity import IMPUTED_RANGES
from analysis.models.imputation import (
    ChainedImputer,
    impute_once,
    linear_trial_regression,
    logistic_trial_regression,
    rubin,
)
from analysis.settings import BINARY_COVARIATES


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
    """Covariates and, where a baseline value was unusable (set missing), the baseline too."""
    p = demo_run.tables["participants"]
    d = p[p.comparison.isin(["exercise", "none_usual_care"])].assign(pain=50.0, function=40.0)
    assert d.pain_bl.isna().any()  # the demo plants out-of-range baseline pain scores
    before = d.copy()
    out = impute_once(d, ["bmi", "heavy_work", "medication"], rng=np.random.default_rng(1), binary=BINARY_COVARIATES,
                      ranges=IMPUTED_RANGES)
    for col in ("bmi", "heavy_work", "medication", "pain_bl"):
        assert out[col].notna().all()
        seen = before[col].notna()
        assert np.array_equal(out.loc[seen, col], before.loc[seen, col])
    assert set(out.heavy_work.unique()) <= {0.0, 1.0}
    assert out.bmi.between(12, 70).all() and out.pain_bl.between(0, 100).all()


def test_one_set_up_drawn_m_times_equals_a_fresh_set_up_per_draw(demo_run):
    """multiple_imputation sets the chained equations up once and draws m times from one
    random stream: a draw must not leave anything behind in the set-up (source of truth: a
    new ChainedImputer per draw on the same stream, value for value)."""
    p = demo_run.tables["participants"]
    d = p[p.comparison.isin(["exercise", "none_usual_care"])].assign(pain=50.0, function=40.0)
    covs = ["bmi", "heavy_work", "medication"]
    kw = dict(binary=BINARY_COVARIATES, ranges=IMPUTED_RANGES, iterations=2)
    shared = ChainedImputer(d, covs, **kw)
    rng_shared, rng_fresh = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        once, fresh = shared.draw(rng_shared), ChainedImputer(d, covs, **kw).draw(rng_fresh)
        for v in shared.variables:
            np.testing.assert_array_equal(once[v], fresh[v])
    assert np.isnan(shared.data[:, shared.col["bmi"]]).any()  # the set-up still holds the missing values
