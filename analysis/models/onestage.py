"""One-stage linear mixed model for IPD meta-analysis, fitted exactly from per-trial statistics.

Model, for participant j of trial i::

    y_ij = z_ij' b_i + x_ij' beta + t_ij u_i + e_ij,   u_i ~ N(0, tau^2),  e_ij ~ N(0, sigma_i^2)

``z`` holds the trial-specific (stratified) fixed terms (intercept, baseline, covariate
main effects), ``x`` the common fixed terms (exercise first, then interactions), and ``t``
(the first column of ``x``) carries the random exercise effect. Residual variances are one
common ``sigma^2`` (primary) or one per trial.

Why by hand: the restricted likelihood only depends on each trial's cross-products of
``[x, y]`` after projecting out that trial's own ``z`` (Harville 1974), so a likelihood
evaluation costs O(trials) instead of O(participants). statsmodels' MixedLM builds the
stratified design (2 columns per trial) densely and has no small-sample inference; this
module adds Satterthwaite degrees of freedom from an analytic Hessian.

Every per-trial matrix below lives in the algebra spanned by ``I`` and ``t t'`` (``t`` the
residualised exercise column), so products of covariance operators are kept as pairs
``(a, b)`` meaning ``a I + b t t'`` -- see :func:`_op_mul`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from analysis.models.distributions import t_quantile, t_upper_tail
from analysis.models.pertrial import trial_codes

__all__ = [
    "TrialStats",
    "OneStageFit",
    "sufficient_stats",
    "TrialCrossProducts",
    "trial_cross_products",
    "fit_reml",
    "fit_reml_many",
    "reml_deviance",
    "reml_deviance_dense",
    "ml_deviance",
    "ml_deviance_dense",
    "fit_ml_deviance",
]

_RANK_TOL = 1e-10
LOG2PI = np.log(2 * np.pi)


@dataclass(frozen=True)
class TrialStats:
    """Per-trial sufficient statistics of the one-stage model (no row-level data).

    ``cross[i]`` is the (q+1)x(q+1) cross-product of ``[x, y]`` after projecting out
    trial i's own fixed terms; ``resid_df[i]`` is n_i minus their rank; ``logdet_ztz[i]``
    is log|Z_i'Z_i| (makes the likelihood equal the textbook one, constant included).
    """

    trial_ids: np.ndarray
    terms: tuple[str, ...]
    cross: np.ndarray
    resid_df: np.ndarray
    logdet_ztz: np.ndarray
    n: np.ndarray
    n_treated: np.ndarray
    tt_raw: np.ndarray = None  # sum of squares of the (unprojected) exercise column, for ML

    @property
    def k(self) -> int:
        return len(self.trial_ids)

    @functools.cached_property
    def cross_flat(self) -> np.ndarray:
        """(k, (q+1)^2): each trial's cross-product matrix as a row, for matrix products."""
        return self.cross.reshape(self.k, -1)

    @functools.cached_property
    def ss_flat(self) -> np.ndarray:
        """(k, (q+1)^2): each trial's s s' with s the cross-products with the exercise column."""
        s = self.cross[:, :, 0]
        return (s[:, :, None] * s[:, None, :]).reshape(self.k, -1)

    def subset(self, keep) -> TrialStats:
        keep = np.asarray(keep)
        return TrialStats(
            self.trial_ids[keep], self.terms, self.cross[keep], self.resid_df[keep],
            self.logdet_ztz[keep], self.n[keep], self.n_treated[keep], self.tt_raw[keep],
        )


def _group_starts(trial):
    """Sort order, group boundaries and sorted labels for a trial label array."""
    trial = np.asarray(trial)
    if len(trial) > 1:
        change = np.flatnonzero(trial[1:] != trial[:-1]) + 1
        labels = trial[np.r_[0, change]]
        # fast path: rows already grouped by trial in sorted order (as the analysis samples are)
        if len(labels) == 1 or bool(np.all(labels[1:] > labels[:-1])):
            return slice(None), np.r_[0, change], labels
    labels, codes = trial_codes(trial)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    return order, starts, labels


