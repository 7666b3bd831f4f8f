"""analysis.onestage: the REML one-stage model from per-trial sufficient statistics.

Sources of truth, each next to its test: lme4/lmerTest on ../shared/data (tests.reference),
a direct dense N x N evaluation of the restricted likelihood, central-difference Hessians,
statsmodels MixedLM on the same data, and simulation from the model.
"""

import warnings

import numpy as np
import pytest

from analysis.models import onestage as os1
from analysis.models.onestage import (
    fit_reml,
    reml_deviance,
    reml_deviance_dense,
    sufficient_stats,
    trial_cross_products,
)
from tests import reference as ref
from tests.simulate import continuous_ipd


def _stats(d, covariate=False):
    if not covariate:
        return sufficient_stats(d.trial_id, d.y, d[["treat"]], d[["y0"]], terms=["exercise"])
    xbar = d.groupby("trial_id").x.transform("mean")
    xc = d.x - xbar
    x = np.column_stack([d.treat, d.treat * xc, d.treat * xbar])
    return sufficient_stats(d.trial_id, d.y, x, np.column_stack([d.y0, xc]),
                            terms=["exercise", "exercise:x", "exercise:x:across"])


@pytest.fixture(scope="module")
def m1_data():
    return ref.shared_csv("onestage_reference.csv")


# --- lme4 / lmerTest reference (R 4.2.2; values printed to 8 decimals, optimiser bobyqa
# with tight tolerances). Tolerances: estimates 1e-6 relative (both optimisers stop near
# 1e-8 on the deviance scale, which moves theta by ~1e-8 and tau^2 by ~1e-7); SEs 1e-6;
# Satterthwaite df 1e-5 relative (lmerTest uses a numerical Hessian, ~6 significant digits).

def test_m1_matches_lmer(m1_data):
    f = fit_reml(_stats(m1_data))
    s = f.summary()
    assert s["estimate"] == pytest.approx(ref.M1["theta"], rel=1e-6)
    assert s["se"] == pytest.approx(ref.M1["se"], rel=1e-6)
    assert s["df"] == pytest.approx(ref.M1["df_satterthwaite"], rel=1e-5)
    assert f.tau2 == pytest.approx(ref.M1["tau2"], rel=1e-6)
    assert f.sigma2[0] == pytest.approx(ref.M1["sigma2"], rel=1e-6)
    # REMLcrit is -2 x restricted log-likelihood with lme4's constants: the same definition
    assert f.deviance == pytest.approx(ref.M1["remlcrit"], abs=1e-6)
    assert (s["n_trials"], s["n_participants"]) == (8, 712)
    assert not f.boundary and f.converged


def test_m2_within_and_across_interactions_match_lmer(m1_data):
    f = fit_reml(_stats(m1_data, covariate=True))
    se = np.sqrt(np.diag(f.cov))
    assert f.coef[1] == pytest.approx(ref.M2["within"], rel=1e-6)
    assert se[1] == pytest.approx(ref.M2["within_se"], rel=1e-6)
    assert f.df[1] == pytest.approx(ref.M2["within_df"], rel=1e-5)
    assert f.coef[2] == pytest.approx(ref.M2["across"], rel=1e-6)
    assert se[2] == pytest.approx(ref.M2["across_se"], rel=1e-6)
    assert f.coef[0] == pytest.approx(ref.M2["treat"], rel=1e-6)
    assert f.tau2 == pytest.approx(ref.M2["tau2"], rel=1e-6)
    assert f.sigma2[0] == pytest.approx(ref.M2["sigma2"], rel=1e-6)


def test_boundary_fit_is_reported_as_such_and_equals_fixed_effect():
    """boundary_reference.csv: lme4 singular fit; equal to lm(y ~ 0 + trial + trial:y0 + treat)."""
    d = ref.shared_csv("boundary_reference.csv")
    f = fit_reml(_stats(d))
    assert f.boundary and f.tau2 == 0.0 and f.converged
    assert "boundary" in f.message
    assert f.coef[0] == pytest.approx(ref.BOUNDARY["theta"], rel=1e-7)
    assert f.se() == pytest.approx(ref.BOUNDARY["se"], rel=1e-7)
    assert f.sigma2[0] == pytest.approx(ref.BOUNDARY["sigma2"], rel=1e-7)
    # at tau^2 = 0 the Satterthwaite df is the residual df: n - 2 k - 1
    assert f.df[0] == pytest.approx(200 - 2 * 5 - 1)


