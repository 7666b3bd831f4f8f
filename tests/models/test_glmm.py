"""analysis.glmm: mixed logistic regression by adaptive Gauss-Hermite quadrature.

Sources of truth: lme4's glmer with nAGQ = 15 and glm() on ../shared/data (tests.reference),
statsmodels' GLM (a second implementation) for the tau -> 0 limit, and agreement between
quadrature rules of different sizes.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis.models.glmm import fit_mixed_logistic
from tests import reference as ref


@pytest.fixture(scope="module")
def data():
    return ref.shared_csv("onestage_reference.csv")


def test_matches_glmer_nagq15(data):
    """glmer's optimiser stops at ~1e-6 relative on the parameters (printed to 8 decimals):
    log OR 1e-5 relative, SE 1e-5, tau^2 5e-5 (a variance, flatter likelihood), logLik 1e-7."""
    f = fit_mixed_logistic(data.trial_id, data.recovered, data[["y0"]], data.treat, n_nodes=15)
    assert f.theta == pytest.approx(ref.G15["log_or"], rel=1e-5)
    assert f.se == pytest.approx(ref.G15["se"], rel=1e-5)
    assert f.tau2 == pytest.approx(ref.G15["tau2"], rel=5e-5)
    assert f.loglik == pytest.approx(ref.G15["loglik"], rel=1e-7)
    assert f.beta[0] == pytest.approx(ref.G15["y0"], rel=1e-5)
    assert f.converged and not f.boundary


def test_common_effect_equals_glm(data):
    """tau fixed at 0 is ordinary logistic regression: glm() and statsmodels GLM."""
    f = fit_mixed_logistic(data.trial_id, data.recovered, data[["y0"]], data.treat, random_effect=False)
    assert f.theta == pytest.approx(ref.G_COMMON["log_or"], rel=1e-7)
    assert f.se == pytest.approx(ref.G_COMMON["se"], rel=1e-6)
    assert f.loglik == pytest.approx(ref.G_COMMON["loglik"], rel=1e-9)
    x = pd.get_dummies(data.trial_id, dtype=float).assign(y0=data.y0, treat=data.treat)
    g = sm.GLM(data.recovered, x, family=sm.families.Binomial()).fit(tol=1e-12)
    assert f.theta == pytest.approx(g.params["treat"], rel=1e-8)
    assert f.se == pytest.approx(g.bse["treat"], rel=1e-6)


def test_few_nodes_agree_with_many(data):
    """Well-behaved data: 7 and 25 nodes differ only by quadrature error (< 1e-5)."""
    a = fit_mixed_logistic(data.trial_id, data.recovered, data[["y0"]], data.treat, n_nodes=7)
    b = fit_mixed_logistic(data.trial_id, data.recovered, data[["y0"]], data.treat, n_nodes=25)
    assert a.theta == pytest.approx(b.theta, rel=1e-5)
    assert a.tau2 == pytest.approx(b.tau2, rel=1e-4)


def test_laplace_is_refused_with_reason(data):
    with pytest.raises(ValueError, match="at least 5"):
        fit_mixed_logistic(data.trial_id, data.recovered, data[["y0"]], data.treat, n_nodes=1)


def test_no_events_in_an_arm_and_in_a_trial(data):
    d = data.copy()
    d.loc[(d.trial_id == "S2") & (d.treat == 1), "recovered"] = 0  # no events in one arm
    d.loc[d.trial_id == "S3", "recovered"] = 0  # no events at all in a trial
    f = fit_mixed_logistic(d.trial_id, d.recovered, d[["y0"]], d.treat)
    assert np.isfinite(f.theta) and np.isfinite(f.se) and f.converged
    assert "S3" in f.message and f.n_trials == 8  # the model frame still holds S3


def test_boundary_when_no_heterogeneity():
    """Simulated with tau = 0 and a large common effect: tau^2 lands at (or very near) 0
    and theta stays close to the common-effect estimate."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        n = 150
        t = np.arange(n) % 2
        x = rng.normal(0, 1, n)
        p = 1 / (1 + np.exp(-(-0.5 + 0.3 * i / 6 + 0.5 * x + 0.8 * t)))
        rows.append(pd.DataFrame(dict(trial=f"B{i}", y=rng.binomial(1, p), x=x, t=t)))
    d = pd.concat(rows)
    f = fit_mixed_logistic(d.trial, d.y, d[["x"]], d.t)
    c = fit_mixed_logistic(d.trial, d.y, d[["x"]], d.t, random_effect=False)
    assert f.tau2 < 0.05
    assert f.theta == pytest.approx(c.theta, abs=0.05)