def sufficient_stats(trial, y, x, z=None, terms=None) -> TrialStats:
    """Per-trial statistics for outcome ``y``, common terms ``x`` (exercise first) and
    trial-specific terms ``z`` (an intercept per trial is always included).

    Columns of ``z`` that are constant or collinear within a trial are dropped for that
    trial only, as a rank-deficient fixed effect would be.
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    z = np.zeros((len(y), 0)) if z is None else np.asarray(z, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    p, q = z.shape[1], x.shape[1]
    terms = tuple(terms) if terms is not None else tuple(f"x{j}" for j in range(q))
    cross = trial_cross_products(trial, np.column_stack([z, x, y]), exercise=p)
    return cross.stats(range(p), range(p, p + q), p + q, terms)


@dataclass(frozen=True)
class TrialCrossProducts:
    """Per trial, the means of some columns and the cross-products of the columns centred
    on them (``raw``, k x d x d), and of the exercise column its number of non-zero values
    and its raw sum of squares: everything the one-stage statistics of any model on these
    rows whose terms are among the columns need (``stats``). Several models on the same
    rows (the refits of a completed data set) then share one pass over the rows."""

    labels: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    raw: np.ndarray
    treated: np.ndarray
    tt_raw: np.ndarray

    def stats(self, z, x, y, terms) -> TrialStats:
        """The ``TrialStats`` of outcome column ``y``, common terms ``x`` (exercise first)
        and trial-specific terms ``z`` (column numbers)."""
        columns = [*z, *x, y]
        full = columns == list(range(self.raw.shape[1]))
        raw = self.raw if full else self.raw[:, columns][:, :, columns]
        means = self.means if full else self.means[:, columns]
        return _project_trial_terms(self, raw, means, len(z), tuple(terms))


def trial_cross_products(trial, w, exercise=0) -> TrialCrossProducts:
    """``TrialCrossProducts`` of the columns of ``w`` (n x d), grouped by ``trial``;
    ``exercise``: the number of the exercise column."""
    order, starts, labels = _group_starts(trial)
    w = w[order]
    n_obs = len(w)
    counts = np.diff(np.r_[starts, n_obs])
    # Centring within trial projects out the intercept exactly and keeps sums well conditioned.
    means = np.add.reduceat(w, starts, axis=0) / counts[:, None]
    wc = np.repeat(means, counts, axis=0)
    np.subtract(w, wc, out=wc)  # w minus its trial's means, into the array of means (one new array, not two)
    # per-trial cross-products, one small BLAS product per trial: a tenth of the time of
    # summing the d(d+1)/2 column products with reduceat at d = 7, and no n x d^2 temporary
    d = wc.shape[1]
    k = len(starts)
    bounds = np.r_[starts, n_obs]
    raw = np.empty((k, d, d))
    for i in range(k):
        block = wc[bounds[i]:bounds[i + 1]]
        raw[i] = block.T @ block
    treated = np.add.reduceat((w[:, exercise] != 0).astype(float), starts)
    tt_raw = np.add.reduceat(w[:, exercise] ** 2, starts)
    return TrialCrossProducts(labels, counts, means, raw, treated, tt_raw)


def _project_trial_terms(cross: TrialCrossProducts, raw, means, p, terms) -> TrialStats:
    """The statistics of [x, y] (the columns of ``raw`` after the first ``p``) with each
    trial's own terms (the first ``p``) projected out."""
    counts, k = cross.counts, len(cross.counts)
    zz, zw, ww = raw[:, :p, :p], raw[:, :p, p:], raw[:, p:, p:]
    logdet = np.log(counts.astype(float))
    rank = np.zeros(k, int)
    if p:
        # a column constant within a trial leaves only rounding noise after centring: treat
        # a centred sum of squares below 1e-14 of the raw one as exactly zero
        diag = np.diagonal(zz, axis1=1, axis2=2)
        raw_ss = diag + counts[:, None] * means[:, :p] ** 2
        flat = diag <= 1e-14 * raw_ss
        if flat.any():
            keep = (~flat).astype(float)
            zz = zz * keep[:, :, None] * keep[:, None, :]
            zw = zw * keep[:, :, None]
            diag = np.where(flat, 0.0, diag)
    if p == 1:  # closed form for the usual single trial-specific term (the baseline)
        ok = diag[:, 0] > 0
        inv = np.where(ok, 1.0 / np.where(ok, diag[:, 0], 1.0), 0.0)
        ww = ww - inv[:, None, None] * (zw[:, 0, :, None] * zw[:, 0, None, :])
        rank = ok.astype(int)
        logdet = logdet + np.where(ok, np.log(np.where(ok, diag[:, 0], 1.0)), 0.0)
    elif p:
        # batched over trials: eigen-decompose each trial's scaled Z'Z, keep the columns
        # that are not collinear within that trial, project them out of [x, y]
        scale = np.sqrt(np.where(diag > 0, diag, 1.0))
        evals, evecs = np.linalg.eigh(zz / (scale[:, :, None] * scale[:, None, :]))
        ok = evals > _RANK_TOL * np.maximum(evals.max(axis=1, initial=0.0), 1.0)[:, None]
        inv = np.where(ok, 1.0 / np.where(ok, evals, 1.0), 0.0)
        basis = evecs / scale[:, :, None]
        proj = np.einsum("kij,kj,klj->kil", basis, inv, basis)  # (Z'Z)^+ on the retained columns
        ww = ww - np.einsum("kpi,kpq,kqj->kij", zw, proj, zw)
        rank = ok.sum(axis=1)
        logdet = (
            logdet + np.where(ok, np.log(np.where(ok, evals, 1.0)), 0.0).sum(axis=1) + 2 * np.log(scale).sum(axis=1)
        )
    sym = (ww + np.transpose(ww, (0, 2, 1))) / 2
    resid_df = (counts - 1 - rank).astype(float)
    return TrialStats(cross.labels, terms, sym, resid_df, logdet, counts.astype(int), cross.treated.astype(int),
                      cross.tt_raw)


# ----------------------------------------------------------------------------- likelihood


def _mixed_cross(st: TrialStats, sigma2, tau2):
    """Sum over trials of [x,y]' V_i^{-1} [x,y] and the per-trial log|V_i|."""
    stt = st.cross[:, 0, 0]
    sigma2 = np.broadcast_to(np.asarray(sigma2, float), stt.shape)
    c = tau2 / (sigma2 * (sigma2 + tau2 * stt))
    d = st.cross.shape[1]
    m = ((1 / sigma2) @ st.cross_flat - c @ st.ss_flat).reshape(d, d)
    logdet_v = st.resid_df * np.log(sigma2) + np.log1p(tau2 * stt / sigma2)
    return m, logdet_v


def reml_deviance(st: TrialStats, sigma2, tau2) -> float:
    """-2 x restricted log-likelihood (lme4's REML criterion at these parameters)."""
    q = len(st.terms)
    m, logdet_v = _mixed_cross(st, sigma2, tau2)
    a, b, yy = m[:q, :q], m[:q, q], m[q, q]
    sign, logdet_a = np.linalg.slogdet(a)
    if sign <= 0:
        return np.inf
    rss = yy - b @ np.linalg.solve(a, b)
    nu = st.resid_df.sum() - q
    return float(nu * LOG2PI + logdet_v.sum() + logdet_a + rss + st.logdet_ztz.sum())


def ml_deviance(st: TrialStats, sigma2, tau2) -> float:
    """-2 x log-likelihood (maximum likelihood), for likelihood-ratio tests of fixed effects.

    From the REML deviance: -2 l_ML = -2 l_R - log|F'V^-1 F| + P log(2 pi), where
    log|F'V^-1F| = sum_i log|Z_i'V_i^-1 Z_i| + log|X~'V~^-1 X~| and, by the matrix
    determinant lemma, log|Z_i'V_i^-1Z_i| = log|Z_i'Z_i| - p_i log sigma_i^2 + log(1 - c_i h_i)
    with h_i = t_i't_i - (projected t_i't_i): one more number per trial (``tt_raw``).
    """
    q = len(st.terms)
    stt = st.cross[:, 0, 0]
    sig = np.broadcast_to(np.asarray(sigma2, float), stt.shape)
    p_i = st.n - st.resid_df
    c = tau2 / (sig + tau2 * st.tt_raw)
    h = st.tt_raw - stt
    m, _ = _mixed_cross(st, sig, tau2)
    sign, logdet_a = np.linalg.slogdet(m[:q, :q])
    logdet_zvz = st.logdet_ztz - p_i * np.log(sig) + np.log1p(-c * h)
    n_fixed = p_i.sum() + q
    return float(reml_deviance(st, sig, tau2) - logdet_zvz.sum() - logdet_a + n_fixed * LOG2PI)


