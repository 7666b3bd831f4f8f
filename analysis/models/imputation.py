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

The trial intercepts are never expanded into indicator columns (a thousand trials would make
a design of a thousand columns per draw): linear models are fitted by within-trial demeaning
and logistic ones by Newton steps on the block-arrow Hessian, and the draws use the exact
factorisation of the joint posterior (slopes, then intercepts given slopes).

The imputation model includes exercise x outcome (for covariates) and exercise x covariate
(for outcomes) terms, so that it is congenial with the modifier analyses.

Written by hand: statsmodels' MICE and scikit-learn's IterativeImputer have no notion of
clusters or of systematically missing variables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from analysis.models.pertrial import group_indicator

# a predictor whose within-trial sum of squares not explained by the earlier predictors is
# below this fraction of the largest predictor's is aliased (up to the rounding of the
# cross-products) and left out of a linear imputation model
COLLINEAR = 1e-9

__all__ = ["rubin", "impute_once", "ChainedImputer", "TrialRegression", "RowChunks", "linear_trial_regression",
           "logistic_trial_regression"]


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


@dataclass
class TrialRegression:
    """A regression with a fixed intercept per trial, summarised for posterior draws.

    ``alpha`` (k trial intercepts) and ``beta`` (common slopes) are the estimates. Their
    joint covariance, times ``scale`` (sigma^2 for a linear model, 1 for a logistic one),
    is never formed as a (k + p) x (k + p) matrix: it is kept factorised as the covariance
    of beta (``beta_cov``), the intercepts' variances given beta (``alpha_cond_var``) and
    their regression on beta (``lever``: E[alpha | beta] = alpha + lever (beta - beta_hat)).
    ``alpha_var`` is each intercept's marginal variance (the diagonal of the full inverse).
    ``rss`` and ``dof``: a linear model's residual sum of squares and its degrees of freedom.
    """

    alpha: np.ndarray
    beta: np.ndarray
    beta_cov: np.ndarray
    alpha_cond_var: np.ndarray
    lever: np.ndarray
    rss: float = np.nan
    dof: int = 0
    centre: np.ndarray = None  # the predictors enter as (z - centre) / scale (None: as given)
    scale: np.ndarray = None

    @property
    def alpha_var(self):
        return self.alpha_cond_var + np.einsum("ij,jk,ik->i", self.lever, self.beta_cov, self.lever)

    def draw(self, rng, scale=1.0):
        """A joint normal draw of (alpha, beta): beta from its marginal, then alpha given
        beta (the exact factorisation of the joint normal)."""
        fits = TrialRegressions(*(np.asarray(getattr(self, f))[None] for f in TrialRegressions.STACKED))
        alpha, beta = fits.draw([rng], np.array([scale]))
        return alpha[0], beta[0]


@dataclass
class TrialRegressions:
    """Regressions of one variable in several data sets (the chains of chained equations
    drawn side by side), each field of ``TrialRegression`` with a leading axis of data sets
    (``rss`` and ``dof`` lists). ``chain(c)`` is data set c's regression."""

    STACKED = ("alpha", "beta", "beta_cov", "alpha_cond_var", "lever")

    alpha: np.ndarray
    beta: np.ndarray
    beta_cov: np.ndarray
    alpha_cond_var: np.ndarray
    lever: np.ndarray
    rss: list = None
    dof: list = None
    centre: np.ndarray = None
    scale: np.ndarray = None

    def chain(self, c) -> TrialRegression:
        return TrialRegression(*(getattr(self, f)[c] for f in self.STACKED),
                               rss=self.rss[c] if self.rss is not None else np.nan,
                               dof=self.dof[c] if self.dof is not None else 0,
                               centre=None if self.centre is None else self.centre[c],
                               scale=None if self.scale is None else self.scale[c])

    def draw(self, rngs, scales):
        """``TrialRegression.draw`` in every data set, data set c from ``rngs[c]`` with scale
        ``scales[c]``: each generator draws what a draw alone draws, in the same order, and
        the arithmetic is that of a draw alone with a leading axis (products matrix by matrix),
        so each draw's numbers are those of drawing it alone."""
        k, p = self.alpha.shape[1], self.beta.shape[1]
        e = np.empty((len(rngs), p))
        noise = np.empty((len(rngs), k))
        for c, rng in enumerate(rngs):  # beta's normal deviates, then the intercepts'
            e[c], noise[c] = rng.standard_normal(p), rng.standard_normal(k)
        beta = _draw_normal_many(self.beta, scales[:, None, None] * self.beta_cov, e)
        noise *= np.sqrt(scales[:, None] * self.alpha_cond_var)
        return self.alpha + _times(self.lever, beta - self.beta) + noise, beta


