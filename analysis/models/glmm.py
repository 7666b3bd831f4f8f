"""One-stage mixed logistic regression with a random exercise effect, by maximum likelihood
with adaptive Gauss-Hermite quadrature (AGHQ).

Model: logit P(y_ij = 1) = a_i + x_ij' beta + t_ij (theta + tau v_i),  v_i ~ N(0, 1),
with stratified trial intercepts a_i, common covariate slopes beta and the exercise
indicator t. Writing the random effect as tau * v keeps tau^2 = 0 an ordinary point of
the parameter space, so a boundary fit is not a failure.

Written by hand because no well-kept Python library fits a frequentist mixed logistic
model by AGHQ (statsmodels' BinomialBayesMixedGLM is variational Bayes).

Algorithm: the quadrature nodes are adapted to each trial's conditional mode and
curvature (as glmer does); with the nodes held fixed the approximate likelihood is a
finite mixture of logistic likelihoods, maximised by Newton's method with its exact
gradient and Hessian; nodes are re-adapted and the two steps repeat until the parameters
stop moving. With n_nodes >= 7 the quadrature is near exact for this one-dimensional
integral, so the fixed point is the maximum-likelihood estimate (checked against lme4's
glmer with nAGQ = 15 in tests/test_glmm.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
from scipy import special

from analysis.models.distributions import t_quantile, t_upper_tail
from analysis.models.pertrial import group_indicator, trial_codes

__all__ = ["LogisticFit", "fit_mixed_logistic", "SEPARATION_LIMIT", "gauss_hermite"]

TAU_START_MIN, TAU_START_MAX = 0.05, 2.0  # the range of tau's starting value (_tau_start)
START_STEPS = 3  # Newton steps of the common-effect fit that starts a random-effect fit
SEPARATION_LIMIT = 15.0  # a coefficient beyond this (log odds) is separation, not an estimate
# Up to this many entries (control rows x upper-triangle terms; 512 kB) the control arms'
# weighted cross products come from one product of their outer products with the trial
# indicator: 2 to 4 times faster than a BLAS product per trial at the demo's size (27 trials,
# 1,500 rows), but 5 to 7 times slower once the arrays leave the processor's cache (measured
# from 85,000 entries; 100 trials of 120 control rows: 1.6 ms against 0.3 ms)
CONTROL_OUTER_MAX = 65_536


@dataclass
class LogisticFit:
    """Maximum-likelihood fit; ``coef`` = (trial intercepts..., beta..., theta, tau)."""

    theta: float
    se: float
    tau2: float
    beta: np.ndarray
    se_beta: np.ndarray
    loglik: float
    n_trials: int
    n_participants: int
    converged: bool
    boundary: bool
    n_nodes: int
    iterations: int
    message: str = ""
    cov_common: np.ndarray = None  # covariance of (beta..., theta)

    def summary(self, level: float = 0.95) -> dict:
        z = t_quantile(0.5 + level / 2, np.inf)
        k = self.n_trials
        if k > 2:
            half = t_quantile(0.5 + level / 2, k - 2) * np.sqrt(self.tau2 + self.se**2)
            pi = (self.theta - half, self.theta + half)
        else:
            pi = (np.nan, np.nan)
        return dict(
            estimate=self.theta, se=self.se, ci_low=self.theta - z * self.se,
            ci_high=self.theta + z * self.se, df=np.inf,
            p=float(2 * t_upper_tail(abs(self.theta / self.se), np.inf)) if self.se > 0 else np.nan,
            tau2=self.tau2, pi_low=pi[0], pi_high=pi[1], n_trials=k,
            n_participants=self.n_participants, converged=self.converged,
        )


class _Data:
    """Participants sorted by trial, with group boundaries for fast per-trial sums.

    ``z`` holds trial-specific terms (each trial gets its own coefficient, as its own
    intercept); ``x`` common terms; ``t`` the exercise indicator.
    """

    def __init__(self, trial, y, x, t, z=None):
        labels, codes = trial_codes(trial)
        order = np.argsort(codes, kind="stable")
        self.labels = labels
        self.codes = codes[order]
        self.y = np.asarray(y, float)[order]
        n = len(self.y)
        x = np.asarray(x, float)
        x = x.reshape(n, -1)[order] if x.size else np.zeros((n, 0))
        self.x = x - x.mean(axis=0)  # centring improves conditioning; theta is unchanged
        self.t = np.asarray(t, float)[order]
        self.starts = np.flatnonzero(np.r_[True, self.codes[1:] != self.codes[:-1]])
        self.k = len(labels)
        self.r = self.x.shape[1]
        z = np.zeros((n, 0)) if z is None or np.asarray(z).size == 0 else np.asarray(z, float).reshape(n, -1)[order]
        counts = np.diff(np.r_[self.starts, n])
        self.counts = counts
        zc = z - np.repeat(self.per_trial(z) / counts[:, None], counts, axis=0)  # centred within trial
        self.zfull = np.column_stack([np.ones(n), zc])
        self.pz = self.zfull.shape[1]
        # a trial-specific term with no variation in its trial has no coefficient there
        spread = self.per_trial(zc**2)
        self.free = np.r_[np.column_stack([np.ones(self.k, bool), spread > 1e-12]).ravel(),
                          np.ones(self.r + 2, bool)]

        self.treated = self.t != 0
        self.control = ~self.treated
        # the rows of each group, gathered once (every likelihood evaluation uses them): the
        # base design (trial-specific z, common x, t) and, for the exercise arms (whose terms
        # vary by node), its row-wise outer products, upper triangle only (they are symmetric)
        self.treated_rows, self.control_rows = np.flatnonzero(self.treated), np.flatnonzero(self.control)
        self.codes_t, self.y_t = self.codes[self.treated], self.y[self.treated]
        self.y_c = self.y[self.control]
        self.sign_t, self.sign_c = 2 * self.y_t - 1, 2 * self.y_c - 1
        base = np.column_stack([self.zfull, self.x, self.t])
        self.base_t, self.base_c = base[self.treated], base[self.control]
        self.upper = _upper_triangle(base.shape[1])
        self.outer_t = np.take(self.base_t, self.upper[0], axis=1) * np.take(self.base_t, self.upper[1], axis=1)
        self.outer_c = None  # the control rows' outer products, when few enough (weighted_cross_control)
        if self.base_c.shape[0] * len(self.upper[0]) <= CONTROL_OUTER_MAX:
            self.outer_c = np.take(self.base_c, self.upper[0], axis=1) * np.take(self.base_c, self.upper[1], axis=1)
        self._bounds_t = self._bounds(self.codes[self.treated])
        self._bounds_c = self._bounds(self.codes[self.control])
        self._indicator_t = group_indicator(self.codes_t, self.k)
        self._indicator_c = group_indicator(self.codes[self.control], self.k)
        self._node_buffers = ()

    def node_buffers(self, n_nodes) -> _NodeBuffers:
        """The (treated participants, nodes) arrays of a likelihood evaluation and its
        derivatives, made once per fit: allocating them anew at every evaluation took a fifth
        of its time."""
        shape = (len(self.treated_rows), n_nodes)
        if not self._node_buffers or self._node_buffers.eta.shape != shape:
            self._node_buffers = _NodeBuffers(*(np.empty(shape) for _ in _NodeBuffers._fields))
        return self._node_buffers

    def _bounds(self, codes):
        """Start and end of each trial's block within a subset (sorted by trial)."""
        return np.searchsorted(codes, np.arange(self.k)), np.searchsorted(codes, np.arange(self.k), side="right")

    def per_trial(self, arr):
        return np.add.reduceat(arr, self.starts, axis=0)

    def sum_treated(self, arr):
        """Per-trial sums over the exercise arms' rows (0 for a trial without any): a product
        with the sparse trial indicator, six times faster than np.add.reduceat on the
        (participants x nodes) arrays of the likelihood."""
        return self._indicator_t @ arr

    def sum_control(self, arr):
        return self._indicator_c @ arr

    def weighted_cross_control(self, w):
        """Per trial: the sum over its control rows of w x (base row)' (base row). With few
        rows (``outer_c``), from the rows' outer products (upper triangle) in one product
        with the trial indicator; otherwise one small BLAS product per trial."""
        nb = self.base_c.shape[1]
        if self.outer_c is not None:
            upper = self.sum_control(w[:, None] * self.outer_c)
            out = np.empty((self.k, nb, nb))
            out[:, self.upper[0], self.upper[1]] = upper
            out[:, self.upper[1], self.upper[0]] = upper
            return out
        lo, hi = self._bounds_c
        out = np.zeros((self.k, nb, nb))
        for i in np.flatnonzero(hi > lo):
            rows = self.base_c[lo[i]:hi[i]]
            out[i] = rows.T @ (w[lo[i]:hi[i], None] * rows)
        return out

    def sum_treated_by_node(self, weights, cols):
        """Per trial and node: sum over the trial's treated participants of weights x cols."""
        lo, hi = self._bounds_t
        out = np.zeros((self.k, weights.shape[1], cols.shape[1]))
        for i in np.flatnonzero(hi > lo):  # per-trial matrix products (BLAS)
            out[i] = weights[lo[i]:hi[i]].T @ cols[lo[i]:hi[i]]
        return out

    @property
    def n_trial_params(self):
        return self.k * self.pz