def ml_deviance_dense(trial, y, x, z, sigma2, tau2) -> float:
    """Direct dense evaluation of -2 l_ML (a check, not for use)."""
    y, f, v = _dense_model(trial, y, x, z, sigma2, tau2)
    vinv = np.linalg.inv(v)
    beta = np.linalg.solve(f.T @ vinv @ f, f.T @ vinv @ y)
    r = y - f @ beta
    return float(len(y) * LOG2PI + np.linalg.slogdet(v)[1] + r @ vinv @ r)


def fit_ml_deviance(st: TrialStats, random_effect: bool = True) -> float:
    """Minimum ML deviance over (sigma^2, tau^2 >= 0): enough for likelihood-ratio tests.
    The profile in log(gamma) is searched on batched grids (as the REML fit is), then the
    vertex of the parabola through the best point and its neighbours; gamma = 0 is compared."""
    f = _ProfiledML(st)
    at_zero = float(f([0.0])[0])
    if not random_effect:
        return at_zero
    grid = np.linspace(-12.0, 8.0, 81)
    for _ in range(3):
        dev = f(np.exp(grid))
        i = int(np.argmin(dev))
        step = grid[1] - grid[0]
        grid = np.linspace(grid[i] - step, grid[i] + step, 41)
    dev = f(np.exp(grid))
    i = int(np.argmin(dev))
    best = float(dev[i])
    if 0 < i < len(grid) - 1:
        curv = dev[i - 1] - 2 * dev[i] + dev[i + 1]
        if curv > 0:
            vertex = grid[i] + 0.5 * (grid[1] - grid[0]) * (dev[i - 1] - dev[i + 1]) / curv
            best = min(best, float(f([np.exp(vertex)])[0]))
    return min(best, at_zero)


def _profiled_deviance(st: TrialStats, gamma: float) -> tuple[float, float]:
    """REML deviance with sigma^2 profiled out, for the ratio gamma = tau^2 / sigma^2."""
    q = len(st.terms)
    m, logdet_v = _mixed_cross(st, 1.0, gamma)
    a, b, yy = m[:q, :q], m[:q, q], m[q, q]
    sign, logdet_a = np.linalg.slogdet(a)
    rss = yy - b @ np.linalg.solve(a, b)
    nu = st.resid_df.sum() - q
    if sign <= 0 or rss <= 0:
        return np.inf, np.nan
    sigma2 = rss / nu
    dev = nu * (1 + LOG2PI + np.log(sigma2)) + logdet_v.sum() + logdet_a + st.logdet_ztz.sum()
    return float(dev), float(sigma2)


def _dense_model(trial, y, x, z, sigma2, tau2):
    """The full fixed-effects design F (each trial's own independent columns, then x) and the
    N x N covariance matrix V, for the dense checks of the likelihoods."""
    trial = np.asarray(trial)
    y = np.asarray(y, float)
    x = np.asarray(x, float).reshape(len(y), -1)
    z = np.zeros((len(y), 0)) if z is None else np.asarray(z, float).reshape(len(y), -1)
    labels = np.unique(trial)
    blocks = []
    for lab in labels:
        rows = trial == lab
        zi = np.column_stack([np.ones(rows.sum()), z[rows]])
        # keep a linearly independent set of columns, as sufficient_stats does
        _, r_ = np.linalg.qr(zi)
        ind = np.abs(np.diag(r_)) > 1e-9 * np.abs(np.diag(r_)).max()
        cols = np.zeros((len(y), ind.sum()))
        cols[rows] = zi[:, ind]
        blocks.append(cols)
    f = np.column_stack(blocks + [x])
    s2 = np.broadcast_to(np.asarray(sigma2, float), labels.shape)
    v = np.zeros((len(y), len(y)))
    for i, lab in enumerate(labels):
        rows = np.flatnonzero(trial == lab)
        t = x[rows, 0]
        v[np.ix_(rows, rows)] = s2[i] * np.eye(len(rows)) + tau2 * np.outer(t, t)
    return y, f, v


def reml_deviance_dense(trial, y, x, z, sigma2, tau2) -> float:
    """Direct evaluation with the full N x N covariance matrix: a check, not for use."""
    y, f, v = _dense_model(trial, y, x, z, sigma2, tau2)
    vinv = np.linalg.inv(v)
    fvf = f.T @ vinv @ f
    beta = np.linalg.solve(fvf, f.T @ vinv @ y)
    r = y - f @ beta
    n, p = f.shape
    return float((n - p) * LOG2PI + np.linalg.slogdet(v)[1] + np.linalg.slogdet(fvf)[1] + r @ vinv @ r)


# ----------------------------------------------------------------------------- operator algebra


def _op_mul(x, y, stt):
    """(a1 I + b1 tt')(a2 I + b2 tt') = a1a2 I + (a1b2 + b1a2 + b1b2 t't) tt', per trial."""
    a1, b1 = x
    a2, b2 = y
    return a1 * a2, a1 * b2 + b1 * a2 + b1 * b2 * stt


def _op_trace(op, m, stt):
    a, b = op
    return a * m + b * stt


def _variance_components(st: TrialStats, trial_specific: bool):
    """Derivative operators dV_i/dphi_j as stacked (a, b) coefficients (n_params, k): one
    per variance parameter (sigma^2 or each sigma_i^2, then tau^2)."""
    k = st.k
    n_sigma = k if trial_specific else 1
    comp_a = np.zeros((n_sigma + 1, k))
    comp_b = np.zeros((n_sigma + 1, k))
    comp_a[:n_sigma] = np.eye(k) if trial_specific else 1.0
    comp_b[n_sigma] = 1.0
    return comp_a, comp_b


@functools.lru_cache(maxsize=64)
def _overlapping_pairs(nvc: int, n_trial_sigmas: int):
    """Pairs (j <= l) of variance parameters whose covariance derivatives share a trial:
    all pairs with a common sigma^2; with one sigma_i^2 per trial (the first
    ``n_trial_sigmas`` parameters) only (i, i), (i, tau) and (tau, tau)."""
    if not n_trial_sigmas:
        return np.triu_indices(nvc)
    k = n_trial_sigmas
    same = np.arange(k)
    if nvc == k:  # tau^2 not estimated
        return same, same
    return np.r_[same, same, k], np.r_[same, np.full(k, k), k]