def _times(a, v):
    """a[c] @ v[c] for each c (a: (C, m, p), v: (C, p)): numpy multiplies each matrix by its
    vector as a matrix-vector product, the same numbers as a[c] @ v[c] alone."""
    return (a @ v[:, :, None])[:, :, 0]


def _dot(u, v):
    """u[c] @ v[c] for each c (vectors): the same numbers as each dot product alone (np.einsum
    sums in another order)."""
    return (u[:, None, :] @ v[:, :, None])[:, 0, 0]


def linear_trial_regression(codes, k, z, y=None, indicator=None, standardise=False) -> TrialRegression:
    """Least squares with a fixed intercept per trial by within-trial demeaning
    (Frisch-Waugh-Lovell): beta from the demeaned data, alpha_i = ybar_i - zbar_i' beta.
    The same numbers as a regression on k trial indicators (tested), in O(n p^2) time and
    O(n p) memory rather than O(n (k + p)^2) and O(n (k + p)).

    Everything comes from cross-products of the rows (z'z, z'y, y'y and the trials' sums),
    with the trials' means taken out afterwards (sum of squares within trials = total minus
    n_i zbar_i zbar_i'), so the demeaned n x p matrix is never formed. ``y``: the outcome, or
    None when it is the last column of ``z`` (as the imputation gathers it: one product of
    [z, y] with itself then gives every cross-product in one pass over the rows).
    ``standardise``: fit on the predictors centred and scaled to SD 1 (``centre``, ``scale``
    of the result), also from the cross-products. Aliased predictors (``_aliased``) get a
    coefficient of 0 and no variance, as in R's lm. ``indicator``: the rows' trial indicator
    (``group_indicator(codes, k)``) when the caller keeps it."""
    zy_rows = z if y is None else np.column_stack([z, y])
    return linear_trial_regressions(codes, k, zy_rows[None], indicator, standardise).chain(0)


def linear_trial_regressions(codes, k, zy_rows, indicator=None, standardise=False) -> TrialRegressions:
    """``linear_trial_regression`` of several data sets with the same rows and trials
    (``zy_rows``: (data sets, n, p + 1), the outcome last), each from the same arithmetic
    with a leading axis of data sets: each regression's numbers are those of fitting it
    alone (tested)."""
    n_sets, n, p = zy_rows.shape[0], zy_rows.shape[1], zy_rows.shape[2] - 1
    n_i = np.bincount(codes, minlength=k).astype(float)
    indicator = group_indicator(codes, k) if indicator is None else indicator
    # the trials' sums: one sparse product with the data sets side by side, then each data
    # set's sums as one array (the products below take the layout of a single fit's: with
    # the data sets' rows interleaved, numpy multiplies in another order)
    sums = (indicator @ np.moveaxis(zy_rows, 0, 1).reshape(n, -1)).reshape(k, n_sets, p + 1)
    sums = np.ascontiguousarray(sums.transpose(1, 0, 2))
    cross = np.swapaxes(zy_rows, 1, 2) @ zy_rows
    z_sums, y_sums = sums[:, :, :p], sums[:, :, p]
    zbar, ybar = z_sums / n_i[:, None], y_sums / n_i
    zz = cross[:, :p, :p]
    centre, scale = np.zeros((n_sets, p)), np.ones((n_sets, p))
    if standardise:
        centre = z_sums.sum(axis=1) / n
        constant, scale = _standard_deviations(centre, np.diagonal(zz, axis1=1, axis2=2) / n - centre * centre)
    # within-trial sums of squares and products
    gram = (zz - np.swapaxes(z_sums, 1, 2) @ zbar) / (scale[:, :, None] * scale[:, None, :])
    zy = (cross[:, :p, p] - _times(np.swapaxes(z_sums, 1, 2), ybar)) / scale
    if standardise:  # what is left of a constant column is rounding
        for c in np.flatnonzero(constant.any(axis=1)):
            gram[c][constant[c]], gram[c][:, constant[c]], zy[c][constant[c]] = 0.0, 0.0, 0.0
    yy = cross[:, p, p] - _dot(y_sums, ybar)
    kept = ~_aliased_many(gram)
    rank = kept.sum(axis=1)
    if kept.all():  # the usual case: the same inverses without selecting rows and columns
        gram_inv = np.linalg.inv(gram)
    else:
        gram_inv = np.zeros((n_sets, p, p))
        for c in range(n_sets):
            if kept[c].all():
                gram_inv[c] = np.linalg.inv(gram[c])
            else:
                gram_inv[c][np.ix_(kept[c], kept[c])] = np.linalg.inv(gram[c][np.ix_(kept[c], kept[c])])
    beta = _times(gram_inv, zy)
    zbar_std = (zbar - centre[:, None, :]) / scale[:, None, :]
    residual = yy - _dot(zy, beta)
    return TrialRegressions(alpha=ybar - _times(zbar_std, beta), beta=beta, beta_cov=gram_inv,
                            alpha_cond_var=np.broadcast_to(1 / n_i, (n_sets, k)), lever=-zbar_std,
                            rss=[max(float(r), 0.0) for r in residual],
                            dof=[max(n - k - int(r), 1) for r in rank], centre=centre, scale=scale)