# --- exactness: sufficient statistics vs the dense N x N likelihood (1e-9 relative, i.e.
# floating-point agreement: both are exact formulas, differing only in rounding).

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_likelihood_from_statistics_equals_dense_evaluation(seed):
    rng = np.random.default_rng(seed)
    d = continuous_ipd(rng, k=5, n_range=(8, 30))
    for covariate in (False, True):
        st = _stats(d, covariate)
        x = st_design(d, covariate)
        for sigma2, tau2 in [(150.0, 0.0), (90.0, 12.5), (rng.uniform(50, 300), rng.uniform(0, 50))]:
            fast = reml_deviance(st, sigma2, tau2)
            dense = reml_deviance_dense(d.trial_id, d.y, x[0], x[1], sigma2, tau2)
            assert fast == pytest.approx(dense, rel=1e-9)
    # trial-specific residual variances too
    s2 = rng.uniform(80, 200, 5)
    st = _stats(d)
    x = st_design(d, False)
    assert reml_deviance(st, s2, 7.0) == pytest.approx(
        reml_deviance_dense(d.trial_id, d.y, x[0], x[1], s2, 7.0), rel=1e-9
    )


def st_design(d, covariate):
    if not covariate:
        return d[["treat"]].to_numpy(float), d[["y0"]].to_numpy(float)
    xbar = d.groupby("trial_id").x.transform("mean")
    xc = d.x - xbar
    return (np.column_stack([d.treat, d.treat * xc, d.treat * xbar]), np.column_stack([d.y0, xc]))


@pytest.mark.parametrize("seed", [1, 2])
def test_models_from_shared_cross_products_equal_their_own_statistics(seed):
    """Several models from one pass of per-trial cross-products over the union of their
    columns (``trial_cross_products(...).stats``, as the imputation refits use it) against
    each model's own ``sufficient_stats``. Source of truth: the per-model computation; the
    two differ only in the BLAS blocking of the per-trial products, so the tolerance is
    rounding (1e-12 relative). The rows are shuffled (not in trial order) and one trial's
    covariate is constant, so the sort and the within-trial rank drop are covered too."""
    rng = np.random.default_rng(seed)
    d = continuous_ipd(rng, k=6, n_range=(15, 40)).sample(frac=1.0, random_state=seed)
    d.loc[d.trial_id == "T03", "x"] = 2.0
    xbar = d.groupby("trial_id").x.transform("mean").to_numpy()
    xc, treat, y0, y = d.x.to_numpy() - xbar, d.treat.to_numpy(float), d.y0.to_numpy(), d.y.to_numpy()
    columns = np.column_stack([treat, y, y0, xc, treat * xc, treat * xbar])
    shared = trial_cross_products(d.trial_id.to_numpy(), columns, exercise=0)
    pairs = [
        (shared.stats([2], [0], 1, ["exercise"]), sufficient_stats(d.trial_id, y, treat, y0, terms=["exercise"])),
        (shared.stats([2, 3], [0, 4, 5], 1, ["e", "e:x", "e:x:a"]),
         sufficient_stats(d.trial_id, y, columns[:, [0, 4, 5]], columns[:, [2, 3]], terms=["e", "e:x", "e:x:a"])),
    ]
    for got, own in pairs:
        assert list(got.trial_ids) == list(own.trial_ids) and got.terms == own.terms
        np.testing.assert_allclose(got.cross, own.cross, rtol=1e-12, atol=1e-12 * np.abs(own.cross).max())
        for field in ("resid_df", "logdet_ztz", "n", "n_treated", "tt_raw"):
            np.testing.assert_allclose(getattr(got, field), getattr(own, field), rtol=1e-12)
    assert pairs[1][1].resid_df[2] == (d.trial_id == "T03").sum() - 2  # the constant covariate dropped there