@cache
def _upper_triangle(n: int):
    """np.triu_indices(n), made once for each size (60 us a call, an eighth of setting up a
    fit's data). Read-only, as every fit shares them."""
    rows, columns = np.triu_indices(n)
    rows.setflags(write=False)
    columns.setflags(write=False)
    return rows, columns


class _NodeBuffers(NamedTuple):
    """Reused (treated participants, nodes) arrays: the linear predictor and the log-likelihood
    terms (``_likelihood``), the probabilities (read by ``_score_and_information``) and that
    function's scratch array."""

    eta: np.ndarray
    ll: np.ndarray
    p: np.ndarray
    work: np.ndarray


def _linear(d: _Data, par):
    m, r = d.n_trial_params, d.r
    a = par[:m].reshape(d.k, d.pz)
    beta, theta = par[m : m + r], par[m + r]
    # rows are sorted by trial, every trial has rows: repeating each trial's terms is the
    # gather a[codes] without the index
    return np.einsum("ij,ij->i", np.repeat(a, d.counts, axis=0), d.zfull) + d.x @ beta + d.t * theta


@cache
def gauss_hermite(n_nodes: int):
    """Gauss-Hermite nodes and weights (numpy's ``hermgauss``), made once for each number of
    nodes: a call takes 0.2 ms, a tenth of a small fit's start. Read-only, as every fit
    shares them."""
    nodes, weights = np.polynomial.hermite.hermgauss(n_nodes)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def _adapt(d: _Data, par, nodes, weights, v0=None):
    """Conditional mode and curvature of each trial's random effect (v scale); nodes there."""
    k = d.k
    tau = par[-1]
    eta0 = _linear(d, par)
    v = np.zeros(k) if v0 is None else v0.copy()
    for _ in range(50):
        p = special.expit(eta0 + d.t * tau * v[d.codes])
        grad = tau * d.per_trial(d.t * (d.y - p)) - v
        hess = -(tau**2) * d.per_trial(d.t * p * (1 - p)) - 1.0
        step = -grad / hess
        v = v + step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = special.expit(eta0 + d.t * tau * v[d.codes])
    curv = tau**2 * d.per_trial(d.t * p * (1 - p)) + 1.0
    s = 1.0 / np.sqrt(curv)
    vq = v[:, None] + np.sqrt(2.0) * s[:, None] * nodes[None, :]  # (k, Q)
    # log of w_q * exp(z_q^2) * sqrt(2) s * phi(v_q): the quadrature weight of node q
    logw = (
        np.log(weights)[None, :] + nodes[None, :] ** 2 + np.log(np.sqrt(2.0) * s)[:, None]
        - 0.5 * vq**2 - 0.5 * np.log(2 * np.pi)
    )
    return v, vq, logw