def test_recovers_truth_in_simulation():
    """Mean of 40 estimates within 3 Monte Carlo SEs of the true log OR 0.7."""
    rng = np.random.default_rng(2020)
    est = []
    for _ in range(40):
        rows = []
        for i in range(10):
            n = int(rng.integers(80, 200))
            t = np.arange(n) % 2
            x = rng.normal(50, 15, n)
            u = rng.normal(0, 0.4)
            eta = rng.normal(-1, 0.5) - 0.02 * (x - 50) + t * (0.7 + u)
            rows.append(pd.DataFrame(dict(trial=i, y=rng.binomial(1, 1 / (1 + np.exp(-eta))), x=x, t=t)))
        d = pd.concat(rows)
        est.append(fit_mixed_logistic(d.trial, d.y, d[["x"]], d.t, n_nodes=9).theta)
    est = np.array(est)
    assert abs(est.mean() - 0.7) < 3 * est.std(ddof=1) / np.sqrt(len(est))


def test_block_arrow_solves_equal_dense_algebra():
    """The structured Newton step and common-parameter covariance of the mixed logistic fit
    equal dense linear algebra on the full matrix (with fixed parameters removed), to
    rounding (1e-12): the Schur complement identity is exact."""
    from analysis.models.glmm import BlockArrow

    rng = np.random.default_rng(0)
    k, pz, c = 6, 2, 3
    trial = np.array([-(a @ a.T + np.eye(pz)) for a in rng.normal(size=(k, pz, pz))])
    common = -(lambda a: a @ a.T + 5 * np.eye(c))(rng.normal(size=(c, c)))
    h = BlockArrow(trial, 0.2 * rng.normal(size=(k, pz, c)), common)
    dense = h.dense()
    g = rng.normal(size=k * pz + c)
    free = np.ones(k * pz + c, bool)
    free[[3, k * pz + c - 1]] = False  # a trial-specific term and tau held fixed
    expected = np.zeros_like(g)
    expected[free] = np.linalg.solve(-dense[np.ix_(free, free)], g[free])
    np.testing.assert_allclose(h.solve_negative(g, free), expected, atol=1e-12)
    cov = h.common_covariance(free)
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(-dense[np.ix_(free, free)])[-2:, -2:], atol=1e-12)
    assert np.isnan(cov[2]).all()



def test_newton_direction_shifts_an_indefinite_hessian_until_it_is_positive_definite():
    """Far from the optimum -H may not be positive definite: the direction solves
    (-H + s I) x = g with s the first of 1e-6 x the mean absolute diagonal x 10^j
    (j = 0, 1, ...) for which -H + s I is positive definite. Source of truth: that search
    done on the dense matrix with numpy's Cholesky; a positive definite -H gets no shift."""
    from analysis.models.glmm import BlockArrow, _newton_direction

    rng = np.random.default_rng(4)
    k, pz, c = 5, 1, 3
    trial = np.array([-(a @ a.T + np.eye(pz)) for a in rng.normal(size=(k, pz, pz))])
    common = -(lambda a: a @ a.T + 5 * np.eye(c))(rng.normal(size=(c, c)))
    g, free = rng.normal(size=k * pz + c), np.ones(k * pz + c, bool)
    for flip in (False, True):
        if flip:
            common[1, 1] = 3.0  # -H has a negative diagonal entry: indefinite
        h = BlockArrow(trial, 0.2 * rng.normal(size=(k, pz, c)), common)
        dense, size = -h.dense(), k * pz + c
        scale = np.abs(np.diag(dense)).mean()
        shift = 0.0
        while np.any(np.linalg.eigvalsh(dense + shift * np.eye(size)) <= 0):
            shift = 1e-6 * scale if shift == 0 else shift * 10
        assert (shift > 0) == flip
        expected = np.linalg.solve(dense + shift * np.eye(size), g)
        np.testing.assert_allclose(_newton_direction(g, h, free), expected, rtol=1e-10, atol=1e-12)