def _derivatives(st: TrialStats, sigma2, tau2, trial_specific, active, hessian=True):
    """Analytic gradient and Hessian of the REML deviance, and the derivative of
    Cov(beta_hat), with respect to the active variance parameters (sigma^2 or each
    sigma_i^2, then tau^2). Formulas: Searle, Casella and McCulloch (1992), ch. 6.

    Every operator involved is a per-trial pair (a, b) meaning a I + b tt'. Operators of a
    kind are stacked as (n_ops, k) coefficient arrays, so that each kind is one _op_mul
    and all quadratic forms [x,y]' O [x,y] come from a single pair of matrix products.
    With ``hessian=False`` only the gradient is computed (hess and dcov are None)."""
    q = len(st.terms)
    d = q + 1
    stt = st.cross[:, 0, 0]
    m = st.resid_df
    sig = np.asarray(sigma2, float) * np.ones_like(stt)
    vinv = (1 / sig, -tau2 / (sig * (sig + tau2 * stt)))
    comp_a, comp_b = _variance_components(st, trial_specific)
    active = np.asarray(active, bool)
    comp_a, comp_b = comp_a[active], comp_b[active]
    nvc = len(comp_a)
    w_vj = _op_mul(vinv, (comp_a, comp_b), stt)  # V^-1 V_j, stacked (nvc, k)
    single = _op_mul(w_vj, vinv, stt)  # V^-1 V_j V^-1
    if hessian:
        pair_j, pair_l = _overlapping_pairs(nvc, st.k if trial_specific else 0)
        vjv = _op_mul((w_vj[0][pair_j], w_vj[1][pair_j]), (w_vj[0][pair_l], w_vj[1][pair_l]), stt)  # V^-1 V_j V^-1 V_l
        triple = _op_mul(vjv, vinv, stt)  # V^-1 V_j V^-1 V_l V^-1
    else:
        triple = (np.zeros((0, len(stt))), np.zeros((0, len(stt))))
    coef_a = np.vstack([vinv[0][None, :], single[0], triple[0]])
    coef_b = np.vstack([vinv[1][None, :], single[1], triple[1]])
    forms = (coef_a @ st.cross_flat + coef_b @ st.ss_flat).reshape(len(coef_a), d, d)
    mv, g_form, o3_form = forms[0], forms[1:1 + nvc], forms[1 + nvc:]
    c_mat = np.linalg.inv(mv[:q, :q])
    beta = c_mat @ mv[:q, q]  # GLS estimate at these variance parameters: P y = V^-1 (y - X beta)
    w = np.append(-beta, 1.0)
    cg = np.einsum("ij,njk->nik", c_mat, g_form[:, :q, :q])  # C G_j
    gw = g_form[:, :, :q].transpose(0, 2, 1) @ w  # (nvc, q): G_j-rows times w
    tr_pvj = _op_trace(w_vj, m, stt).sum(axis=1) - np.trace(cg, axis1=1, axis2=2)
    grad = tr_pvj - np.einsum("i,nij,j->n", w, g_form, w)
    if not hessian:
        return grad, None, None
    dcov = cg @ c_mat  # d(X'V^-1X)^-1/dphi_j = C X'V^-1 V_j V^-1 X C
    # H_jl = -tr(P V_j P V_l) + 2 y'P V_j P V_l P y with P = D - G C G' (D = V^-1). The parts
    # through C couple every pair; the parts through D alone vanish unless V_j and V_l share
    # a trial, so they are computed for those pairs only (2k + 1 of them with a residual
    # variance per trial, not (k + 1)(k + 2)/2). The operators commute (all are polynomials
    # in tt'), so both cross terms of tr(P V_j P V_l) are equal.
    hess = -np.einsum("jab,lba->jl", cg, cg) - 2 * gw @ c_mat @ gw.T
    own = (-_op_trace(vjv, m, stt).sum(axis=1) + 2 * np.einsum("ij,nji->n", c_mat, o3_form[:, :q, :q])
           + 2 * np.einsum("i,nij,j->n", w, o3_form, w))
    hess[pair_j, pair_l] += own
    hess[pair_l, pair_j] = hess[pair_j, pair_l]
    return grad, hess, dcov


def _trial_specific_gradient(st: TrialStats, sig, tau2) -> np.ndarray:
    """The gradient of ``_derivatives`` with one residual variance per trial and every
    parameter active, in O(k d^2) rather than O(k^2 d^2): the derivative of V with respect to
    sigma_i^2 is the identity on trial i alone, so each of its operators (``_derivatives``
    stacks them as k x k coefficient arrays, all zero off trial i) is one trial's pair (a, b),
    and its quadratic form is that trial's cross-products, not a sum over trials. The
    L-BFGS-B search of ``_fit_trial_specific`` evaluates it hundreds of times (at a thousand
    trials, 12 ms each by the general route)."""
    q = len(st.terms)
    d = q + 1
    stt, m = st.cross[:, 0, 0], st.resid_df
    vinv = (1 / sig, -tau2 / (sig * (sig + tau2 * stt)))
    w_tau = _op_mul(vinv, (np.zeros_like(stt), np.ones_like(stt)), stt)  # V^-1 V_tau per trial
    single_sig = _op_mul(vinv, vinv, stt)  # V^-1 V_i V^-1 on trial i
    single_tau = _op_mul(w_tau, vinv, stt)
    ss = st.ss_flat.reshape(st.k, d, d)
    mv = (vinv[0] @ st.cross_flat + vinv[1] @ st.ss_flat).reshape(d, d)
    g_form = np.concatenate([single_sig[0][:, None, None] * st.cross + single_sig[1][:, None, None] * ss,
                             (single_tau[0] @ st.cross_flat + single_tau[1] @ st.ss_flat).reshape(1, d, d)])
    c_mat = np.linalg.inv(mv[:q, :q])
    w = np.append(-(c_mat @ mv[:q, q]), 1.0)
    tr_pvj = np.r_[_op_trace(vinv, m, stt), _op_trace(w_tau, m, stt).sum()]
    tr_pvj -= np.einsum("ab,nba->n", c_mat, g_form[:, :q, :q])
    return tr_pvj - np.einsum("i,nij,j->n", w, g_form, w)