def _bernoulli(eta, sign, ll=None, e=None):
    """log P(y | eta) and P(y = 1 | eta) for the logistic model, from one exponential:
    with e = exp(-|eta|), expit(eta) = 1/(1+e) or e/(1+e), and
    log P(y | eta) = min(0, s eta) - log1p(e) with s = 2y - 1 (stable for any eta).
    This is the innermost loop of the fit: it overwrites ``eta`` and writes into ``ll`` and
    ``e`` when given (arrays of eta's shape kept between calls: a new array of a million
    entries costs as much as the arithmetic on it)."""
    negative = eta < 0
    e = np.abs(eta, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    ll = np.log1p(e, out=ll)
    np.negative(ll, out=ll)
    np.multiply(sign, eta, out=eta)
    np.minimum(eta, 0.0, out=eta)
    ll += eta
    np.add(e, 1.0, out=e)
    p = np.divide(1.0, e, out=e)  # expit(|eta|)
    np.subtract(1.0, p, out=p, where=negative)  # expit(eta) = 1 - expit(|eta|) for eta < 0
    return ll, p


def _logsumexp_rows(a):
    """log(sum(exp(a), axis=1)) with the row maximum taken out: scipy's logsumexp does the
    same, with a per-call overhead that dominated this inner loop (written by hand for that)."""
    top = a.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide="ignore"):  # a row of -inf gives -inf, as in scipy
        return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def _mixture(d: _Data, par, vq, logw, derivatives=True):
    """Fixed-node quadrature log-likelihood, with its gradient and Hessian."""
    value = _likelihood(d, par, vq, logw)
    if not derivatives:
        return value.loglik, None, None
    return (value.loglik, *_score_and_information(d, value))