class RowChunks:
    """The rows of a regression in trial order, cut into runs of ``CHUNK_ROWS``: what a pass
    over the rows needs to sum per trial within each run (``np.add.reduceat``; the run's
    trials as a slice when consecutive, as they are when every trial has rows: adding into a
    slice costs less than into listed rows) and to keep each run's arrays in the
    processor's cache. ``order``: the rows' stable sort by trial, None when they are in
    trial order already (as the analysis samples are)."""

    CHUNK_ROWS = 2048  # 2,048 x 16 doubles (256 kB) stay in a core's cache; measured best of 1,024 to 16,384

    def __init__(self, codes):
        codes = np.asarray(codes)
        self.order = None if np.all(codes[1:] >= codes[:-1]) else np.argsort(codes, kind="stable")
        codes = codes if self.order is None else codes[self.order]
        self.runs = []
        for first in range(0, len(codes), self.CHUNK_ROWS):
            run = codes[first:first + self.CHUNK_ROWS]
            starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
            trials = run[starts]  # in order, and consecutive when every trial has rows: then a slice
            if len(trials) and trials[-1] - trials[0] + 1 == len(trials):
                trials = slice(int(trials[0]), int(trials[-1]) + 1)
            self.runs.append((first, first + len(run), run, trials, starts))


def logistic_trial_regression(codes, k, z, y, ridge=1e-4, iters=50, start=None, chunks=None) -> TrialRegression:
    """Logistic regression with a fixed intercept per trial, by Newton's method on the
    block-arrow Hessian [[D, C], [C', B]] (D diagonal: one intercept per trial): each step
    solves the p x p Schur complement S = B - C' D^-1 C, so the cost is O(n p^2 + k p^2)
    rather than O((k + p)^3). A small ridge penalty on every parameter keeps the estimates
    finite when a trial's binary variable is separated by the predictors. ``start``:
    (alpha, beta) to begin from (the previous chained-equations cycle's estimates);
    ``chunks``: the rows' ``RowChunks`` when the caller keeps them."""
    start = None if start is None else (np.asarray(start[0])[None], np.asarray(start[1])[None])
    return logistic_trial_regressions(codes, k, np.asarray(z, float)[None], y, ridge, iters, start, chunks).chain(0)