def test_collinear_baseline_is_dropped_within_that_trial_only():
    """A trial whose baseline is constant: the baseline column is rank-deficient there, as
    lm() would drop it (NA coefficient); the dense check drops it identically."""
    rng = np.random.default_rng(5)
    d = continuous_ipd(rng, k=4, n_range=(20, 30))
    d.loc[d.trial_id == "T02", "y0"] = 50.0
    st = _stats(d)
    assert st.resid_df[1] == (d.trial_id == "T02").sum() - 1
    x, z = st_design(d, False)
    assert reml_deviance(st, 120.0, 9.0) == pytest.approx(
        reml_deviance_dense(d.trial_id, d.y, x, z, 120.0, 9.0), rel=1e-9
    )
    assert np.isfinite(fit_reml(st).coef[0])


# --- analytic Hessian vs central differences (relative step 1e-3, as the deviance is
# large; the truncation error of the central difference is O(h^2) ~ 1e-6 relative,
# so 1e-5 relative is the justified tolerance).

@pytest.mark.parametrize("trial_specific", [False, True])
def test_analytic_hessian_matches_numerical(m1_data, trial_specific):
    st = _stats(m1_data)
    k = st.k
    sig = np.linspace(150, 210, k) if trial_specific else np.full(k, 178.9)
    tau2 = 23.8
    active = [True] * (k if trial_specific else 1) + [True]
    _, hess, _ = os1._derivatives(st, sig, tau2, trial_specific, active)

    def dev(par):
        s = par[:-1] if trial_specific else np.full(k, par[0])
        return reml_deviance(st, s, par[-1])

    par0 = np.r_[sig if trial_specific else sig[:1], tau2]
    num = np.empty_like(hess)
    h = 1e-3 * par0
    def shifted(a, b, da, db):
        p = par0.copy()
        p[a] += da * h[a]
        p[b] += db * h[b]
        return dev(p)

    for a in range(len(par0)):
        for b in range(len(par0)):
            num[a, b] = (shifted(a, b, 1, 1) - shifted(a, b, 1, -1) - shifted(a, b, -1, 1)
                         + shifted(a, b, -1, -1)) / (4 * h[a] * h[b])
    scale = np.sqrt(np.outer(np.abs(np.diag(num)), np.abs(np.diag(num))))
    assert np.max(np.abs(hess - num) / scale) < 1e-5
    # gradient away from the optimum (where it is far from zero), same step rule
    par1 = par0 * np.r_[np.full(len(par0) - 1, 1.3), 0.5]
    grad1, _, _ = os1._derivatives(
        st, par1[:-1] if trial_specific else np.full(k, par1[0]), par1[-1], trial_specific, active
    )
    h1 = 1e-3 * par1
    num_grad = np.array([(dev(par1 + e * h1) - dev(par1 - e * h1)) / (2 * h1 @ e) for e in np.eye(len(par1))])
    assert grad1 == pytest.approx(num_grad, rel=1e-5)
    # the gradient-only path (used as the optimiser's jacobian) gives the same numbers
    grad_only, _, _ = os1._derivatives(st, par1[:-1] if trial_specific else np.full(k, par1[0]), par1[-1],
                                       trial_specific, active, hessian=False)
    np.testing.assert_allclose(grad_only, grad1, rtol=1e-12)
    if trial_specific:  # the optimiser's own O(k) route to the same gradient (rounding: 1e-12)
        fast = os1._trial_specific_gradient(st, par1[:-1], par1[-1])
        np.testing.assert_allclose(fast, grad1, rtol=1e-12, atol=1e-12 * np.abs(grad1).max())


# --- statsmodels MixedLM, the reference implementation in Python. MixedLM stops its
# optimiser early, so theta is compared at 1e-4 and tau^2 at 1e-2 relative; its SE comes
# from the full observed information, so the plain GLS SE at its own variance estimates
# is compared instead (1e-8: the same formula).

def _mixedlm_on_simulated_ipd(reml: bool):
    """The same model in statsmodels (stratified intercepts and baseline slopes, random
    treatment slope) on 6 simulated trials; returns the data and the MixedLM fit."""
    import statsmodels.formula.api as smf

    d = continuous_ipd(np.random.default_rng(11), k=6, n_range=(40, 80))
    d["y0c"] = d.y0 - d.groupby("trial_id").y0.transform("mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm("y ~ 0 + C(trial_id) + C(trial_id):y0c + treat", d, groups="trial_id",
                        re_formula="0 + treat").fit(reml=reml)
    return d, m