@dataclass
class _Evaluation:
    """A fixed-node log-likelihood and what its derivatives are computed from: the nodes'
    log-likelihood per trial (``lq``) and its log-sum (``lse``), and the probabilities of the
    exercise arms (one per node; held in the data's reused arrays) and of the control arms."""

    loglik: float
    lq: np.ndarray
    lse: np.ndarray
    p_t: np.ndarray
    p_c: np.ndarray
    vq: np.ndarray


def _likelihood(d: _Data, par, vq, logw) -> _Evaluation:
    """The fixed-node log-likelihood. Only participants in an exercise arm (t = 1) depend on
    the random effect; the terms of the others are the same at every node and are computed
    once, not once per node. Its derivatives (``_score_and_information``) must be taken
    before the next evaluation on the same data: they share its arrays."""
    tau = par[-1]
    n_nodes = vq.shape[1]
    lin = _linear(d, par)
    buf = d.node_buffers(n_nodes)  # (N_t, Q) each, reused by every call
    # each row's trial's nodes (clip: unbuffered)
    eta_t = np.take(tau * vq, d.codes_t, axis=0, out=buf.eta, mode="clip")
    eta_t += lin.take(d.treated_rows)[:, None]
    eta_c = lin.take(d.control_rows)
    ll_t, p_t = _bernoulli(eta_t, d.sign_t[:, None], buf.ll, buf.p)
    ll_c, p_c = _bernoulli(eta_c, d.sign_c)
    lq = d.sum_treated(ll_t) + d.sum_control(ll_c)[:, None] + logw  # (k, Q)
    lse = _logsumexp_rows(lq)
    return _Evaluation(float(lse.sum()), lq, lse, p_t, p_c, vq)


def _score_and_information(d: _Data, value: _Evaluation):
    """The gradient and Hessian (block-arrow) of the evaluation's log-likelihood. A line
    search takes them only for the step it accepts: a rejected step costs the likelihood
    alone."""
    k, r, pz = d.k, d.r, d.pz
    lq, lse, p_t, p_c, vq = value.lq, value.lse, value.p_t, value.p_c, value.vq
    n_nodes = vq.shape[1]
    work = d.node_buffers(n_nodes).work
    post = np.exp(lq - lse[:, None])  # (k, Q) posterior node weights
    nb = pz + r + 1  # columns of the base design: trial-specific z, common x, t (tau's is t * v_q)
    g_base = d.sum_treated_by_node(np.subtract(d.y_t[:, None], p_t, out=work), d.base_t)  # (k, Q, nb)
    p_t *= np.subtract(1.0, p_t, out=work)  # now the logistic weights p (1 - p)
    h_base = np.empty((k, n_nodes, nb, nb))
    upper = d.sum_treated_by_node(p_t, d.outer_t)  # (k, Q, upper triangle), mirrored below
    h_base[..., d.upper[0], d.upper[1]] = upper
    h_base[..., d.upper[1], d.upper[0]] = upper
    g_base += d.sum_control((d.y_c - p_c)[:, None] * d.base_c)[:, None, :]
    h_base += d.weighted_cross_control(p_c * (1 - p_c))[:, None]
    ne = nb + 1
    g = np.empty((k, n_nodes, ne))
    g[..., :nb] = g_base
    g[..., nb] = vq * g_base[..., nb - 1]
    h = np.empty((k, n_nodes, ne, ne))
    h[..., :nb, :nb] = h_base
    h[..., nb, :nb] = vq[..., None] * h_base[..., nb - 1, :]
    h[..., :nb, nb] = h[..., nb, :nb]
    h[..., nb, nb] = vq**2 * h_base[..., nb - 1, nb - 1]
    gbar = np.einsum("kq,kqe->ke", post, g)
    hk = np.einsum("kq,kqef->kef", post, -h + g[..., :, None] * g[..., None, :]) - gbar[:, :, None] * gbar[:, None, :]
    # the Hessian is block-arrow: trial blocks only meet the common parameters (beta, theta,
    # tau); it is kept in that form (a dense matrix has (k pz + r + 2)^2 entries)
    m = d.n_trial_params
    grad = np.empty(m + r + 2)
    grad[:m] = gbar[:, :pz].ravel()
    grad[m:] = gbar[:, pz:].sum(axis=0)
    hess = BlockArrow(hk[:, :pz, :pz], hk[:, :pz, pz:], hk[:, pz:, pz:].sum(axis=0))
    return grad, hess


