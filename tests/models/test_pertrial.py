"""analysis.pertrial: every trial's logistic regression at once, against statsmodels GLM."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from analysis.analyses.samples import outcome_sample
from analysis.models.pertrial import group_sums, per_trial_logistic


def test_group_sums_equal_bincount():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 9, 500)
    arr = rng.normal(size=(500, 3))
    expected = np.column_stack([np.bincount(codes, weights=arr[:, j], minlength=9) for j in range(3)])
    np.testing.assert_allclose(group_sums(codes, 9, arr), expected, atol=1e-12)


@pytest.mark.parametrize("comparison,window", [("none_usual_care", "short"), ("other_conservative", "long")])
def test_per_trial_logistic_equals_statsmodels_glm(demo_run, comparison, window):
    """Second implementation: statsmodels GLM (Binomial) trial by trial, run to a deviance
    tolerance of 1e-14 so that both are at the maximum: coefficients agree to 1e-7
    relative and standard errors to 1e-6 (statsmodels takes them from the weights of its
    last iteration, ours from the final estimates)."""
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    s = outcome_sample(p, o, comparison, "recovered", window)
    x = np.column_stack([np.ones(len(s)), s.pain_bl, s.function_bl, s.exercise])
    r = per_trial_logistic(s.trial_id.to_numpy(), s.recovered.to_numpy(float), x)
    assert list(r.labels) == sorted(s.trial_id.unique())
    checked = 0
    for i, tid in enumerate(r.labels):
        d = s[s.trial_id == tid]
        assert r.n[i] == len(d)
        if d.recovered.nunique() < 2 or d.exercise.nunique() < 2:
            assert not r.ok[i] or r.se[i, 3] > 20
            continue
        xi = np.column_stack([np.ones(len(d)), d.pain_bl, d.function_bl, d.exercise])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = sm.GLM(d.recovered.to_numpy(float), xi, family=sm.families.Binomial()).fit(tol=1e-14, maxiter=200)
        if g.bse[3] > 20:
            continue
        assert r.ok[i]
        np.testing.assert_allclose(r.coef[i], g.params, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(r.se[i], g.bse, rtol=1e-6)
        checked += 1
    assert checked >= 8


def test_per_trial_logistic_sets_aside_separated_trials():
    """A trial whose outcome is predicted perfectly by exercise has no finite estimate; the
    other trials are unaffected (their fits equal the GLM on their own rows)."""
    rng = np.random.default_rng(3)
    trial = np.repeat(["A", "B", "C"], 80)
    ex = np.tile([0.0, 1.0], 120)
    y = (rng.random(240) < 0.3 + 0.3 * ex).astype(float)
    y[trial == "B"] = ex[trial == "B"]  # perfect separation in B
    x = np.column_stack([np.ones(240), ex])
    r = per_trial_logistic(trial, y, x)
    assert not r.ok[1] or r.se[1, 1] > 20
    for i in (0, 2):
        rows = trial == r.labels[i]
        g = sm.GLM(y[rows], x[rows], family=sm.families.Binomial()).fit(tol=1e-14)
        assert r.ok[i]
        np.testing.assert_allclose(r.coef[i], g.params, rtol=1e-7)


def test_rank_deficient_trial_is_set_aside_without_holding_up_the_others():
    """A trial whose design is singular (a covariate constant within it) has no estimate;
    the others are fitted as before (GLM on their own rows)."""
    rng = np.random.default_rng(4)
    trial = np.repeat(["A", "B"], 100)
    ex = np.tile([0.0, 1.0], 100)
    cov = rng.normal(size=200)
    cov[trial == "B"] = 2.0
    y = (rng.random(200) < 0.4).astype(float)
    x = np.column_stack([np.ones(200), ex, cov])
    r = per_trial_logistic(trial, y, x)
    assert not r.ok[1] and r.ok[0]
    g = sm.GLM(y[:100], x[:100], family=sm.families.Binomial()).fit(tol=1e-14)
    np.testing.assert_allclose(r.coef[0], g.params, rtol=1e-7)


def test_each_trial_fit_is_the_same_alone_or_with_the_others():
    """Each IRLS iteration works on the trials still iterating only; a trial's fit must not
    depend on which others are fitted with it or how long they iterate. Source of truth: the
    same function on that trial's rows alone, equal to the bit (every number of a trial is
    computed from its own rows, in the same order, either way). The data mix trials that
    converge at different iterations, a separated trial that iterates on, and a singular one."""
    rng = np.random.default_rng(11)
    sizes = {"A": 40, "B": 300, "C": 60, "D": 120, "E": 25}
    trial = np.repeat(list(sizes), list(sizes.values()))
    n = len(trial)
    ex = rng.integers(0, 2, n).astype(float)
    cov = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.3 + 0.8 * ex + 0.5 * cov)))).astype(float)
    y[trial == "C"] = ex[trial == "C"]  # separated: iterates until its deviance settles
    cov[trial == "E"] = 1.5  # singular design
    x = np.column_stack([np.ones(n), ex, cov])
    order = rng.permutation(n)  # rows in any order
    trial, y, x = trial[order], y[order], x[order]
    together = per_trial_logistic(trial, y, x)
    for i, label in enumerate(together.labels):
        rows = trial == label  # in the same order as in the joint fit
        alone = per_trial_logistic(trial[rows], y[rows], x[rows])
        np.testing.assert_array_equal(alone.coef[0], together.coef[i])
        np.testing.assert_array_equal(alone.se[0], together.se[i])
        assert alone.ok[0] == together.ok[i]
    assert list(together.ok) == [True, True, False, True, False]



@pytest.mark.parametrize("max_rows", [100_000, 500])
def test_many_designs_fitted_together_equal_each_fitted_alone(max_rows):
    """per_trial_logistic_many fits several designs' trials as groups of one call per design
    width (and per max_rows rows: 500 splits them into several calls). Source of truth:
    per_trial_logistic on each design alone, equal to the bit: labels, coefficients, SEs,
    sizes and flags. The designs share trial labels (each design's trials are its own
    groups), have two widths, rows in any order, and a separated trial; they come from an
    iterator, with a missing design (None gives None)."""
    from analysis.models.pertrial import per_trial_logistic_many

    rng = np.random.default_rng(12)
    designs = []
    for j, width in enumerate([3, 4, 3, 3, 4]):
        sizes = {"A": 40 + 10 * j, "B": 80, "C": 30, "D10": 60}
        trial = np.repeat(list(sizes), list(sizes.values()))
        n = len(trial)
        ex = rng.integers(0, 2, n).astype(float)
        extra = rng.normal(size=(n, width - 2))
        y = (rng.random(n) < 1 / (1 + np.exp(-(0.6 * ex + extra[:, 0])))).astype(float)
        if j == 2:
            y[trial == "C"] = ex[trial == "C"]  # separated
        order = rng.permutation(n)
        designs.append((trial[order], y[order], np.column_stack([np.ones(n), ex, extra])[order]))
    designs.insert(3, None)
    together = per_trial_logistic_many(iter(designs), max_rows=max_rows)
    assert len(together) == len(designs) and together[3] is None
    for design, fit in zip(designs, together):
        if design is None:
            continue
        alone = per_trial_logistic(*design)
        np.testing.assert_array_equal(fit.labels, alone.labels)
        np.testing.assert_array_equal(fit.coef, alone.coef)
        np.testing.assert_array_equal(fit.se, alone.se)
        np.testing.assert_array_equal(fit.n, alone.n)
        np.testing.assert_array_equal(fit.ok, alone.ok)
    assert not together[2].ok[2]  # the separated trial is set aside there

def test_group_indicator_of_sorted_rows_is_the_matrix_the_pairs_build():
    """Source of truth: scipy's conversion of the (group, row) pairs to compressed rows, which
    the indicator of rows in any order still uses. For rows sorted by group, the directly built
    matrix must be the same matrix (row pointers, column indices, values, index types, equal
    exactly), so that every product with it is the same number; with empty groups too."""
    from scipy import sparse

    from analysis.models.pertrial import group_indicator

    rng = np.random.default_rng(4)
    for k, n in [(1, 5), (9, 200), (40, 1000)]:
        codes = np.sort(rng.integers(0, k, n))
        codes[codes == k // 2] = max(k // 2 - 1, 0)  # an empty group in the middle when k > 1
        codes.sort()
        direct = group_indicator(codes, k + 2)  # and two empty groups at the end
        pairs = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k + 2, n))
        for attr in ("indptr", "indices", "data"):
            assert np.array_equal(getattr(direct, attr), getattr(pairs, attr))
            assert getattr(direct, attr).dtype == getattr(pairs, attr).dtype
        assert direct.shape == pairs.shape
        arr = rng.normal(size=(n, 3))
        assert np.array_equal(direct @ arr, pairs @ arr)