def test_agrees_with_statsmodels_mixedlm():
    d, m = _mixedlm_on_simulated_ipd(reml=True)
    st = _stats(d)
    f = fit_reml(st)
    assert f.coef[0] == pytest.approx(m.params["treat"], rel=1e-4)
    assert f.tau2 == pytest.approx(m.cov_re.iloc[0, 0], rel=1e-2)
    mm, _ = os1._mixed_cross(st, m.scale, m.cov_re.iloc[0, 0])
    gls_se = np.sqrt(np.linalg.inv(mm[:1, :1])[0, 0])
    assert gls_se == pytest.approx(m.bse["treat"], rel=5e-3)  # MixedLM's SE: ~0.2 % larger
    # its criterion at its own optimum is our deviance there, and ours is at least as good
    assert -2 * m.llf == pytest.approx(reml_deviance(st, m.scale, m.cov_re.iloc[0, 0]), rel=1e-10)
    assert f.deviance <= -2 * m.llf + 1e-8


# --- simulation: coverage of the 95 % CI. With 300 data sets the Monte Carlo SE of a
# 95 % coverage is 1.3 %-points, so [93, 97] is about +/- 1.5 MC SE around 95 %.

def test_satterthwaite_coverage_and_better_than_z_with_five_trials():
    rng = np.random.default_rng(20201)
    theta = -8.0
    cover_t, cover_z, n_sim = 0, 0, 300
    for _ in range(n_sim):
        d = continuous_ipd(rng, k=5, n_range=(30, 60), theta=theta, tau=4.0, sigma=12.0)
        st = _stats(d)
        s_t = fit_reml(st).summary()
        s_z = fit_reml(st, inference="z").summary()
        cover_t += s_t["ci_low"] <= theta <= s_t["ci_high"]
        cover_z += s_z["ci_low"] <= theta <= s_z["ci_high"]
    assert 0.93 <= cover_t / n_sim <= 0.97
    assert cover_t > cover_z  # z-based intervals under-cover with few trials


# --- edge cases

def test_single_trial_gives_common_effect_with_message():
    d = continuous_ipd(np.random.default_rng(3), k=1)
    f = fit_reml(_stats(d))
    assert f.tau2 == 0.0 and "not estimable" in f.message
    assert np.isnan(f.summary()["pi_low"])  # no prediction interval with k < 3


def test_two_trials_fit_without_prediction_interval():
    d = continuous_ipd(np.random.default_rng(4), k=2)
    s = fit_reml(_stats(d)).summary()
    assert np.isfinite(s["estimate"]) and np.isfinite(s["se"]) and np.isnan(s["pi_low"])


def test_trial_with_one_arm_only_contributes_to_sigma2_not_theta():
    """A trial with one arm at a window carries no within-trial exercise contrast: its
    residualised exercise column is zero, so theta is unchanged if it is removed,
    while it still counts among the trials whose data the model used."""
    rng = np.random.default_rng(8)
    d = continuous_ipd(rng, k=6)
    d = d[~((d.trial_id == "T03") & (d.treat == 1))]
    st = _stats(d)
    assert st.cross[2, 0, 0] == pytest.approx(0.0, abs=1e-9)
    f = fit_reml(st)
    assert f.n_trials == 6
    f_without = fit_reml(_stats(d[d.trial_id != "T03"]))
    assert f.coef[0] == pytest.approx(f_without.coef[0], rel=2e-2)


def test_trial_specific_residual_variances_reduce_deviance(m1_data):
    st = _stats(m1_data)
    common, specific = fit_reml(st), fit_reml(st, residual="trial")
    assert specific.deviance < common.deviance
    assert specific.residual == "trial" and len(set(np.round(specific.sigma2, 6))) == st.k
    assert specific.summary()["df"] > 1