class BlockArrow:
    """A symmetric matrix [[diag(T_1..T_k), B], [B', C]] with k small trial blocks T_i
    (pz x pz), their couplings B_i (pz x c) to c common parameters and the common block C.
    Newton steps and the common parameters' covariance come from the Schur complement
    S = C - sum_i B_i' T_i^-1 B_i: O(k) work instead of O(k^3) for the dense matrix."""

    def __init__(self, trial, cross, common):
        self.trial, self.cross, self.common = trial, cross, common

    def dense(self):
        """The full matrix (for checks and small problems)."""
        k, pz, c = self.cross.shape
        m = k * pz
        out = np.zeros((m + c, m + c))
        for i in range(k):
            out[i * pz:(i + 1) * pz, i * pz:(i + 1) * pz] = self.trial[i]
        out[:m, m:] = self.cross.reshape(m, c)
        out[m:, :m] = out[:m, m:].T
        out[m:, m:] = self.common
        return out

    def _masked(self, free, sign):
        """sign * matrix with the rows and columns of fixed parameters replaced by identity."""
        k, pz, c = self.cross.shape
        ft, fc = free[:k * pz].reshape(k, pz), free[k * pz:]
        trial = sign * self.trial * (ft[:, :, None] & ft[:, None, :])
        trial[~ft] += np.eye(pz)[np.nonzero(~ft)[1]]
        cross = sign * self.cross * (ft[:, :, None] & fc[None, None, :])
        common = sign * self.common * np.outer(fc, fc)
        common[~fc, ~fc] = 1.0
        return trial, cross, common

    def solve_negative(self, g, free, shift=0.0):
        """x with (-H + shift I) x = g on the free parameters (0 elsewhere), via Cholesky of
        the trial blocks and the Schur complement (whose Cholesky only checks it: one LU
        solve costs less than two triangular ones through numpy); LinAlgError if not
        positive definite."""
        k, pz, c = self.cross.shape
        trial, cross, common = self._masked(free, -1.0)
        if shift:
            trial = trial + shift * np.eye(pz)
            common = common + shift * np.eye(c)
        g = np.where(free, g, 0.0)
        gt, gc = g[:k * pz].reshape(k, pz), g[k * pz:]
        chol = np.linalg.cholesky(trial)
        # T_i^-1 B_i and T_i^-1 g_i from one pair of triangular solves (each column on its own)
        solved = _chol_solve(chol, np.concatenate([cross, gt[:, :, None]], axis=2))
        inv_cross, inv_gt = solved[:, :, :c], solved[:, :, c]
        schur = common - np.einsum("kpa,kpb->ab", cross, inv_cross)
        np.linalg.cholesky(schur)  # raises LinAlgError if not positive definite (then the caller shifts)
        xc = np.linalg.solve(schur, gc - np.einsum("kpa,kp->a", cross, inv_gt))
        xt = inv_gt - np.einsum("kpa,a->kp", inv_cross, xc)
        return np.where(free, np.r_[xt.ravel(), xc], 0.0)

    def common_covariance(self, free):
        """The common parameters' block of (-H)^-1 restricted to the free parameters: the
        inverse of the Schur complement (NaN rows and columns for fixed common parameters)."""
        k, pz, c = self.cross.shape
        trial, cross, common = self._masked(free, -1.0)
        inv_cross = np.linalg.solve(trial, cross)
        schur = common - np.einsum("kpa,kpb->ab", cross, inv_cross)
        fc = free[k * pz:]
        cov = np.full((c, c), np.nan)
        cov[np.ix_(fc, fc)] = np.linalg.inv(schur[np.ix_(fc, fc)])
        return cov


