"""analysis.models.imputation: Rubin's rules, the trial regressions behind the draws, and one
imputation of the demo data."""

import numpy as np
import pytest

from analysis.analyses.sensitivity import IMPUTED_RANGES
from analysis.models.imputation import (
    ChainedImputer,
    RowChunks,
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
@pytest.mark.parametrize("in_trial_order", [False, True])
@pytest.mark.parametrize("chunk_rows", [2048, 7])
def test_logistic_trial_regression_equals_dense_newton(seed, in_trial_order, chunk_rows, monkeypatch):
    """Second implementation: Newton's method on the dense (k + p) x (k + p) Hessian with
    trial indicator columns and the same ridge. Same optimum and inverse Hessian to 1e-8
    (both iterate to steps below 1e-8). The rows come shuffled (sorted by trial inside the
    fit) or in trial order, in one run of rows or in runs of 7 (``RowChunks``: most runs
    then hold the end of one trial and the start of the next)."""
    monkeypatch.setattr(RowChunks, "CHUNK_ROWS", chunk_rows)
    codes, z, lin, rng, x = _trial_data(seed)
    y = (rng.random(len(lin)) < 1 / (1 + np.exp(-(lin - 1)))).astype(float)
    y[codes == 3] = 1.0  # a separated trial: the ridge keeps its intercept finite in both
    if in_trial_order:
        order = np.argsort(codes, kind="stable")
        codes, z, y, x = codes[order], z[order], y[order], x[order]
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
    """imputed_fits sets the chained equations up once and draws from it once per imputation:
    a draw must not leave anything behind in the set-up (source of truth: a new
    ChainedImputer per draw on the same stream, value for value)."""
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


@pytest.mark.parametrize("shuffled", [False, True])
def test_imputations_drawn_side_by_side_equal_each_drawn_alone(demo_run, shuffled, monkeypatch):
    """ChainedImputer.draws takes every step of chained equations for several imputations at
    once. Source of truth: each imputation drawn alone from its own generator (the arithmetic
    of the draws before they were taken side by side; the demo's and the 100 / 50,000
    results are byte-identical to that code's), value for value (no tolerance): the
    generators must draw the same numbers in the same order and every product must be taken
    matrix by matrix. The demo's participants (covariates missing sporadically and by trial),
    missing outcomes and baselines, the logistic regressions over runs of 150 rows (several
    trials a run, a trial over several runs), and the rows in trial order or shuffled."""
    from analysis.analyses.sensitivity import _mi_sample

    monkeypatch.setattr(RowChunks, "CHUNK_ROWS", 150)
    d = _mi_sample(demo_run.tables["participants"], demo_run.tables["outcomes"], "other_conservative")
    if shuffled:
        d = d.sample(frac=1.0, random_state=4).reset_index(drop=True)
    covs = ["age", "bmi", "heavy_work", "medication", "employed", "duration_months"]
    imputer = ChainedImputer(d, covs, binary=BINARY_COVARIATES, ranges=IMPUTED_RANGES, iterations=2)
    assert {"pain_bl", "bmi", "heavy_work", "pain"} <= set(imputer.variables)
    assert any(len(m.unmeasured) for m in imputer.models.values())  # a trial never measured one
    streams = lambda: [np.random.default_rng([11, i]) for i in range(5)]  # noqa: E731
    together = list(imputer.draws(streams()))
    monkeypatch.setattr(ChainedImputer, "LOCKSTEP_ROWS", 1)  # one at a time
    alone = list(imputer.draws(streams()))
    assert len(together) == len(alone) == 5
    for a, b in zip(together, alone):
        for v in imputer.col:
            np.testing.assert_array_equal(a[v], b[v], err_msg=v)
    assert not np.array_equal(together[0]["bmi"], together[1]["bmi"])  # each from its own stream


def test_regressions_fitted_side_by_side_equal_each_fitted_alone(monkeypatch):
    """linear_trial_regressions and logistic_trial_regressions fit several data sets with the
    same rows at once. Source of truth: each data set fitted alone, every field equal (no
    tolerance). The data sets differ in what the arithmetic branches on: one has a constant
    column (standardised to nothing), one an aliased column, and the logistic fits start
    from different points (so they stop after different numbers of Newton steps: those that
    have stopped must keep their estimates and covariance); runs of 50 rows."""
    from analysis.models.imputation import linear_trial_regressions, logistic_trial_regressions

    monkeypatch.setattr(RowChunks, "CHUNK_ROWS", 50)
    rng = np.random.default_rng(8)
    n, k, p, sets = 300, 6, 4, 5
    codes = np.sort(rng.integers(0, k, n))
    z = rng.normal(size=(sets, n, p))
    z[1, :, 2] = 3.0  # constant
    z[2, :, 3] = 2 * z[2, :, 0] - z[2, :, 1]  # aliased
    y = rng.normal(size=(sets, n)) + z[:, :, 0]
    linear = linear_trial_regressions(codes, k, np.concatenate([z, y[:, :, None]], axis=2), standardise=True)
    binary = (rng.uniform(size=n) < 0.4).astype(float)
    start = (rng.normal(scale=[[0.01], [1.0], [0.0], [2.0], [0.1]], size=(sets, k)), np.zeros((sets, p)))
    logistic = logistic_trial_regressions(codes, k, z.copy(), binary, start=start)
    for c in range(sets):
        alone = linear_trial_regressions(codes, k, np.concatenate([z[c:c + 1], y[c:c + 1, :, None]], axis=2),
                                         standardise=True).chain(0)
        for name in ("alpha", "beta", "beta_cov", "alpha_cond_var", "lever", "centre", "scale", "rss", "dof"):
            np.testing.assert_array_equal(getattr(linear.chain(c), name), getattr(alone, name), err_msg=(c, name))
        alone = logistic_trial_regressions(codes, k, z[c:c + 1].copy(), binary,
                                           start=(start[0][c:c + 1], start[1][c:c + 1])).chain(0)
        for name in ("alpha", "beta", "beta_cov", "alpha_cond_var", "lever"):
            np.testing.assert_array_equal(getattr(logistic.chain(c), name), getattr(alone, name), err_msg=(c, name))
    assert linear.dof[2] == linear.dof[0] + 1  # the aliased column left out


def test_normal_draws_side_by_side_equal_each_drawn_alone():
    """_draw_normal_many with the deviates each _draw_normal draws. Source of truth: each
    draw alone from the same generator, value for value; one covariance positive definite,
    one with an aliased (zero) row, one not positive definite (eigendecomposition)."""
    from analysis.models.imputation import _draw_normal, _draw_normal_many

    a = np.random.default_rng(0).normal(size=(3, 3))
    covs = np.array([a @ a.T + np.eye(3), np.diag([2.0, 0.0, 1.0]), -a @ a.T])
    means = np.arange(9.0).reshape(3, 3)
    alone = [_draw_normal(np.random.default_rng(i), means[i], covs[i]) for i in range(3)]
    e = np.array([np.random.default_rng(i).standard_normal(3) for i in range(3)])
    together = _draw_normal_many(means, covs, e)
    for i in range(3):
        np.testing.assert_array_equal(together[i], alone[i])
    assert together[1][1] == means[1][1]  # nothing drawn along the aliased row


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_trial_regression_standardised_from_cross_products(seed):
    """``standardise=True`` fits on (z - mean) / SD without forming that matrix. Second
    implementation: the same regression on the explicitly standardised matrix (numpy's mean
    and std). The cross-products lose a few digits to cancellation (columns with a mean of
    50 and an SD of 10, as age and pain scores have): tolerance 1e-9."""
    codes, z, lin, rng, _ = _trial_data(seed)
    z = 50 + 10 * z
    y = lin + rng.normal(size=len(lin))
    reg = linear_trial_regression(codes, 7, z, y, standardise=True)
    explicit = linear_trial_regression(codes, 7, (z - z.mean(axis=0)) / z.std(axis=0), y)
    np.testing.assert_allclose(reg.centre, z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(reg.scale, z.std(axis=0), rtol=1e-9)
    for name in ("alpha", "beta", "beta_cov", "lever", "alpha_var"):
        np.testing.assert_allclose(getattr(reg, name), getattr(explicit, name), rtol=1e-9, atol=1e-12, err_msg=name)
    assert reg.rss == pytest.approx(explicit.rss, rel=1e-9) and reg.dof == explicit.dof


def test_linear_trial_regression_drops_collinear_columns():
    """A constant column, and one constant within every trial, carry no information beyond
    the trial intercepts: both are collinear (residual degrees of freedom count them out),
    and the fit and its draws equal those without them (source of truth: the regression on
    the other columns; tolerance 1e-9 as above)."""
    codes, z, lin, rng, _ = _trial_data(3)
    y = lin + rng.normal(size=len(lin))
    z_bad = np.column_stack([z, np.full(len(z), 7.0), (codes * 1.5)[:, None] + 3.0])
    reg = linear_trial_regression(codes, 7, z_bad, y, standardise=True)
    good = linear_trial_regression(codes, 7, z, y, standardise=True)
    assert reg.dof == good.dof
    np.testing.assert_allclose(reg.beta[:3], good.beta, rtol=1e-9)
    np.testing.assert_allclose(reg.beta[3:], 0.0, atol=1e-9)
    np.testing.assert_allclose(reg.rss, good.rss, rtol=1e-9)
    np.testing.assert_allclose(reg.beta_cov[3:, 3:], 0.0, atol=1e-9)  # so nothing is drawn in those directions


def test_draws_move_with_rounding_no_more_than_the_covariance():
    """A draw must not jump when the covariance changes in its last digits (a different
    BLAS, another summation order): with two equal eigenvalues an eigendecomposition's
    vectors can rotate by anything, so this failed with the draws of an earlier version;
    the Cholesky factor moves by about the change. Source of truth: the perturbation bound
    of the Cholesky factor (a relative change of 1e-13 moves it by about 1e-13)."""
    from analysis.models.imputation import _draw_normal

    cov = np.diag([2.0, 2.0, 1.0])
    cov[0, 1] = cov[1, 0] = 1e-14
    nudged = cov.copy()
    nudged[0, 1] = nudged[1, 0] = -1e-14
    a = _draw_normal(np.random.default_rng(1), np.zeros(3), cov)
    b = _draw_normal(np.random.default_rng(1), np.zeros(3), nudged)
    np.testing.assert_allclose(a, b, atol=1e-12)
    singular = np.ones((2, 2))  # rank 1: draws along (1, 1) only
    d = _draw_normal(np.random.default_rng(2), np.zeros(2), singular)
    assert d[0] == pytest.approx(d[1], rel=1e-12)


def test_imputations_do_not_depend_on_the_last_digits_of_the_data(demo_run):
    """Data written to CSV and read back (or summed in another order) differ in their last
    digits. The imputations must not: here age is constant up to such rounding, which an
    earlier version scaled up into a predictor, so the draws went their own way (0.9 in a
    standardised slope on this data, then whole different imputations). Source of truth:
    the same draw on the unrounded data; the imputed values may differ by rounding carried
    through the chain (tolerance 1e-8 on 0-100 scales), the binary ones not at all."""
    from analysis.analyses.sensitivity import _mi_sample

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    d = _mi_sample(p.assign(age=44.1), o, "none_usual_care")
    noise = np.random.default_rng(0).standard_normal((len(d), 3)) * 1e-15
    nudged = d.assign(age=d.age * (1 + noise[:, 0]), pain_bl=d.pain_bl * (1 + noise[:, 1]),
                      function_bl=d.function_bl * (1 + noise[:, 2]))
    covs = ["age", "bmi", "heavy_work", "medication"]
    kw = dict(binary=BINARY_COVARIATES, ranges=IMPUTED_RANGES)
    a = ChainedImputer(d, covs, **kw).draw(np.random.default_rng(3))
    b = ChainedImputer(nudged, covs, **kw).draw(np.random.default_rng(3))
    for v in ("bmi", "pain", "function"):
        np.testing.assert_allclose(a[v], b[v], atol=1e-8, err_msg=v)
    for v in ("heavy_work", "medication"):
        np.testing.assert_array_equal(a[v], b[v], err_msg=v)


def test_each_variables_predictors_are_the_others_and_their_exercise_interactions(demo_run):
    """The imputer gathers each variable's predictors from one design it keeps up to date.
    Source of truth: the definition written out with pandas columns, in order: exercise, the
    baselines and every other variable, then exercise times each covariate (for an outcome)
    or each outcome (for a covariate or a baseline), at the observed and the missing rows."""
    p = demo_run.tables["participants"]
    d = p[p.comparison.isin(["exercise", "none_usual_care"])].reset_index(drop=True)
    rng = np.random.default_rng(5)
    d = d.assign(pain=np.where(rng.random(len(d)) < 0.2, np.nan, rng.uniform(0, 100, len(d))),
                 function=rng.uniform(0, 100, len(d)))
    d.loc[rng.random(len(d)) < 0.1, "function"] = np.nan
    d.loc[rng.random(len(d)) < 0.05, "pain_bl"] = np.nan
    covs = ["age", "bmi", "heavy_work", "medication"]
    imputer = ChainedImputer(d, covs, binary=BINARY_COVARIATES)
    assert {"pain_bl", "bmi", "pain", "function"} <= set(imputer.variables)
    filled = d.fillna(-1.0)  # any complete values will do: the check is on which columns go where
    design = imputer._design(filled[list(imputer.col)].to_numpy(float).T[None])  # one data set
    room = [np.empty(design.size) for _ in range(3)]
    for v in imputer.variables:
        others = [c for c in ["pain_bl", "function_bl"] + covs + ["pain", "function"] if c != v]
        interacting = covs if v in ("pain", "function") else ["pain", "function"]
        expected = np.column_stack([filled.exercise] + [filled[c] for c in others]
                                   + [filled.exercise * filled[c] for c in interacting])
        model = imputer.models[v]
        for rows, out in ((model.observed_rows, room[0]), (model.missing_rows, room[1])):
            np.testing.assert_array_equal(imputer._gather(design, rows, imputer.predictors[v], out, room[2])[0],
                                          expected[rows], err_msg=v)