def test_control_cross_products_by_indicator_equal_per_trial_products(monkeypatch):
    """The control arms' weighted cross products per trial: from the rows' outer products and
    the trial indicator (few rows, CONTROL_OUTER_MAX) or by a matrix product per trial (many
    rows). Source of truth: each other, and numpy's einsum over the rows; equal to rounding
    (1e-12 relative: sums of the same terms in another order). A trial without control rows
    gets zeros."""
    from analysis.models import glmm

    rng = np.random.default_rng(6)
    trial = np.repeat([f"R{i}" for i in range(4)], 50)
    t = np.tile([0.0, 1.0], 100)
    t[150:] = 1.0  # R3: exercise arm only
    x, z = rng.normal(size=(200, 2)), rng.normal(size=200)
    y = rng.binomial(1, 0.4, 200)
    small = glmm._Data(trial, y, x, t, z)
    monkeypatch.setattr(glmm, "CONTROL_OUTER_MAX", 0)
    large = glmm._Data(trial, y, x, t, z)
    assert small.outer_c is not None and large.outer_c is None
    w = rng.random(len(small.base_c))
    by_indicator, per_trial = small.weighted_cross_control(w), large.weighted_cross_control(w)
    codes = small.codes[small.control]
    expected = np.array([np.einsum("n,ni,nj->ij", w[codes == i], small.base_c[codes == i], small.base_c[codes == i])
                         for i in range(small.k)])
    np.testing.assert_allclose(by_indicator, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(per_trial, expected, rtol=1e-12, atol=1e-12)
    assert not by_indicator[3].any() and not per_trial[3].any()

def test_likelihood_evaluations_reuse_arrays_without_carrying_anything_over():
    """_mixture writes into arrays its data keep between evaluations. Source of truth: the
    same evaluation on fresh data (new arrays), which it must equal exactly after evaluations
    at other parameters; and _bernoulli's values against scipy's log_expit and expit."""
    from scipy import special

    from analysis.models.glmm import _adapt, _bernoulli, _Data, _mixture

    rng = np.random.default_rng(8)
    trial, t, x = np.repeat([f"R{i}" for i in range(5)], 80), np.tile([0, 1], 200), rng.normal(0, 1, 400)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.4 * x + 0.6 * t))))
    nodes, weights = np.polynomial.hermite.hermgauss(15)
    used, fresh = _Data(trial, y, x, t), _Data(trial, y, x, t)
    par = np.r_[np.zeros(used.n_trial_params), 0.4, 0.6, 0.3]
    _, vq, logw = _adapt(used, par, nodes, weights)
    _mixture(used, par + 0.2, vq, logw)
    _mixture(used, par + 0.5, vq, logw, derivatives=False)
    again, first = _mixture(used, par, vq, logw), _mixture(fresh, par, vq, logw)
    assert again[0] == first[0]
    np.testing.assert_array_equal(again[1], first[1])
    np.testing.assert_array_equal(again[2].dense(), first[2].dense())
    eta = np.array([[-800.0, -30.0, -1e-12, 0.0], [1e-12, 2.5, 40.0, 800.0]])
    sign = np.array([[1.0], [-1.0]])
    ll, p = _bernoulli(eta.copy(), sign, np.empty_like(eta), np.empty_like(eta))
    # log P(y | eta) = log_expit(s eta) to 1e-15 relative (one or two ulps: both sides are
    # within an ulp by different formulas). P(y = 1) = expit(eta) to one ulp of 1 absolute:
    # for eta < 0 it is 1 - expit(-eta), exact in absolute terms only, which is all the score
    # and the information need (they use it in sums of terms of order 1)
    np.testing.assert_allclose(ll, special.log_expit(sign * eta), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(p, special.expit(eta), rtol=1e-15, atol=np.finfo(float).eps)


def test_score_and_information_equal_numerical_derivatives():
    """The gradient and the Hessian (its exercise-arm part summed over the upper triangle of
    the rows' outer products and mirrored) of the fixed-node likelihood. Source of truth:
    central differences of the likelihood itself. Step 1e-4: truncation error of order 1e-8,
    and rounding of the log-likelihood (about 150, to 1e-16 relative) divided by the step
    squared gives about 3e-6 on the Hessian; the tolerances (1e-6 on the gradient, 2e-5 on
    the Hessian) sit above both."""
    from analysis.models.glmm import _adapt, _Data, _likelihood, _mixture

    rng = np.random.default_rng(5)
    trial = np.repeat([f"R{i}" for i in range(4)], 60)
    t, x, z = np.tile([0.0, 1.0], 120), rng.normal(size=(240, 2)), rng.normal(size=240)
    y = rng.binomial(1, 1 / (1 + np.exp(-(x @ [0.5, -0.4] + 0.7 * t))))
    d = _Data(trial, y, x, t, z)
    par = np.r_[rng.normal(0, 0.3, d.n_trial_params), 0.5, -0.4, 0.7, 0.4]
    nodes, weights = np.polynomial.hermite.hermgauss(7)
    _, vq, logw = _adapt(d, par, nodes, weights)
    _, grad, hess = _mixture(d, par, vq, logw)

    def loglik(p):
        return _likelihood(d, p, vq, logw).loglik

    h, size = 1e-4, len(par)
    unit = np.eye(size) * h
    num_grad = np.array([(loglik(par + e) - loglik(par - e)) / (2 * h) for e in unit])
    num_hess = np.array([[(loglik(par + a + b) - loglik(par + a - b) - loglik(par - a + b) + loglik(par - a - b))
                          / (4 * h * h) for b in unit] for a in unit])
    np.testing.assert_allclose(grad, num_grad, atol=1e-6)
    np.testing.assert_allclose(hess.dense(), num_hess, rtol=0, atol=2e-5)


@pytest.mark.parametrize("tau0", [0.5, 1.5])
def test_estimates_do_not_depend_on_where_tau_starts(monkeypatch, tau0):
    """The fit starts tau at a one-step scoring estimate (_tau_start); the maximum likelihood
    estimate it converges to must not depend on that. Source of truth: the same fit started
    where it used to start (0.5) and further away (1.5), on data with heterogeneity and at
    the boundary. Tolerance 1e-10 relative (absolute for tau^2): the fit stops when a round
    moves the parameters by less than 1e-8 and the node adaptation contracts that error by
    orders of magnitude (measured differences: below 1e-12)."""
    import analysis.models.glmm as glmm

    rng = np.random.default_rng(21)
    for tau in (0.6, 0.0):
        trial = np.repeat(np.arange(12), 150)
        t, x = rng.integers(0, 2, 1800).astype(float), rng.normal(size=(1800, 1))
        u = rng.normal(0, tau, 12)
        y = rng.binomial(1, 1 / (1 + np.exp(-(rng.normal(-0.5, 0.5, 12)[trial] + 0.4 * x[:, 0]
                                                + t * (0.3 + u[trial])))))
        ours = fit_mixed_logistic(trial, y, x, t)
        with monkeypatch.context() as m:
            m.setattr(glmm, "_tau_start", lambda d, par: tau0)
            other = fit_mixed_logistic(trial, y, x, t)
        assert ours.converged and other.converged
        for a, b in ((ours.theta, other.theta), (ours.se, other.se), (ours.loglik, other.loglik),
                     (ours.beta[0], other.beta[0])):
            assert abs(a - b) <= 1e-10 * abs(b)
        assert abs(ours.tau2 - other.tau2) <= 1e-10


def test_gauss_hermite_nodes_are_numpys_made_once_and_read_only():
    """Source of truth: numpy's hermgauss. The cached nodes are shared by every fit, so they
    must equal numpy's exactly and refuse to be changed in place."""
    from analysis.models.glmm import gauss_hermite

    nodes, weights = gauss_hermite(15)
    expected = np.polynomial.hermite.hermgauss(15)
    assert np.array_equal(nodes, expected[0]) and np.array_equal(weights, expected[1])
    assert gauss_hermite(15)[0] is nodes  # made once
    with pytest.raises(ValueError):
        nodes[0] = 0.0