def _chol_solve(chol, rhs):
    """Solve L L' x = rhs for a stack of lower-triangular L (k, p, p) and rhs (k, p, q)."""
    return np.linalg.solve(np.swapaxes(chol, 1, 2), np.linalg.solve(chol, rhs))


def _newton_direction(g, h: BlockArrow, free):
    """Newton direction for maximisation; if -H is not positive definite (far from the
    optimum), shift it (Levenberg) until it is."""
    try:
        return h.solve_negative(g, free)  # the usual case, near the optimum
    except np.linalg.LinAlgError:
        pass
    scale = max(np.abs(np.r_[np.diagonal(h.trial, axis1=1, axis2=2).ravel(), np.diag(h.common)]).mean(), 1e-12)
    shift = 1e-6 * scale
    for _ in range(29):
        try:
            return h.solve_negative(g, free, shift)
        except np.linalg.LinAlgError:
            shift *= 10
    return np.where(free, g, 0.0) / scale  # steepest ascent as the last resort


def _newton(d, par, vq, logw, free, max_iter=50, tol=1e-10):
    """Maximise the fixed-node likelihood by Newton steps with backtracking over the free
    parameters.

    Converged when the common parameters stop moving and the log-likelihood stops rising:
    a trial-specific slope under separation drifts towards infinity while adding nothing,
    and must not hold up convergence.
    """
    ll, grad, hess = _mixture(d, par, vq, logw)
    m = d.n_trial_params
    for _ in range(max_iter):
        direction = _newton_direction(grad, hess, free)
        step_size = 1.0
        for _ in range(40):
            step = step_size * direction
            new = par + step
            value = _likelihood(d, new, vq, logw)
            if np.isfinite(value.loglik) and value.loglik >= ll - 1e-12 * max(1.0, abs(ll)):
                ll_new, (grad_new, hess_new) = value.loglik, _score_and_information(d, value)
                break
            step_size /= 2
        else:
            return par, ll, grad, hess, False
        par, ll_old = new, ll
        ll, grad, hess = ll_new, grad_new, hess_new
        if np.max(np.abs(step[m:])) < tol and (ll - ll_old) < 1e-12 * max(1.0, abs(ll)):
            return par, ll, grad, hess, True
    return par, ll, grad, hess, False


def _start(d: _Data, max_iter=50):
    """Common-effect logistic fit (tau = 0): the common-effect model's estimate, or with a few
    Newton steps (``max_iter``) the random-effect fit's starting point."""
    k = d.k
    rate = np.clip(d.per_trial(d.y) / np.diff(np.r_[d.starts, len(d.y)]), 0.02, 0.98)
    a = np.zeros((k, d.pz))
    a[:, 0] = special.logit(rate)
    par = np.r_[a.ravel(), np.zeros(d.r), 0.0, 0.0]
    free = d.free.copy()
    free[-1] = False
    zero = np.zeros((k, 1))
    par, ll, grad, hess, ok = _newton(d, par, zero, zero, free, max_iter=max_iter)
    return par, ll, hess, ok


def _tau_start(d: _Data, par) -> float:
    """Where the random-effect fit starts tau: one Fisher scoring step for tau^2 from the
    common-effect fit (tau = 0), sum_i (U_i^2 - I_i) / sum_i I_i^2 with U_i and I_i the score
    and information of trial i's exercise effect, kept within [TAU_START_MIN, TAU_START_MAX].
    The estimate does not depend on the start; a start near it saves the first rounds'
    steps. Not 0: there the likelihood is flat in tau (it is symmetric about 0)."""
    p = special.expit(_linear(d, par))
    score = d.per_trial(d.t * (d.y - p))
    info = d.per_trial(d.t * p * (1 - p))
    tau2 = np.sum(score**2 - info) / max(np.sum(info**2), 1e-300)
    return float(np.clip(np.sqrt(max(tau2, 0.0)), TAU_START_MIN, TAU_START_MAX))