@dataclass
class OneStageFit:
    """Estimates of a one-stage fit; ``coef``/``cov`` follow ``terms``."""

    terms: tuple[str, ...]
    coef: np.ndarray
    cov: np.ndarray
    df: np.ndarray
    sigma2: np.ndarray
    tau2: float
    deviance: float
    n_trials: int
    n_participants: int
    converged: bool
    boundary: bool
    inference: str
    residual: str
    message: str = ""
    trial_ids: np.ndarray = field(default_factory=lambda: np.array([]))

    def se(self, term=0):
        j = self._index(term)
        return float(np.sqrt(self.cov[j, j]))

    def _index(self, term):
        return self.terms.index(term) if isinstance(term, str) else int(term)

    def summary(self, term=0, level=0.95) -> dict:
        """Estimate, SE, t-based CI and p (df = inf for z), tau^2 and the prediction interval."""
        j = self._index(term)
        est, se, df = float(self.coef[j]), self.se(j), float(self.df[j])
        crit = t_quantile(0.5 + level / 2, df)
        tstat = est / se if se > 0 else np.nan
        p = 2 * t_upper_tail(abs(tstat), df)
        k = self.n_trials
        if j == 0 and k > 2 and np.isfinite(self.tau2):
            half = t_quantile(0.5 + level / 2, k - 2) * np.sqrt(self.tau2 + se**2)
            pi = (est - half, est + half)
        else:
            pi = (np.nan, np.nan)
        return dict(
            estimate=est, se=se, ci_low=est - crit * se, ci_high=est + crit * se, df=df,
            p=float(p), tau2=self.tau2, pi_low=pi[0], pi_high=pi[1],
            n_trials=self.n_trials, n_participants=self.n_participants,
            converged=self.converged,
        )


class _ProfiledREML:
    """The profiled REML deviance as a function of gamma = tau^2/sigma^2, evaluated for many
    gammas at once; the per-trial outer products are formed once per fit."""

    def __init__(self, st: TrialStats):
        self.q = q = len(st.terms)
        self.stt = st.cross[:, 0, 0]
        s = st.cross[:, :, 0]
        self.ss = (s[:, :, None] * s[:, None, :]).reshape(st.k, -1)  # (k, (q+1)^2)
        self.total = st.cross.sum(axis=0).reshape(-1)
        self.nu = st.resid_df.sum() - q
        self.const = st.logdet_ztz.sum() + self.nu * (1 + LOG2PI)

    def _cross(self, g):
        """log|X'V^-1 X| (with its sign) and the GLS residual sum of squares at sigma^2 = 1."""
        q = self.q
        c = g[:, None] / (1 + g[:, None] * self.stt[None, :])  # (G, k)
        m = (self.total[None, :] - c @ self.ss).reshape(len(g), q + 1, q + 1)
        a, b, yy = m[:, :q, :q], m[:, :q, q], m[:, q, q]
        if q == 1:
            sign, logdet_a = np.sign(a[:, 0, 0]), np.log(np.abs(a[:, 0, 0]))
            return (sign, logdet_a), yy - b[:, 0] ** 2 / a[:, 0, 0]
        sign, logdet_a = np.linalg.slogdet(a)
        return (sign, logdet_a), yy - np.einsum("gi,gi->g", b, np.linalg.solve(a, b[:, :, None])[:, :, 0])

    def __call__(self, gammas) -> np.ndarray:
        g = np.asarray(gammas, float)
        (sign, logdet_a), rss = self._cross(g)
        logdet_v = np.log1p(g[:, None] * self.stt[None, :]).sum(axis=1)
        ok = (sign > 0) & (rss > 0)
        dev = self.const + self.nu * np.log(np.where(ok, rss, self.nu) / self.nu) + logdet_v + logdet_a
        return np.where(ok, dev, np.inf)

    def with_derivatives(self, gamma: float) -> tuple[float, float, float]:
        """The profiled deviance at one ``gamma`` and its first and second derivatives in
        gamma, in closed form. With r_i = 1 / (1 + gamma t_i), the matrix of ``_cross`` is
        M = total - sum_i c_i s_i s_i' with c_i = gamma r_i, dc_i = r_i^2 and
        d2c_i = -2 t_i r_i^3. With M = [[A, b], [b^T, yy]], u = A^-1 b, e = db - dA u
        (d, d2: first and second derivatives in gamma; rss = yy - b^T u):
        d rss = d yy - 2 db^T u + u^T dA u,
        d2 rss = d2 yy - 2 d2b^T u + u^T d2A u - 2 e^T A^-1 e,
        d log|A| = tr(A^-1 dA), d2 log|A| = tr(A^-1 d2A) - tr(A^-1 dA A^-1 dA),
        d log|V| = sum t_i r_i, d2 log|V| = -sum (t_i r_i)^2."""
        q, t = self.q, self.stt
        r = 1.0 / (1.0 + gamma * t)
        dlogv = t * r  # each trial's d log|V_i| / d gamma
        m = -(np.array([gamma * r, r * r, -2.0 * dlogv * r * r]) @ self.ss)
        m[0] += self.total
        m = m.reshape(3, q + 1, q + 1)
        a, b, yy = m[:, :q, :q], m[:, :q, q], m[:, q, q]
        sign, logdet_a = np.linalg.slogdet(a[0])
        if sign <= 0:
            return np.inf, np.nan, np.nan
        a_inv = np.linalg.inv(a[0])
        u = a_inv @ b[0]
        rss = yy[0] - b[0] @ u
        if rss <= 0:
            return np.inf, np.nan, np.nan
        e = b[1] - a[1] @ u
        rss1 = yy[1] - 2 * b[1] @ u + u @ a[1] @ u
        rss2 = yy[2] - 2 * b[2] @ u + u @ a[2] @ u - 2 * e @ a_inv @ e
        p1 = a_inv @ a[1]
        nu = self.nu
        dev = self.const + nu * np.log(rss / nu) + np.log1p(gamma * t).sum() + logdet_a
        d1 = nu * rss1 / rss + dlogv.sum() + np.trace(p1)
        d2 = nu * (rss2 / rss - (rss1 / rss) ** 2) - (dlogv * dlogv).sum() + np.sum(a_inv * a[2].T) - np.sum(p1 * p1.T)
        return float(dev), float(d1), float(d2)