def test_tau2_with_two_trials_and_an_across_trial_term_is_not_identified_in_any_row_order():
    """With two trials, exercise and the across-trial term (exercise x trial mean) fit each
    trial's own exercise effect exactly: the restricted likelihood does not depend on tau^2
    at all (source of truth: the model's algebra). The fit must say so whatever the rounding
    of the per-trial sums (six data sets, rows in four orders); it used to call some a boundary fit
    (tau^2 = 0) and others not identified, as pooled and federated runs of one model did."""
    for data_seed in range(6):  # the old rule called seeds 0, 1 and 4 boundary fits, seed 5 either
        d = continuous_ipd(np.random.default_rng(data_seed), k=2, across=1.5)
        for seed in range(4):
            fit = fit_reml(_stats(d.sample(frac=1, random_state=seed), covariate=True))
            assert not fit.converged and "not identified" in fit.message, (data_seed, seed)


def test_trial_specific_residual_variances_are_at_the_maximum(m1_data):
    """Source of truth: at the REML maximum the score is zero and no nearby point has a lower
    deviance. The fit's (sigma_i^2, tau^2) give a parameter-scaled analytic score below 1e-8
    (L-BFGS-B alone stopped at about 1e-5), and moving any one of them by 1e-4 of its value,
    either way, raises the direct deviance evaluation; rows in another order (other rounding
    of the per-trial sums) give the same estimates to 1e-10."""
    from analysis.models.onestage import _derivatives, reml_deviance

    st = _stats(m1_data)
    fit = fit_reml(st, residual="trial")
    params = np.r_[fit.sigma2, fit.tau2]
    grad, _, _ = _derivatives(st, fit.sigma2, fit.tau2, True, [True] * (st.k + 1), hessian=False)
    assert np.max(np.abs(grad * params)) < 1e-8
    best = reml_deviance(st, fit.sigma2, fit.tau2)
    for j in range(st.k + 1):
        for sign in (-1, 1):
            moved = params.copy()
            moved[j] *= 1 + sign * 1e-4
            assert reml_deviance(st, moved[:-1], moved[-1]) > best
    shuffled = fit_reml(_stats(m1_data.sample(frac=1, random_state=3)), residual="trial")
    np.testing.assert_allclose(shuffled.coef, fit.coef, rtol=1e-10)
    np.testing.assert_allclose(np.r_[shuffled.sigma2, shuffled.tau2], params, rtol=1e-8)


@pytest.mark.parametrize("seed", [4, 5])
def test_ml_likelihood_from_statistics_equals_dense_evaluation(seed):
    """-2 l_ML from the statistics (via the REML deviance and the determinant lemma) equals the
    dense N x N evaluation at arbitrary parameters, to floating-point precision (1e-9)."""
    from analysis.models.onestage import ml_deviance, ml_deviance_dense

    rng = np.random.default_rng(seed)
    d = continuous_ipd(rng, k=5, n_range=(8, 30))
    for covariate in (False, True):
        st = _stats(d, covariate)
        x, z = st_design(d, covariate)
        for sigma2, tau2 in [(150.0, 0.0), (90.0, 12.5), (np.linspace(60, 200, 5), 4.0)]:
            assert ml_deviance(st, sigma2, tau2) == pytest.approx(
                ml_deviance_dense(d.trial_id, d.y, x, z, sigma2, tau2), rel=1e-9
            )


def test_ml_optimum_at_least_as_good_as_statsmodels():
    from analysis.models.onestage import fit_ml_deviance

    d, m = _mixedlm_on_simulated_ipd(reml=False)
    assert fit_ml_deviance(_stats(d)) <= -2 * m.llf + 1e-6
    assert fit_ml_deviance(_stats(d)) == pytest.approx(-2 * m.llf, rel=1e-6)


def test_constant_covariate_with_rounding_noise_is_collinear():
    """A baseline constant within a trial at a value that is not exactly representable
    (100/3) leaves rounding noise after centring; it must still count as collinear."""
    rng = np.random.default_rng(6)
    d = continuous_ipd(rng, k=4, n_range=(20, 30))
    d.loc[d.trial_id == "T03", "y0"] = 100 / 3
    st = _stats(d)
    assert st.resid_df[2] == (d.trial_id == "T03").sum() - 1
    x, z = st_design(d, False)
    assert reml_deviance(st, 120.0, 9.0) == pytest.approx(
        reml_deviance_dense(d.trial_id, d.y, x, z, 120.0, 9.0), rel=1e-9
    )


