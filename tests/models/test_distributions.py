"""analysis.models.distributions against scipy.stats (source of truth: the same special
functions behind scipy.stats' t, norm and chi2, so equal to the last bit), including the
edges the analyses meet: infinite or missing df (a z interval), x at or below 0 for
chi-squared."""

import numpy as np
import pytest
from scipy import stats

from analysis.models.distributions import chi2_upper_tail, t_quantile, t_upper_tail


@pytest.mark.parametrize("df", [1.0, 2.5, 7.0, 30.0, 1234.5])
def test_t_matches_scipy_stats(df):
    q = np.array([0.5, 0.9, 0.95, 0.975, 0.995])
    x = np.array([0.0, 0.3, 1.96, 4.0, 40.0])
    assert np.array_equal(t_quantile(q, df), stats.t.ppf(q, df))
    assert np.array_equal(t_upper_tail(x, df), stats.t.sf(x, df))


@pytest.mark.parametrize("df", [np.inf, np.nan])
def test_not_finite_df_is_the_normal(df):
    """What the analyses did before with ``stats.norm`` where df was not finite."""
    assert t_quantile(0.975, df) == stats.norm.ppf(0.975)
    assert t_upper_tail(2.5, df) == stats.norm.sf(2.5)


def test_chi2_matches_scipy_stats_and_is_one_below_zero():
    x = np.array([-1.0, 0.0, 0.5, 3.84, 20.0])
    for df in (1, 2, 26):
        assert np.array_equal(chi2_upper_tail(x, df), stats.chi2.sf(x, df))
    assert np.isnan(chi2_upper_tail(np.nan, 1))