class _ProfiledREMLs:
    """The profiled REML deviances of several fits with as many trials and terms
    (``_ProfiledREML`` each), evaluated together: the same arithmetic with a leading axis of
    fits (numpy's stacked products, determinants and solves work matrix by matrix, and its
    sums and element-wise functions value by value), so the same numbers (tested bit for bit)
    for a fraction of the calls."""

    def __init__(self, profiles: list[_ProfiledREML]):
        self.q = profiles[0].q
        self.stt = np.stack([f.stt for f in profiles])  # (fits, k)
        self.ss = np.stack([f.ss for f in profiles])  # (fits, k, (q+1)^2)
        self.total = np.stack([f.total for f in profiles])
        self.nu = np.array([f.nu for f in profiles])
        self.const = np.array([f.const for f in profiles])

    def __call__(self, gammas, fits) -> np.ndarray:
        """The deviances (len(fits), G) of the fits numbered ``fits`` at their rows of
        ``gammas`` (len(fits), G)."""
        q, g = self.q, np.asarray(gammas, float)
        stt = self.stt[fits][:, None, :]
        c = g[:, :, None] / (1 + g[:, :, None] * stt)  # (fits, G, k)
        m = (self.total[fits][:, None, :] - c @ self.ss[fits]).reshape(*g.shape, q + 1, q + 1)
        a, b, yy = m[..., :q, :q], m[..., :q, q], m[..., q, q]
        if q == 1:
            sign, logdet_a = np.sign(a[..., 0, 0]), np.log(np.abs(a[..., 0, 0]))
            rss = yy - b[..., 0] ** 2 / a[..., 0, 0]
        else:
            sign, logdet_a = np.linalg.slogdet(a)
            rss = yy - np.einsum("fgi,fgi->fg", b, np.linalg.solve(a, b[..., None])[..., 0])
        logdet_v = np.log1p(g[:, :, None] * stt).sum(axis=2)
        nu, const = self.nu[fits][:, None], self.const[fits][:, None]
        ok = (sign > 0) & (rss > 0)
        dev = const + nu * np.log(np.where(ok, rss, nu) / nu) + logdet_v + logdet_a
        return np.where(ok, dev, np.inf)


class _ProfiledML(_ProfiledREML):
    """The ML deviance with sigma^2 profiled out, for many gammas at once. With rss the GLS
    residual sum of squares at sigma^2 = 1 and c_i = gamma / (1 + gamma t_i't_i):
    N (1 + log 2 pi + log(rss / N)) + sum_i log(1 + gamma s_i) - sum_i log(1 - c_i h_i)
    (ml_deviance with sigma^2 = rss / N; s_i the projected and h_i = t_i't_i - s_i)."""

    def __init__(self, st: TrialStats):
        super().__init__(st)
        self.n = float(st.n.sum())
        self.tt_raw = st.tt_raw
        self.h = st.tt_raw - self.stt

    def __call__(self, gammas) -> np.ndarray:
        g = np.asarray(gammas, float)
        _, rss = self._cross(g)
        c = g[:, None] / (1 + g[:, None] * self.tt_raw[None, :])
        logdet = np.log1p(g[:, None] * self.stt[None, :]).sum(axis=1) - np.log1p(-c * self.h[None, :]).sum(axis=1)
        ok = rss > 0
        dev = self.n * (1 + LOG2PI + np.log(np.where(ok, rss, self.n) / self.n)) + logdet
        return np.where(ok, dev, np.inf)


_FIRST_GRID = np.linspace(-14.0, 9.0, 93)
_FIRST_GAMMAS = np.exp(_FIRST_GRID)
_REFINE_POINTS = np.arange(41.0)


def _refined_grid(centre: float, step: float) -> np.ndarray:
    """np.linspace(centre - step, centre + step, 41), value for value (the same arithmetic:
    tested), without its per-call overhead: a REML fit takes two, and at the demo's size
    the overhead of its small steps is most of a fit's time."""
    start, stop = centre - step, centre + step
    grid = _REFINE_POINTS * ((stop - start) / 40) + start
    grid[-1] = stop
    return grid


def _gamma_optimum(st: TrialStats):
    """Maximise the profiled restricted likelihood over gamma = tau^2/sigma^2 >= 0.

    A grid over log(gamma) in [-14, 9] (step 0.25), two successive 41-point grids around the
    best point (each shrinks the step twentyfold, to 6e-4), then the vertex of the parabola
    through the best point and its neighbours; all in batched evaluations. Finally the boundary
    gamma = 0 is compared (a boundary fit is reported, not treated as a failure). Returns gamma
    and whether it is a maximum."""
    return _gamma_optima([st])[0]


def _gamma_optima(stats: list[TrialStats]) -> list[tuple[float, bool]]:
    """``_gamma_optimum`` of each of several fits, with the grids of fits with as many trials
    and terms evaluated together (``_ProfiledREMLs``, the same numbers as one fit at a time:
    tested bit for bit): at the demo's size a grid evaluation is mostly numpy's per-call cost,
    and the refits of one completed data set are 22 fits of two shapes."""
    out = [None] * len(stats)
    shapes: dict = {}
    for j, st in enumerate(stats):
        shapes.setdefault(st.cross.shape, []).append(j)
    for members in shapes.values():
        profiles = [_ProfiledREML(stats[j]) for j in members]
        together = _ProfiledREMLs(profiles)
        grids = [_FIRST_GRID] * len(members)
        dev = list(together(np.broadcast_to(_FIRST_GAMMAS, (len(members), len(_FIRST_GRID))), np.arange(len(members))))
        searching = []
        for row, j in enumerate(members):
            if _flat(dev[row]):
                out[j] = _NOT_IDENTIFIED
            else:
                searching.append(row)
        finished = []  # the rows whose last grid is searched (the likelihood may keep rising towards 0)
        for _ in range(2):  # the two finer grids
            refining, gammas = [], []
            for row in searching:
                grid, new_gammas, refined = _next_grid(grids[row], dev[row])
                if refined:
                    grids[row] = grid
                    refining.append(row)
                    gammas.append(new_gammas)
                else:  # the likelihood keeps rising towards gamma = 0
                    finished.append(row)
            if refining:
                for row, row_dev in zip(refining, together(np.array(gammas), np.array(refining))):
                    dev[row] = row_dev
            searching = refining
        rows = finished + searching
        for row, optimum in zip(rows, _grid_optima(together, profiles, rows, grids, dev)):
            out[members[row]] = optimum
    return out


