"""Multiple imputation of missing covariates and outcomes that respects the clustering of
participants in trials, and Rubin's rules with Barnard-Rubin degrees of freedom.

Chained equations (fully conditional specification): each incomplete variable is imputed
in turn from a regression on the others, with proper draws of the parameters (Rubin 1987,
ch. 5). Trials enter as follows:

* sporadically missing values (the trial measured the variable): the regression has a fixed
  intercept per trial, so values are imputed within their own trial;
* systematically missing values (the trial never measured it): the trial's intercept is
  drawn from the distribution of the measuring trials' intercepts (normal, with the
  between-trial variance estimated by moments). This is an explicit approximation to a
  two-level imputation model with random intercepts and common slopes (in the spirit of
  Resche-Rigon and White 2018); it assumes the unmeasured trial resembles the measuring
  trials given everything else observed.

The imputation model includes exercise x outcome (for covariates) and exercise x covariate
(for outcomes) terms, so that it is congenial with the modifier analyses.

Written by hand: statsmodels' MICE and scikit-learn's IterativeImputer have no notion of
clusters or of systematically missing variables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from .settings import BINARY_COVARIATES, PLAUSIBLE

__all__ = ["rubin", "impute_once", "IMPUTED_RANGES"]

IMPUTED_RANGES = {**PLAUSIBLE, "pain": (0.0, 100.0), "function": (0.0, 100.0)}


def rubin(estimates, variances, df_complete=np.inf) -> dict:
    """Pool m completed-data estimates (Rubin 1987) with Barnard-Rubin (1999) df.

    T = W + (1 + 1/m) B; lambda = (1 + 1/m) B / T; nu_old = (m - 1) / lambda^2;
    nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lambda); nu = 1 / (1/nu_old + 1/nu_obs);
    fraction of missing information = (nu + 1) / (nu + 3) * lambda + 2 / (nu + 3) (as in mice).
    """
    q = np.asarray(estimates, float)
    u = np.asarray(variances, float)
    m = len(q)
    if m < 2:
        raise ValueError("Rubin's rules need at least two imputations")
    qbar, w = q.mean(), u.mean()
    b = q.var(ddof=1)
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    nu_old = (m - 1) / lam**2 if lam > 0 else np.inf
    if np.isfinite(df_complete):
        nu_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
        nu = 1 / (1 / nu_old + 1 / nu_obs)
    else:
        nu = nu_old
    fmi = (nu + 1) / (nu + 3) * lam + 2 / (nu + 3) if np.isfinite(nu) else lam
    return {"estimate": qbar, "se": float(np.sqrt(t)), "df": float(nu), "within": w, "between": b,
            "lambda": lam, "fmi": float(fmi), "m": m}


def _logistic(x, y, ridge=1e-4, iters=30):
    """Logistic regression by Newton's method with a small ridge penalty, which keeps the
    draws finite when a trial's binary covariate is separated by the predictors."""
    beta = np.zeros(x.shape[1])
    pen = ridge * np.eye(x.shape[1])
    pen[0, 0] = 0.0
    for _ in range(iters):
        p = special.expit(x @ beta)
        grad = x.T @ (y - p) - pen @ beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + pen
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    p = special.expit(x @ beta)
    hess = (x * (p * (1 - p))[:, None]).T @ x + pen
    return beta, np.linalg.inv(hess)


def _draw_normal(rng, mean, cov):
    """A multivariate normal draw; eigenvalues clipped at 0 so that a rank-deficient
    covariance (collinear predictors) draws in the identified directions only."""
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    return mean + evecs @ (np.sqrt(np.clip(evals, 0, None)) * rng.standard_normal(len(mean)))


def _draw_trial_intercepts(alpha, alpha_var, missing_trials, rng):
    """Intercepts for trials that never measured the variable: normal around the measuring
    trials' mean with their between-trial variance (moment estimate)."""
    if len(alpha) >= 2:
        tau2 = max(0.0, alpha.var(ddof=1) - alpha_var.mean())
    else:
        tau2 = 0.0
    centre = alpha.mean()
    return {t: centre + rng.normal(0, np.sqrt(tau2 + alpha_var.mean() / max(len(alpha), 1))) for t in missing_trials}


