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

import numpy as np
from scipy import special, stats

__all__ = ["LogisticFit", "fit_mixed_logistic"]


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

    def summary(self, level: float = 0.95) -> dict:
        z = stats.norm.ppf(0.5 + level / 2)
        k = self.n_trials
        if k > 2:
            half = stats.t.ppf(0.5 + level / 2, k - 2) * np.sqrt(self.tau2 + self.se**2)
            pi = (self.theta - half, self.theta + half)
        else:
            pi = (np.nan, np.nan)
        return dict(
            estimate=self.theta, se=self.se, ci_low=self.theta - z * self.se,
            ci_high=self.theta + z * self.se, df=np.inf,
            p=float(2 * stats.norm.sf(abs(self.theta / self.se))) if self.se > 0 else np.nan,
            tau2=self.tau2, pi_low=pi[0], pi_high=pi[1], n_trials=k,
            n_participants=self.n_participants, converged=self.converged,
        )


def _log1pexp(x):
    return np.logaddexp(0.0, x)


class _Data:
    """Participants sorted by trial, with group boundaries for fast per-trial sums."""

    def __init__(self, trial, y, x, t):
        labels, codes = np.unique(np.asarray(trial), return_inverse=True)
        order = np.argsort(codes, kind="stable")
        self.labels = labels
        self.codes = codes[order]
        self.y = np.asarray(y, float)[order]
        x = np.asarray(x, float)
        x = x.reshape(len(self.y), -1)[order] if x.size else np.zeros((len(self.y), 0))
        self.x = x - x.mean(axis=0)  # centring improves conditioning; theta is unchanged
        self.x_mean = np.asarray(x.mean(axis=0)) if x.size else np.zeros(0)
        self.t = np.asarray(t, float)[order]
        self.starts = np.flatnonzero(np.r_[True, self.codes[1:] != self.codes[:-1]])
        self.k = len(labels)
        self.r = self.x.shape[1]

    def per_trial(self, arr):
        return np.add.reduceat(arr, self.starts, axis=0)


def _linear(d: _Data, par):
    k, r = d.k, d.r
    a, beta, theta = par[:k], par[k : k + r], par[k + r]
    return a[d.codes] + d.x @ beta + d.t * theta


def _adapt(d: _Data, par, nodes, weights, v0=None):
    """Conditional mode and curvature of each trial's random effect (v scale); nodes there."""
    k, r = d.k, d.r
    tau = par[k + r + 1]
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


def _mixture(d: _Data, par, vq, logw, derivatives=True):
    """Fixed-node quadrature log-likelihood, with its gradient and Hessian."""
    k, r = d.k, d.r
    tau = par[k + r + 1]
    eta = _linear(d, par)[:, None] + d.t[:, None] * tau * vq[d.codes]  # (N, Q)
    ll_obs = d.y[:, None] * eta - _log1pexp(eta)
    lq = d.per_trial(ll_obs) + logw  # (k, Q)
    lse = special.logsumexp(lq, axis=1)
    loglik = float(lse.sum())
    if not derivatives:
        return loglik, None, None
    post = np.exp(lq - lse[:, None])  # (k, Q) posterior node weights
    p = special.expit(eta)
    resid = d.y[:, None] - p
    wgt = p * (1 - p)
    # base design per participant: (1, x, t); the tau column is t * v_q
    base = np.column_stack([np.ones(len(d.y)), d.x, d.t])  # (N, r+2)
    nb = r + 2
    g_base = d.per_trial(resid[:, :, None] * base[:, None, :])  # (k, Q, nb)
    h_base = d.per_trial(wgt[:, :, None, None] * (base[:, :, None] * base[:, None, :])[:, None])  # (k,Q,nb,nb)
    ne = nb + 1
    g = np.empty((k, vq.shape[1], ne))
    g[..., :nb] = g_base
    g[..., nb] = vq * g_base[..., nb - 1]
    h = np.empty((k, vq.shape[1], ne, ne))
    h[..., :nb, :nb] = h_base
    h[..., nb, :nb] = vq[..., None] * h_base[..., nb - 1, :]
    h[..., :nb, nb] = h[..., nb, :nb]
    h[..., nb, nb] = vq**2 * h_base[..., nb - 1, nb - 1]
    gbar = np.einsum("kq,kqe->ke", post, g)
    hk = np.einsum("kq,kqef->kef", post, -h + g[..., :, None] * g[..., None, :]) - gbar[:, :, None] * gbar[:, None, :]
    # scatter into the full parameter vector (a_1..a_k, beta, theta, tau)
    npar = k + ne - 1
    grad = np.zeros(npar)
    hess = np.zeros((npar, npar))
    grad[:k] = gbar[:, 0]
    grad[k:] = gbar[:, 1:].sum(axis=0)
    idx = np.arange(k)
    hess[idx, idx] = hk[:, 0, 0]
    hess[:k, k:] = hk[:, 0, 1:]
    hess[k:, :k] = hk[:, 1:, 0].T
    hess[k:, k:] = hk[:, 1:, 1:].sum(axis=0)
    return loglik, grad, hess