# no maximum: the restricted likelihood is flat or still rising at tau^2/sigma^2 = e^9
_NOT_IDENTIFIED = (float(np.exp(_FIRST_GRID[-1])), False)


def _flat(dev) -> bool:
    """Whether the first grid's deviances are flat from tau^2/sigma^2 = e^-14 to e^9 (e.g. two
    trials and two trial-level terms): tau^2 is not identified, and which end looks higher is
    rounding."""
    low, high = float(dev.min()), float(dev.max())
    return bool(np.isfinite(low) and np.isfinite(high) and high - low <= 1e-9 * max(1.0, abs(low)))


def _next_grid(grid, dev):
    """The finer grid around the best point of ``grid``, its gammas and True; or ``grid``, None
    and False when the likelihood keeps rising towards gamma = 0 (the best point is the first
    of a grid that starts at the first grid's lower end)."""
    i = int(np.argmin(dev))
    if i == 0 and grid[0] <= -14.0:
        return grid, None, False
    grid = _refined_grid(grid[i], grid[1] - grid[0])
    return grid, np.exp(grid), True


def _grid_optima(together: _ProfiledREMLs, profiles, rows, grids, devs) -> list[tuple[float, bool]]:
    """For each of the fits numbered ``rows`` of ``together``, from the deviances of its last
    grid: the vertex of the parabola through its best point and their neighbours, compared
    with the boundary gamma = 0 and with the first grid's upper end, then polished
    (``_polish_gamma``). The vertex, boundary and edge deviances of all the fits are evaluated
    together (``_ProfiledREMLs``: each fit's as its own profile evaluates them)."""
    best, vertices = {}, {}
    for row in rows:
        grid, dev = grids[row], devs[row]
        i = int(np.argmin(dev))
        best[row] = (grid[i], dev[i])
        if 0 < i < len(grid) - 1:
            h = grid[1] - grid[0]
            curv = dev[i - 1] - 2 * dev[i] + dev[i + 1]
            if curv > 0:
                vertices[row] = grid[i] + 0.5 * h * (dev[i - 1] - dev[i + 1]) / curv
    at_zero = {}
    with_vertex = [row for row in rows if row in vertices]
    if with_vertex:
        gammas = np.array([[np.exp(vertices[row]), 0.0] for row in with_vertex])
        for row, (v_dev, zero_dev) in zip(with_vertex, together(gammas, np.array(with_vertex))):
            if v_dev <= best[row][1]:
                best[row] = (vertices[row], v_dev)
            at_zero[row] = zero_dev
    without = [row for row in rows if row not in vertices]
    if without:
        at_zero.update(zip(without, together(np.zeros((len(without), 1)), np.array(without))[:, 0]))
    out, open_rows = {}, []
    for row in rows:
        best_log, best_dev = best[row]
        if at_zero[row] <= best_dev + 1e-9 or best_log <= -14.0:
            out[row] = (0.0, True)  # boundary: the likelihood is maximised at tau^2 = 0 (lme4: singular)
        elif best_log >= _FIRST_GRID[-1]:
            out[row] = _NOT_IDENTIFIED  # still rising at tau^2/sigma^2 = e^9
        else:
            open_rows.append(row)
    edge = _NOT_IDENTIFIED[0]
    at_edge = together(np.full((len(open_rows), 1), edge), np.array(open_rows))[:, 0] if open_rows else []
    for row, edge_dev in zip(open_rows, at_edge):
        best_log, best_dev = best[row]
        if edge_dev <= best_dev + 1e-9 * max(1.0, abs(best_dev)):
            # as high at tau^2/sigma^2 = e^9 as at the best point up to rounding (a flat
            # profile, e.g. two trials and two trial-level terms, whose "optimum" only the
            # order of summation decides): no maximum, tau^2 not identified
            out[row] = _NOT_IDENTIFIED
        else:
            out[row] = (_polish_gamma(profiles[row], float(np.exp(best_log))), bool(np.isfinite(best_dev)))
    return [out[row] for row in rows]


_POLISH_RANGE = 0.01  # in log(gamma): about 16 times the last grid step


def _polish_gamma(f: _ProfiledREML, gamma: float) -> float:
    """Newton steps on the derivative of the profiled REML deviance in gamma
    (``_ProfiledREML.with_derivatives``) from the grid's optimum. Where the profile is flat
    (tau^2 barely identified) the grid's parabola finds the optimum only to about 1e-5; the
    root of the analytic derivative is found to rounding, so that fits from the same data
    summed in another order (e.g. per site) agree to 1e-9 and better. It is the root of the
    REML score in (sigma^2, tau^2) too: at any gamma the profiled sigma^2 is the root of the
    score's sigma^2 part. Only steps that stay within ``_POLISH_RANGE`` of the grid's optimum
    and do not raise the deviance are taken."""
    dev, slope, curvature = f.with_derivatives(gamma)
    start = gamma
    for _ in range(8):
        if not curvature > 0:
            break  # not near a maximum of the likelihood: keep the grid's optimum
        new = gamma - slope / curvature
        if new <= 0 or abs(np.log(new / start)) > _POLISH_RANGE:
            break  # a polish, not a search: it stays within the grid's last step of the optimum
        if abs(new - gamma) <= 1e-13 * gamma:
            return new  # a move within rounding: the root
        new_dev, new_slope, new_curvature = f.with_derivatives(new)
        if not new_dev <= dev + 1e-12 * abs(dev):
            break  # not a descent (far from quadratic, or rounding): keep the last point
        gamma, dev, slope, curvature = new, new_dev, new_slope, new_curvature
    return gamma