def _impute_variable(d, var, predictors, miss, rng):
    observed = ~miss
    trials = d.trial_id.to_numpy()
    measuring = np.unique(trials[observed])
    codes = {t: i for i, t in enumerate(measuring)}
    x_pred = d[predictors].to_numpy(float)
    mu_x = x_pred[observed].mean(axis=0)
    sd_x = x_pred[observed].std(axis=0)
    sd_x[sd_x == 0] = 1.0
    z = (x_pred - mu_x) / sd_x
    in_measuring = np.isin(trials, measuring)
    dummies = np.zeros((len(d), len(measuring)))
    dummies[np.flatnonzero(in_measuring), [codes[t] for t in trials[in_measuring]]] = 1.0
    design = np.column_stack([dummies, z])
    y = d[var].to_numpy(float)
    xo, yo = design[observed], y[observed]
    binary = var in BINARY_COVARIATES
    k = len(measuring)
    if binary:
        beta, cov = _logistic(xo, yo)
        draw = _draw_normal(rng, beta, cov)
        alpha_var = np.diag(cov)[:k]
    else:
        beta, *_ = np.linalg.lstsq(xo, yo, rcond=None)
        resid = yo - xo @ beta
        dof = max(len(yo) - xo.shape[1], 1)
        sigma2 = resid @ resid / rng.chisquare(dof)
        xtx_inv = np.linalg.pinv(xo.T @ xo)
        draw = _draw_normal(rng, beta, sigma2 * xtx_inv)
        alpha_var = sigma2 * np.diag(xtx_inv)[:k]
    lin = design @ draw
    unmeasured = sorted(set(trials[miss]) - set(measuring))
    if unmeasured:
        drawn = _draw_trial_intercepts(beta[:k], alpha_var, unmeasured, rng)
        rows = np.flatnonzero(~in_measuring)
        lin[rows] += np.array([drawn[t] for t in trials[rows]])
    if binary:
        values = rng.binomial(1, special.expit(lin[miss])).astype(float)
    else:
        values = lin[miss] + rng.normal(0, np.sqrt(sigma2), miss.sum())
        low, high = IMPUTED_RANGES.get(var, (-np.inf, np.inf))
        values = np.clip(values, low, high)
    out = d[var].to_numpy(float).copy()
    out[miss] = values
    return out


def impute_once(d: pd.DataFrame, covariates, outcomes=("pain", "function"), rng=None, iterations=5) -> pd.DataFrame:
    """One completed copy of ``d`` (one row per participant; columns trial_id, exercise,
    pain_bl, function_bl, the outcomes and the covariates)."""
    rng = rng or np.random.default_rng()
    d = d.copy()
    variables = [v for v in list(covariates) + list(outcomes) if d[v].isna().any()]
    missing = {v: d[v].isna().to_numpy() for v in variables}
    for v in variables:  # start from trial means, or the overall mean where a trial never measured v
        fill = d.groupby("trial_id")[v].transform("mean").fillna(d[v].mean())
        if v in BINARY_COVARIATES:
            fill = (fill > 0.5).astype(float)
        d[v] = d[v].fillna(fill)
    always = ["exercise", "pain_bl", "function_bl"]
    for _ in range(iterations):
        for v in variables:
            others = [c for c in list(covariates) + list(outcomes) if c != v and c not in always]
            if v in outcomes:
                interactions = {f"_ex_{c}": d.exercise * d[c] for c in covariates if c not in always}
            else:
                interactions = {f"_ex_{o}": d.exercise * d[o] for o in outcomes}
            work = d.assign(**interactions)
            predictors = always + others + list(interactions)
            d[v] = _impute_variable(work, v, predictors, missing[v], rng)
    return d