def logistic_trial_regressions(codes, k, z, y, ridge=1e-4, iters=50, start=None, chunks=None) -> TrialRegressions:
    """``logistic_trial_regression`` of several data sets with the same rows, trials and
    outcome ``y`` (``z``: (data sets, n, p); ``start``: stacked (alpha, beta)), each from the
    same arithmetic with a leading axis of data sets, and each stopping when its own steps
    do (a data set that has stopped keeps its estimates while the others go on): each
    regression's numbers are those of fitting it alone (tested)."""
    n_sets, p = z.shape[0], z.shape[2]
    n_i = np.bincount(codes, minlength=k).astype(float)
    if start is None:
        rate = np.clip((np.bincount(codes, weights=y, minlength=k) + 0.5) / (n_i + 1), 1e-3, 1 - 1e-3)
        alpha, beta = np.tile(special.logit(rate), (n_sets, 1)), np.zeros((n_sets, p))
    else:
        alpha, beta = start[0].copy(), start[1].copy()
    chunks = RowChunks(codes) if chunks is None else chunks
    if chunks.order is not None:
        z, y = z[:, chunks.order], y[chunks.order]
    longest = max((last - first for first, last, *_ in chunks.runs), default=0)
    # each run's z w, and its w and y - mu side by side: z w in an array of its own (written
    # into columns of a wider array, the product took twice as long)
    zw_room, wr_room = np.empty((n_sets, longest, p)), np.empty((n_sets, longest, 2))

    def blocks(alpha, beta):
        """Gradient and Hessian blocks at (alpha, beta), in one pass over the rows by runs
        (each run read once while in cache: 1.5 times faster than whole-column operations
        at 400,000 rows)."""
        sum_zw, sum_wr = np.zeros((n_sets, k, p)), np.zeros((n_sets, k, 2))
        g_b, b = np.zeros((n_sets, p)), np.zeros((n_sets, p, p))
        for first, last, run, trials, starts in chunks.runs:
            zr, zw, wr = z[:, first:last], zw_room[:, :last - first], wr_room[:, :last - first]
            mu = special.expit(alpha[:, run] + _times(zr, beta))
            w, resid = wr[:, :, 0], wr[:, :, 1]
            np.multiply(mu, 1 - mu, out=w)
            np.subtract(y[first:last], mu, out=resid)
            np.multiply(zr, w[:, :, None], out=zw)
            g_b += _times(np.swapaxes(zr, 1, 2), resid)
            b += np.swapaxes(zw, 1, 2) @ zr
            sum_zw[:, trials] += np.add.reduceat(zw, starts, axis=1)  # per trial: sums of z w,
            sum_wr[:, trials] += np.add.reduceat(wr, starts, axis=1)  # of w and of y - mu
        g_a = sum_wr[:, :, 1] - ridge * alpha
        d = sum_wr[:, :, 0] + ridge
        return g_a, g_b - ridge * beta, d, sum_zw, b + ridge * np.eye(p)

    def newton_step(g_a, g_b, d, c, b, going):
        cd = c / d[:, :, None]
        schur = b - np.swapaxes(c, 1, 2) @ cd
        rhs = g_b - _times(np.swapaxes(cd, 1, 2), g_a)
        try:
            step_b = np.linalg.solve(schur, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # one that has stopped may not solve: each of the others alone
            step_b = np.zeros((n_sets, p))
            for i in np.flatnonzero(going):
                step_b[i] = np.linalg.solve(schur[i], rhs[i])
        return (g_a - _times(c, step_b)) / d, step_b, cd, schur

    going = np.ones(n_sets, bool)
    d_end, cd_end, schur_end = np.empty((n_sets, k)), np.empty((n_sets, k, p)), np.empty((n_sets, p, p))
    for _ in range(iters):
        g_a, g_b, d, c, b = blocks(alpha, beta)
        step_a, step_b, cd, schur = newton_step(g_a, g_b, d, c, b, going)
        alpha[going] += step_a[going]
        beta[going] += step_b[going]
        largest = zip(np.max(np.abs(step_a), axis=1).tolist(), np.max(np.abs(step_b), axis=1, initial=0.0).tolist())
        # the covariance from this step's Hessian: its point is within 1e-8 of the optimum
        stopped = going & np.array([max(a, b) < 1e-8 for a, b in largest])
        d_end[stopped], cd_end[stopped], schur_end[stopped] = d[stopped], cd[stopped], schur[stopped]
        going &= ~stopped
        if not going.any():
            break
    else:
        _, _, d, c, b = blocks(alpha, beta)
        cd = c / d[:, :, None]
        schur = b - np.swapaxes(c, 1, 2) @ cd
        d_end[going], cd_end[going], schur_end[going] = d[going], cd[going], schur[going]
    return TrialRegressions(alpha=alpha, beta=beta, beta_cov=np.linalg.inv(schur_end), alpha_cond_var=1 / d_end,
                            lever=-cd_end)


def _aliased(gram) -> np.ndarray:
    """The predictors to leave out, in order as R's lm does (its QR keeps the columns' order
    and moves an aliased one to the end): those whose sum of squares not explained by the
    earlier kept ones is below ``COLLINEAR`` of the largest predictor's. That residual sum of
    squares is the square of the Cholesky factor's diagonal, so one factorisation settles the
    usual case of none; otherwise the columns are checked one at a time."""
    p = len(gram)
    if p == 0:
        return np.zeros(0, bool)
    floor = COLLINEAR * max(float(np.max(np.diag(gram))), 0.0)
    try:
        if np.all(np.diag(np.linalg.cholesky(gram)) ** 2 > floor):
            return np.zeros(p, bool)
    except np.linalg.LinAlgError:
        pass
    kept: list[int] = []
    for j in range(p):
        g = gram[j, kept]
        left = gram[j, j] - (g @ np.linalg.solve(gram[np.ix_(kept, kept)], g) if kept else 0.0)
        if left > floor:
            kept.append(j)
    aliased = np.ones(p, bool)
    aliased[kept] = False
    return aliased


def _aliased_many(gram) -> np.ndarray:
    """``_aliased`` of each of a stack of gram matrices: one stacked factorisation settles
    the usual case of none in every one."""
    floor = COLLINEAR * np.maximum(np.max(np.diagonal(gram, axis1=1, axis2=2), axis=1, initial=0.0), 0.0)
    try:
        clean = np.all(np.diagonal(np.linalg.cholesky(gram), axis1=1, axis2=2) ** 2 > floor[:, None], axis=1)
    except np.linalg.LinAlgError:
        clean = np.zeros(len(gram), bool)
    return np.array([np.zeros(gram.shape[1], bool) if ok else _aliased(g) for ok, g in zip(clean, gram)]).reshape(
        gram.shape[:2])


def _standard_deviations(mean, var):
    """The columns constant up to rounding (a variance below 1e-10 of the squared mean: an SD
    of 1e-5 of the mean), and the SDs that standardise the columns, 1 for a constant one.
    Scaling such a column to SD 1 would turn its rounding into a predictor whose coefficient,
    and so the imputed values, depend on the last digits of the data."""
    constant = var <= 1e-10 * mean * mean
    return constant, np.sqrt(np.where(constant, 1.0, var))


def _draw_normal(rng, mean, cov):
    """A multivariate normal draw, mean + L e with L the Cholesky factor of ``cov``: L changes
    smoothly with the covariance, so a change in rounding moves the draw by as little (an
    eigendecomposition's vectors can rotate by much more). Rows of zeros (an aliased
    predictor) draw nothing; a covariance that is not positive definite otherwise (not made
    here) draws from its eigendecomposition, eigenvalues clipped at 0."""
    return _draw_normal_many(np.asarray(mean)[None], np.asarray(cov)[None], rng.standard_normal(len(mean))[None])[0]


def _draw_normal_many(mean, cov, e):
    """``_draw_normal`` of each (mean[c], cov[c]) with its standard normal deviates e[c]:
    one stacked factorisation in the usual case (the same numbers as each alone)."""
    cov = (cov + np.swapaxes(cov, 1, 2)) / 2
    if np.all(np.diagonal(cov, axis1=1, axis2=2) > 0):
        try:  # the usual case: the same numbers without selecting rows and columns
            return mean + _times(np.linalg.cholesky(cov), e)
        except np.linalg.LinAlgError:
            pass
    return np.array([_normal_from(m, v, x) for m, v, x in zip(mean, cov, e)])


def _normal_from(mean, cov, e):
    """mean + L e for one symmetric ``cov`` (``_draw_normal``'s rules)."""
    active = np.diag(cov) > 0
    try:
        if active.all():
            return mean + np.linalg.cholesky(cov) @ e
        out = mean.copy()
        out[active] += np.linalg.cholesky(cov[np.ix_(active, active)]) @ e[active]
        return out
    except np.linalg.LinAlgError:
        evals, evecs = np.linalg.eigh(cov)
        return mean + evecs @ (np.sqrt(np.clip(evals, 0, None)) * e)


def _draw_unmeasured_intercepts(alpha, alpha_var, n_unmeasured, rng):
    """Intercepts for trials that never measured the variable: normal around the measuring
    trials' mean with their between-trial variance (moment estimate)."""
    tau2 = max(0.0, alpha.var(ddof=1) - alpha_var.mean()) if len(alpha) >= 2 else 0.0
    sd = np.sqrt(tau2 + alpha_var.mean() / max(len(alpha), 1))
    return alpha.mean() + rng.normal(0, sd, n_unmeasured)


class _VariableModel:
    """What the imputation model of one incomplete variable needs that does not change
    between chained-equations cycles or imputations (its missing rows, the trials that
    measured it, and what its regression sums its observed rows by: the trial indicator of
    a linear model, the row runs of a logistic one): made once, used m x cycles times."""

    def __init__(self, codes, miss, binary):
        self.miss = miss
        self.observed = ~miss
        self.observed_rows, self.missing_rows = np.flatnonzero(self.observed), np.flatnonzero(miss)
        self.measuring = np.zeros(codes.max() + 1, bool)
        self.measuring[codes[self.observed]] = True
        self.renumber = np.cumsum(self.measuring) - 1  # trial number among the measuring trials
        self.k = int(self.measuring.sum())
        self.codes_obs = self.renumber[codes[self.observed]]
        self.indicator = None if binary else group_indicator(self.codes_obs, self.k)
        self.chunks = RowChunks(self.codes_obs) if binary else None
        self.codes_miss = codes[miss]
        measured_rows = self.measuring[self.codes_miss]
        self.unmeasured_rows = ~measured_rows
        self.renumbered_miss = np.where(measured_rows, self.renumber[self.codes_miss], 0)
        self.unmeasured, self.unmeasured_inverse = np.unique(self.codes_miss[self.unmeasured_rows],
                                                             return_inverse=True)


def _impute_variable(zo, zm, y, model: _VariableModel, rngs, binary, bounds, start=None):
    """New values of ``y`` where ``model.miss`` in each of several data sets (a leading axis:
    data set c draws from ``rngs[c]``), from the predictors at the observed rows (``zo``;
    for a linear model with ``y`` itself as a last column) and at the missing rows (``zm``).
    ``binary``: a 0/1 variable (logistic model), otherwise linear with values clipped to
    ``bounds``. The predictors enter standardised on the observed rows (conditioning, and a
    scale-free ridge): the logistic model standardises ``zo`` in place, the linear one from
    cross-products. Each data set's numbers are those of imputing it alone: its generator
    draws the same values in the same order, and every product is taken matrix by matrix.
    Returns the new values at the missing rows and the fitted regressions."""
    n_sets = len(rngs)
    if binary:
        yo = y[0, model.observed]  # observed values are never imputed: the same in every data set
        mu = zo.mean(axis=1)
        zo -= mu[:, None, :]
        constant, sd = _standard_deviations(mu, np.einsum("cij,cij->cj", zo, zo) / zo.shape[1])
        for c in np.flatnonzero(constant.any(axis=1)):
            zo[c][:, constant[c]] = 0.0  # what centring left of a constant column is rounding
        zo /= sd[:, None, :]
        fits = logistic_trial_regressions(model.codes_obs, model.k, zo, yo, start=start, chunks=model.chunks)
        scale = np.ones(n_sets)
    else:
        fits = linear_trial_regressions(model.codes_obs, model.k, zo, indicator=model.indicator, standardise=True)
        mu, sd = fits.centre, fits.scale
        # sigma^2 drawn from its posterior
        scale = np.array([rss / rng.chisquare(dof) for rss, dof, rng in zip(fits.rss, fits.dof, rngs)])
    alpha, beta = fits.draw(rngs, scale)
    intercept = np.where(model.unmeasured_rows, 0.0, alpha[:, model.renumbered_miss])
    if len(model.unmeasured):
        for c, rng in enumerate(rngs):
            drawn = _draw_unmeasured_intercepts(fits.alpha[c], scale[c] * fits.chain(c).alpha_var,
                                                len(model.unmeasured), rng)
            intercept[c, model.unmeasured_rows] = drawn[model.unmeasured_inverse]
    slopes = beta / sd  # on the predictors as given
    lin = intercept - _dot(mu, slopes)[:, None] + _times(zm, slopes)
    if binary:
        chance = special.expit(lin)
        return np.array([rng.binomial(1, q).astype(float) for rng, q in zip(rngs, chance)]), fits
    values = np.array([row + rng.normal(0, np.sqrt(s), len(row)) for rng, row, s in zip(rngs, lin, scale)])
    return np.clip(values, *bounds), fits


def impute_once(d: pd.DataFrame, covariates, outcomes=("pain", "function"), rng=None, iterations=5,
                binary=(), ranges=None) -> pd.DataFrame:
    """One completed copy of ``d`` (one row per participant; columns trial_id, exercise,
    pain_bl, function_bl, the outcomes and the covariates): ``ChainedImputer.draw`` as a frame."""
    imputer = ChainedImputer(d, covariates, outcomes, iterations, binary, ranges)
    columns = imputer.draw(rng or np.random.default_rng())
    out = d.copy()
    for v in imputer.variables:
        out[v] = columns[v]
    return out


class ChainedImputer:
    """Chained-equations imputation of one data set, set up once and drawn from m times.

    ``d``: one row per participant; columns trial_id, exercise, pain_bl, function_bl, the
    outcomes and the covariates. ``binary`` names the 0/1 variables (imputed by logistic
    models); ``ranges`` maps a variable to the (low, high) its imputed values are clipped to
    (default: unbounded).

    The baselines (pain_bl, function_bl) predict every other variable; where one is missing
    (an unusable baseline value) it is imputed too, from the others. A variable that no
    participant has (no trial measured it) cannot be imputed: it stays missing and is left out
    of the other variables' imputation models. Works on numpy copies (the pandas overhead of
    rebuilding frames dominated at a million rows): each variable's values in a row of their
    own, and the predictors with the exercise interactions row-major, as the regressions read
    them; ``draws`` keeps one of each per data set drawn side by side."""

    ALWAYS = ("exercise", "pain_bl", "function_bl")

    def __init__(self, d: pd.DataFrame, covariates, outcomes=("pain", "function"), iterations=5, binary=(),
                 ranges=None):
        self.iterations, self.binary, self.ranges = iterations, set(binary), ranges or {}
        always = list(self.ALWAYS)
        covariates, outcomes = list(covariates), list(outcomes)
        names = list(dict.fromkeys(always + covariates + outcomes))
        self.col = {c: i for i, c in enumerate(names)}
        self.data = np.asfortranarray(d[names].to_numpy(float))
        self.codes = pd.factorize(d.trial_id)[0]
        self.k = self.codes.max() + 1 if len(self.codes) else 0
        never = {v for v in covariates + outcomes if np.isnan(self.data[:, self.col[v]]).all()}
        self.covariates = [c for c in covariates if c not in never]
        self.outcomes = [o for o in outcomes if o not in never]
        self.variables = [v for v in dict.fromkeys(always[1:] + self.covariates + self.outcomes)
                          if np.isnan(self.data[:, self.col[v]]).any()]
        self.models = {v: _VariableModel(self.codes, np.isnan(self.data[:, self.col[v]]), v in self.binary)
                       for v in self.variables}
        interacting = [c for c in self.covariates + self.outcomes if c not in always]
        self.design_col = {c: j for j, c in enumerate(names + ["exercise*" + c for c in interacting])}
        self.predictors = {v: self._predictor_columns(v) for v in self.variables}
        # the observed rows' columns: a linear model's cross-products take the variable with them
        self.gathered = {v: self.predictors[v] if v in self.binary else np.r_[self.predictors[v], self.design_col[v]]
                         for v in self.variables}
        self._start = self._room = None  # made at the first draw (``_starting_point``), kept for the others

    def _predictor_columns(self, v) -> np.ndarray:
        """Where the predictors of ``v`` sit in the design (``_design``): the baselines and every
        other variable, then the exercise interactions (with the covariates for an outcome,
        with the outcomes for a covariate: congenial with the modifier analyses)."""
        always = list(self.ALWAYS)
        others = [c for c in self.covariates + self.outcomes if c != v and c not in always]
        interacting = [c for c in self.covariates if c not in always] if v in self.outcomes else self.outcomes
        plain = [c for c in always + others if c != v]
        return np.array([self.design_col[c] for c in plain] + [self.design_col["exercise*" + c] for c in interacting],
                        dtype=np.intp)

    def _update(self, design, data, v, rows=slice(None)):
        """Write ``v``'s values (and their exercise interaction) at ``rows`` into the design,
        in every data set (``data``: (data sets, variables, rows); ``design``: (data sets,
        rows, columns))."""
        values = data[:, self.col[v], rows]
        design[:, rows, self.design_col[v]] = values
        if "exercise*" + v in self.design_col:
            design[:, rows, self.design_col["exercise*" + v]] = data[:, self.col["exercise"], rows] * values

    @staticmethod
    def _gather(design, rows, columns, out, cut):
        """design[:, rows][:, :, columns] as row-major arrays (one per data set) in ``out``, the
        larger of the two cuts first, through ``cut`` (both flat arrays of at least design's
        size, kept for the whole draw: new arrays of this size cost more than the copying).
        Taking along one axis of a row-major array copies whole runs; writing one column at a
        time into one strides through memory, three times slower."""
        n_sets, n_all, width = design.shape
        n, p = len(rows), len(columns)
        out = out[:n_sets * n * p].reshape(n_sets, n, p)
        if 2 * n > n_all:
            cut = cut[:n_sets * n_all * p].reshape(n_sets, n_all, p)
            np.take(design, columns, axis=2, out=cut, mode="clip")  # clip: unbuffered (indices are valid)
            return np.take(cut, rows, axis=1, out=out, mode="clip")
        cut = cut[:n_sets * n * width].reshape(n_sets, n, width)
        np.take(design, rows, axis=1, out=cut, mode="clip")
        return np.take(cut, columns, axis=2, out=out, mode="clip")

    def _starting_point(self):
        """The data with every missing value at its trial's mean (the overall mean where a
        trial never measured the variable; for a binary variable, that mean rounded), and
        its design: where every draw starts. It involves no random draw, so it is made once
        (at a million participants, half a second of each draw). The data as (variables,
        rows), each variable's values in a row."""
        data, col, codes, k = self.data.T.copy(), self.col, self.codes, self.k
        for v in self.variables:
            values, miss = data[col[v]], self.models[v].miss
            seen = ~miss
            n_seen = np.bincount(codes[seen], minlength=k)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.bincount(codes[seen], weights=values[seen], minlength=k) / n_seen
            fill = np.where(n_seen > 0, means, values[seen].mean())[codes[miss]]
            values[miss] = (fill > 0.5).astype(float) if v in self.binary else fill
        return data, self._design(data[None])[0]

    def _design(self, data) -> np.ndarray:
        """Every variable and every exercise interaction as one row-major array per data set,
        from which each variable's predictors are gathered (``_gather``) and into which each
        newly imputed column is written back (``_update``)."""
        out = np.empty((len(data), data.shape[2], len(self.design_col)))
        for v in self.col:
            self._update(out, data, v)
        return out

    # at most this many rows of data sets are drawn side by side: the demo's 1,500 to 2,000
    # participants ten at a time (a task's imputations: 0.66 -> 0.48 s for the 40 imputations
    # of the demo's two comparisons, best of 3), 30,000 or more one at a time (two at a time
    # were slower there: the larger steps no longer stay in the processor's cache)
    LOCKSTEP_ROWS = 24_000

    def draw(self, rng) -> dict:
        """One completed data set as columns ({name: values})."""
        return next(self.draws([rng]))

    def draws(self, rngs):
        """The completed data sets of ``rngs`` (one generator each), in their order, each as
        ``draw`` of its generator gives it (the same numbers, tested): as many as
        ``LOCKSTEP_ROWS`` allows are drawn side by side, every step of chained equations
        taken for all of them at once (a step of one data set of 2,000 participants is a few
        dozen numpy calls of some microseconds each, half of its time), and yielded as they
        are done."""
        if self._start is None:
            self._start = self._starting_point()
        rngs = list(rngs)
        at_once = min(max(1, self.LOCKSTEP_ROWS // max(len(self.codes), 1)), max(len(rngs), 1))
        if self._room is None or len(self._room[0]) < at_once * self._start[1].size:
            # the predictors' room, kept for the later draws (new arrays of this size, at a
            # million participants, cost more than the copying into them)
            self._room = tuple(np.empty(at_once * self._start[1].size) for _ in range(3))
        for first in range(0, len(rngs), at_once):
            yield from self._draw_together(rngs[first:first + at_once])

    def _draw_together(self, rngs) -> list[dict]:
        n_sets = len(rngs)
        data = np.repeat(self._start[0][None], n_sets, axis=0)  # (data sets, variables, rows)
        design = np.repeat(self._start[1][None], n_sets, axis=0)  # (data sets, rows, columns)
        observed, missing, cut = self._room
        col, fitted = self.col, {}
        for _ in range(self.iterations):
            for v in self.variables:
                start = (fitted[v].alpha, fitted[v].beta) if v in fitted else None  # warm start: fewer Newton steps
                model, columns = self.models[v], self.predictors[v]
                zo = self._gather(design, model.observed_rows, self.gathered[v], observed, cut)
                zm = self._gather(design, model.missing_rows, columns, missing, cut)
                values, fitted[v] = _impute_variable(zo, zm, data[:, col[v]], model, rngs, v in self.binary,
                                                     self.ranges.get(v, (-np.inf, np.inf)), start)
                data[:, col[v], model.missing_rows] = values
                self._update(design, data, v, model.missing_rows)  # only its missing values changed
        return [{c: data[i, j] for c, j in col.items()} for i in range(n_sets)]