def fit_mixed_logistic(trial, y, x, t, z=None, n_nodes: int = 15, random_effect: bool = True,
                       max_rounds: int = 100, common_terms=None) -> LogisticFit:
    """Fit the mixed logistic model.

    Parameters
    ----------
    x : common adjustment terms (may be empty); their estimates are ``beta``.
    z : optional trial-specific terms (a coefficient per trial, like the intercepts).
    n_nodes : quadrature nodes per trial (>= 5).

    A trial whose outcome is all 0 or all 1 has no finite intercept; it carries no
    information on theta or tau and is set aside before fitting (said in ``message``).
    Arms without events within an otherwise informative trial are fine.
    """
    if n_nodes < 5:
        raise ValueError(
            "n_nodes must be at least 5: the fixed-node Newton scheme converges to the "
            "maximum of the integrated likelihood only when the quadrature is near exact "
            "(a Laplace approximation, n_nodes = 1, is not supported)"
        )
    y = np.asarray(y, float)
    trial = np.asarray(trial)
    n_obs = len(y)
    x = np.asarray(x, float).reshape(n_obs, -1) if np.asarray(x).size else np.zeros((n_obs, 0))
    z = None if z is None else np.asarray(z, float).reshape(n_obs, -1)
    t = np.asarray(t, float)
    labels, codes = trial_codes(trial)
    rate = np.bincount(codes, weights=y) / np.bincount(codes)
    varies = (rate > 0) & (rate < 1)
    message = ""
    if not varies.all():
        dropped = sorted(labels[~varies])
        message = f"trials without variation in the outcome set aside: {', '.join(map(str, dropped))}"
        keep = varies[codes]  # by code: np.isin sorts the rows' labels (7 s at a million text labels)
        trial, y, t, x = trial[keep], y[keep], t[keep], x[keep]
        z = None if z is None else z[keep]
    d = _Data(trial, y, x, t, z)
    if d.k < 2 and random_effect:
        random_effect = False
        message = (
            message + "; " if message else ""
        ) + "fewer than two trials: tau^2 not estimable, common-effect model"
    nodes, weights = gauss_hermite(n_nodes)
    # a starting point needs no more precision than the adaptive rounds begin with
    par, ll, hess, converged = _start(d, START_STEPS) if random_effect else _start(d)
    rounds = 0
    free = d.free.copy()
    if random_effect:
        par[-1] = _tau_start(d, par)
        v = None
        converged = False
        m = d.n_trial_params
        settled = False
        for rounds in range(1, max_rounds + 1):  # noqa: B007 (reported after the loop)
            v, vq, logw = _adapt(d, par, nodes, weights, v)
            # while the nodes still move, a few Newton steps per adaptation suffice; once the
            # common parameters have settled, each round solves to full precision. Converged
            # when a round's Newton steps converged (ok) and barely moved from the last nodes'
            # optimum, whichever kind of round that was
            new, ll, grad, hess, ok = _newton(d, par, vq, logw, free, max_iter=20 if settled else 3)
            moved = np.max(np.abs(new[m:] - par[m:]))
            par = new
            if ok and moved < 1e-8:
                converged = True
                break
            settled = settled or moved < 1e-4
        v, vq, logw = _adapt(d, par, nodes, weights, v)
        ll, grad, hess = _mixture(d, par, vq, logw)
    trial_par = par[: d.n_trial_params].reshape(d.k, d.pz)
    if d.pz > 1 and np.any(np.abs(trial_par[:, 1:]) > SEPARATION_LIMIT):
        sep = [str(d.labels[i]) for i in np.flatnonzero(np.any(np.abs(trial_par[:, 1:]) > SEPARATION_LIMIT, axis=1))]
        message = (message + "; " if message else "") + (
            f"separation in {', '.join(sep)}: its own covariate slope is not finite (does not affect the common terms)")
    tau = abs(par[-1]) if random_effect else 0.0
    boundary = random_effect and tau < 1e-4
    use = free.copy()
    if boundary or not random_effect:
        use[-1] = False  # tau at 0 (or fixed): its row of the information is 0
    cov = hess.common_covariance(use)  # (beta..., theta, tau); NaN where not free
    with np.errstate(invalid="ignore"):
        se_common = np.sqrt(np.diag(cov))
    if boundary:
        message = (message + "; " if message else "") + "tau^2 estimated at the boundary (0)"
    m, r = d.n_trial_params, d.r
    return LogisticFit(
        theta=float(par[m + r]), se=float(se_common[r]), tau2=float(tau**2) if not boundary else 0.0,
        beta=par[m : m + r].copy(), se_beta=se_common[:r].copy(), loglik=ll,
        n_trials=int(len(labels)), n_participants=int(n_obs), converged=bool(converged), boundary=bool(boundary),
        n_nodes=n_nodes if random_effect else 0, iterations=rounds, message=message,
        cov_common=cov[:r + 1, :r + 1],
    )