def _ml_profiled(st, gamma):
    """The ML deviance with sigma^2 profiled out, one gamma at a time through ml_deviance:
    sigma^2 = the GLS residual sum of squares at sigma^2 = 1, over N (the reference for the
    batched profile)."""
    from analysis.models.onestage import _mixed_cross, ml_deviance

    q = len(st.terms)
    m, _ = _mixed_cross(st, 1.0, gamma)
    a, b, yy = m[:q, :q], m[:q, q], m[q, q]
    rss = yy - b @ np.linalg.solve(a, b)
    if rss <= 0:
        return np.inf
    sigma2 = rss / st.n.sum()
    return ml_deviance(st, sigma2, gamma * sigma2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_ml_profile_equals_ml_deviance_and_a_scalar_search(seed):
    """Source of truth: ml_deviance (itself equal to the dense evaluation above) at
    sigma^2 = rss / N, to 1e-10; and the minimum found by scipy's bounded scalar search over
    log(gamma) (xatol 1e-10; the method fit_ml_deviance used before), to 1e-9 relative."""
    from scipy import optimize

    from analysis.models.onestage import _ProfiledML, fit_ml_deviance

    rng = np.random.default_rng(seed)
    d = continuous_ipd(rng, k=6, n_range=(10, 40))
    for covariate in (False, True):
        st = _stats(d, covariate)
        gammas = np.array([0.0, 1e-4, 0.05, 0.7, 3.0, 40.0])
        np.testing.assert_allclose(_ProfiledML(st)(gammas), [_ml_profiled(st, g) for g in gammas], rtol=1e-10)
        search = optimize.minimize_scalar(lambda lg, st=st: _ml_profiled(st, np.exp(lg)), bounds=(-12, 8),
                                          method="bounded", options={"xatol": 1e-10})
        expected = min(search.fun, _ml_profiled(st, 0.0))
        assert fit_ml_deviance(st) == pytest.approx(expected, rel=1e-9)
        assert fit_ml_deviance(st) <= expected + 1e-9 * abs(expected)


def test_refined_grid_is_numpys_linspace_value_for_value():
    """Source of truth: np.linspace(centre - step, centre + step, 41), which the REML search
    used before; the replacement must give the same grid to the last bit (exact equality), so
    that the search visits the same points."""
    from analysis.models.onestage import _refined_grid

    rng = np.random.default_rng(7)
    for centre, step in zip(rng.uniform(-14, 9, 2000), rng.choice([0.25, 0.0125, 0.25 / 400], 2000)):
        assert np.array_equal(_refined_grid(centre, step), np.linspace(centre - step, centre + step, 41))


@pytest.mark.parametrize("seed", [2, 3, 4, 5])
def test_profiled_reml_derivatives_equal_central_differences(seed):
    """Source of truth: the batched profiled deviance (``_ProfiledREML.__call__``, itself equal
    to the dense N x N likelihood, above) and central differences with h = 1e-4 gamma.
    The deviance of ``with_derivatives`` is the same number up to rounding (1e-12 relative).
    Its slope against differences of the deviance: truncation (h / gamma)^2 ~ 1e-8 relative,
    rounding 2e-16 |dev| / h, so rtol 1e-6 and atol 1e-9 |dev| / gamma (500 times that
    rounding; the slope is near 0 at the optimum). Its curvature against differences of the
    analytic slope: rtol 1e-5 (largest seen 5e-7)."""
    d = continuous_ipd(np.random.default_rng(seed), k=12, tau=5.0)
    for covariate in (False, True):
        f = os1._ProfiledREML(_stats(d, covariate=covariate))
        for gamma in (1e-3, 0.02, 0.3, 2.0, 30.0):
            dev, slope, curvature = f.with_derivatives(gamma)
            h = 1e-4 * gamma
            below, at, above = f([gamma - h, gamma, gamma + h])
            assert dev == pytest.approx(at, rel=1e-12)
            np.testing.assert_allclose(slope, (above - below) / (2 * h), rtol=1e-6, atol=1e-9 * abs(at) / gamma)
            slopes = f.with_derivatives(gamma - h)[1], f.with_derivatives(gamma + h)[1]
            assert curvature == pytest.approx((slopes[1] - slopes[0]) / (2 * h), rel=1e-5)


@pytest.mark.parametrize("seed", [2, 3, 4, 5])  # seed 1 has tau^2 at the boundary (no polish)
def test_polished_fit_is_the_root_of_the_reml_score(seed):
    """Source of truth: the analytic gradient and Hessian of the REML deviance in
    (sigma^2, tau^2) (``_derivatives``, tested against central differences above). The
    polish finds the root of the profiled deviance's slope in gamma; at the fit's
    (sigma^2, tau^2) a Newton step on the two-parameter score must move neither by more
    than 1e-10 of its value (the issue's bound for a changed order of arithmetic; seen:
    7e-14, rounding)."""
    d = continuous_ipd(np.random.default_rng(seed), k=12, tau=5.0)
    for covariate in (False, True):
        st = _stats(d, covariate=covariate)
        fit = fit_reml(st)
        assert fit.tau2 > 0 and fit.converged
        grad, hess, _ = os1._derivatives(st, fit.sigma2[0], fit.tau2, False, [True, True])
        step = np.linalg.solve(hess, grad)
        assert np.all(np.abs(step) <= 1e-10 * np.array([fit.sigma2[0], fit.tau2]))


# --- fits made together (fit_reml_many): the same numbers as one at a time


def _many_cases():
    """Statistics of models of two shapes (one term; three) in every state a REML search can
    end in: an interior optimum, tau^2 at the boundary, a likelihood rising towards tau^2 = 0
    (no between-trial variation at all), tau^2 not identified (two trials and an across-trial
    term), and a single trial (common-effect fit, no search)."""
    cases = []
    for seed in range(6):
        d = continuous_ipd(np.random.default_rng(seed), k=12, tau=(5.0, 0.0, 1.0)[seed % 3])
        cases += [_stats(d), _stats(d, covariate=True), _stats(d[d.trial_id != "T01"])]
    two = continuous_ipd(np.random.default_rng(0), k=2, across=1.5)
    cases += [_stats(two, covariate=True), _stats(continuous_ipd(np.random.default_rng(3), k=1))]
    return cases


def _same_fit(a, b):
    return (all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("coef", "cov", "df", "sigma2"))
            and (a.tau2, a.deviance, a.converged, a.boundary, a.message, a.n_trials, a.n_participants)
            == (b.tau2, b.deviance, b.converged, b.boundary, b.message, b.n_trials, b.n_participants))