def _newton(d, par, vq, logw, max_iter=50, tol=1e-10):
    """Maximise the fixed-node likelihood by damped Newton steps."""
    ll, grad, hess = _mixture(d, par, vq, logw)
    for it in range(max_iter):
        lam = 0.0
        while True:
            try:
                step = np.linalg.solve(-hess + lam * np.eye(len(par)), grad)
            except np.linalg.LinAlgError:
                step = None
            if step is not None:
                new = par + step
                ll_new = _mixture(d, new, vq, logw, derivatives=False)[0]
                if np.isfinite(ll_new) and ll_new >= ll - 1e-10:
                    break
            lam = max(1e-6, lam * 10)
            if lam > 1e8:
                return par, ll, grad, hess, False
        par = new
        ll, grad, hess = _mixture(d, par, vq, logw)
        if np.max(np.abs(step)) < tol:
            return par, ll, grad, hess, True
    return par, ll, grad, hess, False


def _start(d: _Data):
    """Common-effect logistic fit (tau = 0) as the starting point."""
    k, r = d.k, d.r
    rate = np.clip(d.per_trial(d.y) / np.diff(np.r_[d.starts, len(d.y)]), 0.02, 0.98)
    par = np.r_[special.logit(rate), np.zeros(r), 0.0, 0.0]
    zero_nodes = np.zeros((k, 1))
    par, *_ = _newton(d, par, zero_nodes, np.zeros((k, 1)))
    return par


def fit_mixed_logistic(trial, y, x, t, n_nodes: int = 15, random_effect: bool = True,
                       max_rounds: int = 100) -> LogisticFit:
    """Fit the mixed logistic model; ``x`` holds the adjustment covariates (may be empty).

    A trial whose outcome is all 0 or all 1 has no finite intercept; such a trial carries
    no information on theta or tau and is set aside before fitting (reported in
    ``message``). Arms without events within an otherwise informative trial are fine.
    """
    if n_nodes < 5:
        raise ValueError(
            "n_nodes must be at least 5: the fixed-node Newton scheme converges to the "
            "maximum of the integrated likelihood only when the quadrature is near exact "
            "(a Laplace approximation, n_nodes = 1, is not supported)"
        )
    y = np.asarray(y, float)
    trial = np.asarray(trial)
    labels = np.unique(trial)
    informative = [lab for lab in labels if 0 < y[trial == lab].mean() < 1]
    message = ""
    if len(informative) < len(labels):
        dropped = sorted(set(labels) - set(informative))
        message = f"trials without variation in the outcome set aside: {', '.join(map(str, dropped))}"
        keep = np.isin(trial, informative)
        trial, y, t = trial[keep], y[keep], np.asarray(t)[keep]
        x = np.asarray(x, float).reshape(len(keep), -1)[keep]
    d = _Data(trial, y, x, t)
    n_total = len(y)
    if d.k < 2 and random_effect:
        random_effect = False
        message = (message + "; " if message else "") + "fewer than two trials: tau^2 not estimable, common-effect model"
    nodes, weights = np.polynomial.hermite.hermgauss(n_nodes)
    par = _start(d)
    k, r = d.k, d.r
    converged = True
    rounds = 0
    if random_effect:
        par[k + r + 1] = 0.5
        v = None
        converged = False
        for rounds in range(1, max_rounds + 1):
            v, vq, logw = _adapt(d, par, nodes, weights, v)
            new, ll, grad, hess, ok = _newton(d, par, vq, logw)
            moved = np.max(np.abs(new - par))
            par = new
            if ok and moved < 1e-8:
                converged = True
                break
        v, vq, logw = _adapt(d, par, nodes, weights, v)
        ll, grad, hess = _mixture(d, par, vq, logw)
    else:
        zero = np.zeros((k, 1))
        ll, grad, hess = _mixture(d, par, zero, zero)
        hess = hess[:-1, :-1]
    tau = abs(par[k + r + 1]) if random_effect else 0.0
    boundary = random_effect and tau < 1e-4
    if boundary:
        # tau at 0: its row of the information is 0; invert without it
        hess = hess[:-1, :-1]
    cov = np.linalg.inv(-hess)
    se_all = np.sqrt(np.diag(cov))
    if boundary:
        message = (message + "; " if message else "") + "tau^2 estimated at the boundary (0)"
    return LogisticFit(
        theta=float(par[k + r]), se=float(se_all[k + r]), tau2=float(tau**2) if not boundary else 0.0,
        beta=par[k : k + r].copy(), se_beta=se_all[k : k + r].copy(), loglik=ll,
        n_trials=int(d.k), n_participants=int(n_total), converged=bool(converged), boundary=bool(boundary),
        n_nodes=n_nodes if random_effect else 0, iterations=rounds, message=message,
    )
