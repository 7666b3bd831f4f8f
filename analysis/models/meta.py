"""Univariate random-effects meta-analysis: the second stage of a two-stage IPD analysis.

Estimators of the between-trial variance tau^2 (REML, ML, DerSimonian-Laird, Paule-Mandel),
Wald or Hartung-Knapp-Sidik-Jonkman confidence intervals, prediction intervals, and the
heterogeneity statistics Q, I^2 and H^2 as metafor defines them.

Written by hand because no well-kept Python library offers REML/PM tau^2 with
Hartung-Knapp intervals (statsmodels' ``combine_effects`` has DL and PM only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize

from analysis.models.distributions import t_quantile, t_upper_tail

__all__ = ["MetaResult", "pool", "TAU2_METHODS"]

TAU2_METHODS = ("REML", "ML", "DL", "PM")


@dataclass(frozen=True)
class MetaResult:
    """A pooled estimate with its heterogeneity summary."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    df: float  # inf for a normal (Wald) interval
    p: float
    tau2: float
    pi_low: float
    pi_high: float
    q: float
    i2: float  # per cent
    h2: float
    k: int
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _weighted_mean(y, v, tau2):
    w = 1.0 / (v + tau2)
    return float(np.sum(w * y) / np.sum(w)), w


def _reml_score(tau2, y, v):
    mu, w = _weighted_mean(y, v, tau2)
    sw = w.sum()
    return -0.5 * sw + 0.5 * np.sum(w**2 * (y - mu) ** 2) + 0.5 * np.sum(w**2) / sw


def _ml_score(tau2, y, v):
    mu, w = _weighted_mean(y, v, tau2)
    return -0.5 * w.sum() + 0.5 * np.sum(w**2 * (y - mu) ** 2)


def _pm_equation(tau2, y, v):
    mu, w = _weighted_mean(y, v, tau2)
    return np.sum(w * (y - mu) ** 2) - (len(y) - 1)


def _root_decreasing(f, y, v) -> float:
    """Root in tau^2 >= 0 of a function that decreases in tau^2; 0 when f(0) <= 0."""
    if f(0.0, y, v) <= 0:
        return 0.0
    hi = max(np.var(y), np.max(v), 1e-8)
    while f(hi, y, v) > 0:
        hi *= 4.0
    return float(optimize.brentq(f, 0.0, hi, args=(y, v), xtol=1e-14, rtol=1e-14, maxiter=500))


def _tau2(y, v, method):
    if method == "REML":
        return _root_decreasing(_reml_score, y, v)
    if method == "ML":
        return _root_decreasing(_ml_score, y, v)
    if method == "PM":
        return _root_decreasing(_pm_equation, y, v)
    if method == "DL":
        w = 1.0 / v
        mu = np.sum(w * y) / w.sum()
        q = np.sum(w * (y - mu) ** 2)
        c = w.sum() - np.sum(w**2) / w.sum()
        return float(max(0.0, (q - (len(y) - 1)) / c))
    raise ValueError(f"unknown tau^2 estimator {method!r}; expected one of {TAU2_METHODS}")


def pool(
    yi,
    vi,
    method: str = "REML",
    hartung_knapp: bool = False,
    level: float = 0.95,
    pi_df: str = "k-2",
) -> MetaResult:
    """Pool per-trial estimates ``yi`` with sampling variances ``vi``.

    Parameters
    ----------
    method : one of ``REML`` (default), ``ML``, ``DL``, ``PM``, or ``FE`` (common effect).
    hartung_knapp : use the Hartung-Knapp-Sidik-Jonkman variance and a t(k-1) interval.
    pi_df : ``"k-2"`` for the t-based prediction interval of Higgins et al. (2009) and
        Riley et al. (2011), ``"normal"`` for metafor's default ``predict()`` interval.

    Examples
    --------
    >>> r = pool([-0.89, -1.59, -1.35], [0.33, 0.19, 0.42])
    >>> round(r.estimate, 3)
    -1.306
    """
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.shape != v.shape or y.ndim != 1:
        raise ValueError("yi and vi must be one-dimensional and of equal length")
    if np.any(~np.isfinite(y)) or np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("yi must be finite and vi finite and positive")
    k = len(y)
    if k == 0:
        raise ValueError("no estimates to pool")

    w_fe = 1.0 / v
    mu_fe = np.sum(w_fe * y) / w_fe.sum()
    q = float(np.sum(w_fe * (y - mu_fe) ** 2))
    tau2 = 0.0 if (method == "FE" or k == 1) else _tau2(y, v, method)
    mu, w = _weighted_mean(y, v, tau2)
    se = float(np.sqrt(1.0 / w.sum()))
    alpha = 1.0 - level

    if hartung_knapp and k > 1:
        se = float(np.sqrt(np.sum(w * (y - mu) ** 2) / ((k - 1) * w.sum())))
        df = float(k - 1)
    else:
        df = float("inf")
    crit = t_quantile(1 - alpha / 2, df)
    stat = mu / se if se > 0 else np.nan
    p = float(2 * t_upper_tail(abs(stat), df))

    # Typical within-trial variance and I^2/H^2 as in metafor (Higgins and Thompson 2002).
    if k > 1:
        s2 = (k - 1) * w_fe.sum() / (w_fe.sum() ** 2 - np.sum(w_fe**2))
        i2 = 100.0 * tau2 / (tau2 + s2)
        h2 = (tau2 + s2) / s2
    else:
        i2, h2 = np.nan, np.nan

    if pi_df == "normal":
        pcrit = t_quantile(1 - alpha / 2, np.inf)
    elif pi_df == "k-2":
        pcrit = t_quantile(1 - alpha / 2, k - 2) if k > 2 else np.nan
    else:
        raise ValueError("pi_df must be 'k-2' or 'normal'")
    half_pi = pcrit * np.sqrt(tau2 + se**2)
    label = "FE" if method == "FE" else method + ("+HK" if hartung_knapp else "")
    return MetaResult(
        estimate=mu,
        se=se,
        ci_low=float(mu - crit * se),
        ci_high=float(mu + crit * se),
        df=df,
        p=p,
        tau2=float(tau2),
        pi_low=float(mu - half_pi),
        pi_high=float(mu + half_pi),
        q=q,
        i2=float(i2),
        h2=float(h2),
        k=k,
        method=label,
    )