def _fit_trial_specific(st: TrialStats, gamma0: float, sigma2_0: float):
    k = st.k
    start = np.r_[np.full(k, np.log(sigma2_0)), np.sqrt(gamma0 * sigma2_0)]

    def obj(par):
        return reml_deviance(st, np.exp(par[:k]), par[k] ** 2)

    def jac(par):
        # chain rule from (sigma_i^2, tau^2) to (log sigma_i^2, tau): the analytic gradient
        # (finite differences would cost k + 1 deviance evaluations per gradient)
        sig, tau2 = np.exp(par[:k]), par[k] ** 2
        grad = _trial_specific_gradient(st, sig, tau2)
        return np.r_[grad[:k] * sig, grad[k] * 2 * par[k]]

    res = optimize.minimize(obj, start, jac=jac, method="L-BFGS-B",
                            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
    sig, tau2, dev = _polish_trial_specific(st, np.exp(res.x[:k]), float(res.x[k] ** 2), float(res.fun))
    return sig, tau2, bool(res.success), dev


def _polish_trial_specific(st: TrialStats, sig, tau2: float, dev: float):
    """Newton steps on the REML score in (sigma_i^2, tau^2) from L-BFGS-B's optimum, which its
    stopping rule leaves about 1e-9 short: the root of the analytic score is found to rounding,
    so that the same data summed in another order give the same estimates (as _polish_gamma
    does for the common residual variance). Only short steps that lower the deviance are
    taken; a tau^2 at the boundary stays there."""
    k = st.k
    free_tau = bool(tau2 > 1e-10 * np.mean(sig))
    for _ in range(8):
        grad, hess, _ = _derivatives(st, sig, tau2, True, [True] * k + [free_tau])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        scale = np.r_[sig, tau2] if free_tau else sig
        relative = np.max(np.abs(step) / scale)
        new_sig = sig - step[:k]
        new_tau2 = tau2 - step[k] if free_tau else tau2
        if not relative <= 0.01 or np.any(new_sig <= 0) or new_tau2 < 0:
            break  # a polish, not a search
        new_dev = reml_deviance(st, new_sig, new_tau2)
        if not new_dev <= dev + 1e-12 * abs(dev):
            break
        sig, tau2, dev = new_sig, float(new_tau2), float(new_dev)
        if relative <= 1e-13:
            break
    return sig, tau2, dev


def fit_reml(
    st: TrialStats,
    inference: str = "satterthwaite",
    residual: str = "common",
    random_effect: bool = True,
) -> OneStageFit:
    """REML fit of the one-stage model from per-trial statistics.

    Parameters
    ----------
    inference : ``"satterthwaite"`` (t with Satterthwaite df; default) or ``"z"``.
    residual : ``"common"`` (one sigma^2; default) or ``"trial"`` (one per trial).
    random_effect : False fits the common-effect model (tau^2 fixed at 0).
    """
    _check_options(inference, residual)
    return _fit_reml(st, inference, residual, random_effect)


def fit_reml_many(stats: list[TrialStats], inference: str = "satterthwaite", residual: str = "common",
                  random_effect: bool = True) -> list[OneStageFit]:
    """``fit_reml`` of each of several models, the same fits (tested bit for bit), with their
    searches for tau^2 / sigma^2 made together (``_gamma_optima``): the refits of a completed
    data set, or of the primary analyses without one trial at a time."""
    _check_options(inference, residual)
    searched = [j for j, st in enumerate(stats) if random_effect and _contributing(st) >= 2]
    optima = dict(zip(searched, _gamma_optima([stats[j] for j in searched])))
    return [_fit_reml(st, inference, residual, random_effect, optima.get(j)) for j, st in enumerate(stats)]


def _check_options(inference, residual):
    if inference not in ("satterthwaite", "z"):
        raise ValueError("inference must be 'satterthwaite' or 'z'")
    if residual not in ("common", "trial"):
        raise ValueError("residual must be 'common' or 'trial'")


def _contributing(st: TrialStats) -> int:
    """The number of trials with an exercise contrast."""
    return int(np.count_nonzero(st.cross[:, 0, 0] > 1e-12))


def _fit_reml(st: TrialStats, inference, residual, random_effect, optimum=None) -> OneStageFit:
    """``fit_reml``; ``optimum``: its tau^2 / sigma^2 and whether it is a maximum, when
    already searched for (``_gamma_optima``)."""
    q = len(st.terms)
    message = ""
    if random_effect and _contributing(st) < 2:
        random_effect = False
        message = "fewer than two trials contribute: tau^2 is not estimable, common-effect model fitted"
    if random_effect:
        gamma, converged = optimum if optimum is not None else _gamma_optimum(st)
        if not converged:
            message = ("tau^2 not identified: the restricted likelihood keeps rising as tau^2 grows "
                       "(too few trials for the model's trial-level terms); estimates at tau^2/sigma^2 = e^9")
    else:
        gamma, converged = 0.0, True
    dev, sigma2 = _profiled_deviance(st, gamma)  # at the optimum this is the REML deviance
    tau2 = gamma * sigma2
    sig = np.full(st.k, sigma2)
    if residual == "trial":
        sig, tau2, converged, dev = _fit_trial_specific(st, gamma, sigma2)
        if not random_effect:
            tau2 = 0.0
    boundary = random_effect and tau2 <= 1e-10 * np.mean(sig)
    if boundary:
        tau2 = 0.0
    m, _ = _mixed_cross(st, sig, tau2)
    cov = np.linalg.inv(m[:q, :q])
    coef = cov @ m[:q, q]
    df = np.full(q, np.inf)
    if inference == "satterthwaite":
        # a tau^2 that is not identified (no maximum) is held where the search stopped
        active = [True] * (st.k if residual == "trial" else 1) + [random_effect and not boundary and converged]
        _, hess, dcov = _derivatives(st, sig, tau2, residual == "trial", active)
        try:
            hinv = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            hinv = np.linalg.pinv(hess)
        for j in range(q):
            g = dcov[:, j, j]
            # Satterthwaite: df = 2 Var^2 / Var(Var-hat), Var(phi-hat) ~ 2 H^-1 (H of -2 l_R)
            var_var = 2 * g @ hinv @ g
            df[j] = 2 * cov[j, j] ** 2 / var_var if var_var > 0 else np.inf
    if not random_effect and not message:
        message = "common-effect model"
    if boundary:
        message = "tau^2 estimated at the boundary (0): the fit is a common-effect fit"
    return OneStageFit(
        terms=st.terms, coef=coef, cov=cov, df=df, sigma2=sig, tau2=float(tau2) if random_effect else 0.0,
        deviance=float(dev), n_trials=int(st.k), n_participants=int(st.n.sum()),
        converged=bool(converged), boundary=bool(boundary), inference=inference, residual=residual,
        message=message, trial_ids=st.trial_ids,
    )