@pytest.mark.parametrize("options", [{}, {"inference": "z"}, {"residual": "trial"}, {"random_effect": False}])
def test_fits_made_together_equal_fits_made_one_at_a_time(options):
    """Source of truth: ``fit_reml`` on each model alone. ``fit_reml_many`` searches tau^2 /
    sigma^2 for models of one shape together, with a leading axis of fits in the same
    arithmetic, so every number must be the same to the last bit (no tolerance), in whatever
    order the shapes come and with a shape that has one model only."""
    cases = _many_cases()
    alone = [fit_reml(st, **options) for st in cases]
    if not options:  # every way a search can end is among the cases
        messages = " ".join(f.message for f in alone)
        assert "boundary" in messages and "not identified" in messages and "fewer than two" in messages
        assert sum(f.tau2 > 0 for f in alone) >= 6
    for order in (slice(None), slice(None, None, -1), [0, 3, 6, 1]):
        picked = np.arange(len(cases))[order]
        together = os1.fit_reml_many([cases[j] for j in picked], **options)
        assert all(_same_fit(alone[j], f) for j, f in zip(picked, together))


@pytest.mark.parametrize("covariate", [False, True])
def test_profiles_evaluated_together_equal_each_profile(covariate):
    """Source of truth: ``_ProfiledREML`` of each fit on its own gammas; ``_ProfiledREMLs``
    evaluates several fits (each at its own gammas, any subset in any order) bit for bit."""
    rng = np.random.default_rng(11)
    profiles = [os1._ProfiledREML(_stats(continuous_ipd(np.random.default_rng(s), k=9), covariate=covariate))
                for s in range(5)]
    together = os1._ProfiledREMLs(profiles)
    for size in (93, 41, 2, 1):
        fits = rng.permutation(5)[:3]
        gammas = np.exp(rng.uniform(-14, 9, (3, size)))
        got = together(gammas, fits)
        for row, j in enumerate(fits):
            assert np.array_equal(got[row], profiles[j](gammas[row]))
