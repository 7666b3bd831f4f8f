"""Quantiles and upper tail areas of the t (normal where df is infinite) and chi-squared
distributions, for confidence intervals, prediction intervals and tests.

These call the special functions that ``scipy.stats``' ``t``, ``norm`` and ``chi2`` call
(``stdtrit``, ``stdtr``, ``ndtri``, ``ndtr``, ``chdtrc``), so the numbers are the same to the
last bit (tested). Importing ``scipy.stats`` costs about half a second per process (it builds
every distribution's docstrings), a tenth of the whole demo analysis.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["t_quantile", "t_upper_tail", "chi2_upper_tail"]


def t_quantile(q, df):
    """The q quantile of Student's t with ``df`` degrees of freedom; the normal's where df is
    not finite (a z interval)."""
    return special.stdtrit(df, q) if np.isfinite(df) else special.ndtri(q)


def t_upper_tail(x, df):
    """P(T > x) for Student's t with ``df`` degrees of freedom; the normal's where df is
    not finite. Two-sided p = 2 * t_upper_tail(|t|, df)."""
    return special.stdtr(df, -x) if np.isfinite(df) else special.ndtr(-x)


def chi2_upper_tail(x, df):
    """P(X > x) for chi-squared with ``df`` degrees of freedom (1 at x <= 0, as in scipy.stats;
    ``chdtrc`` itself gives nan below 0)."""
    return special.chdtrc(df, np.maximum(x, 0.0))
