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
    cov_common: np.ndarray = None  # covariance of (beta..., theta)

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
    """Participants sorted by trial, with group boundaries for fast per-trial sums.

    ``z`` holds trial-specific terms (each trial gets its own coefficient, as its own
    intercept); ``x`` common terms; ``t`` the exercise indicator.
    """

    def __init__(self, trial, y, x, t, z=None):
        labels, codes = np.unique(np.asarray(trial), return_inverse=True)
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
        zc = z - np.repeat(self.per_trial(z) / counts[:, None], counts, axis=0)  # centred within trial
        self.zfull = np.column_stack([np.ones(n), zc])
        self.pz = self.zfull.shape[1]
        # a trial-specific term with no variation in its trial has no coefficient there
        spread = self.per_trial(zc**2)
        self.free = np.r_[np.column_stack([np.ones(self.k, bool), spread > 1e-12]).ravel(),
                          np.ones(self.r + 2, bool)]

    def per_trial(self, arr):
        return np.add.reduceat(arr, self.starts, axis=0)

    @property
    def n_trial_params(self):
        return self.k * self.pz


def _linear(d: _Data, par):
    m, r = d.n_trial_params, d.r
    a = par[:m].reshape(d.k, d.pz)
    beta, theta = par[m : m + r], par[m + r]
    return np.einsum("ij,ij->i", a[d.codes], d.zfull) + d.x @ beta + d.t * theta


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


def _mixture(d: _Data, par, vq, logw, derivatives=True):
    """Fixed-node quadrature log-likelihood, with its gradient and Hessian."""
    k, r, pz = d.k, d.r, d.pz
    tau = par[-1]
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
    # base design per participant: (trial-specific z, common x, t); the tau column is t * v_q
    base = np.column_stack([d.zfull, d.x, d.t])  # (N, nb)
    nb = pz + r + 1
    outer = (base[:, :, None] * base[:, None, :]).reshape(len(base), nb * nb)  # (N, nb^2)
    g_base = np.empty((k, vq.shape[1], nb))
    h_base = np.empty((k, vq.shape[1], nb * nb))
    bounds = np.r_[d.starts, len(base)]
    for i in range(k):  # per-trial matrix products (BLAS): sums over the trial's participants
        sl = slice(bounds[i], bounds[i + 1])
        g_base[i] = resid[sl].T @ base[sl]
        h_base[i] = wgt[sl].T @ outer[sl]
    h_base = h_base.reshape(k, vq.shape[1], nb, nb)
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
    # scatter into the full parameter vector (trial blocks..., beta, theta, tau): the
    # Hessian is block-arrow (trial blocks only meet the common parameters)
    m = d.n_trial_params
    npar = m + r + 2
    grad = np.zeros(npar)
    hess = np.zeros((npar, npar))
    grad[:m] = gbar[:, :pz].ravel()
    grad[m:] = gbar[:, pz:].sum(axis=0)
    base_idx = np.arange(k) * pz
    for j in range(pz):
        for l in range(pz):
            hess[base_idx + j, base_idx + l] = hk[:, j, l]
    cross = hk[:, :pz, pz:].reshape(k * pz, -1)
    hess[:m, m:] = cross
    hess[m:, :m] = cross.T
    hess[m:, m:] = hk[:, pz:, pz:].sum(axis=0)
    return loglik, grad, hess


def _newton(d, par, vq, logw, free, max_iter=50, tol=1e-10):
    """Maximise the fixed-node likelihood by damped Newton steps over the free parameters.

    Converged when the common parameters stop moving and the log-likelihood stops rising:
    a trial-specific slope under separation drifts towards infinity while adding nothing,
    and must not hold up convergence.
    """
    ll, grad, hess = _mixture(d, par, vq, logw)
    m = d.n_trial_params
    for _ in range(max_iter):
        lam = 0.0
        g, h = grad[free], hess[np.ix_(free, free)]
        while True:
            try:
                step_free = np.linalg.solve(-h + lam * np.eye(len(g)), g)
            except np.linalg.LinAlgError:
                step_free = None
            if step_free is not None and np.all(np.isfinite(step_free)):
                step = np.zeros_like(par)
                step[free] = step_free
                new = par + step
                ll_new = _mixture(d, new, vq, logw, derivatives=False)[0]
                if np.isfinite(ll_new) and ll_new >= ll - 1e-10:
                    break
            lam = max(1e-6, lam * 10)
            if lam > 1e8:
                return par, ll, grad, hess, False
        par = new
        ll_old = ll
        ll, grad, hess = _mixture(d, par, vq, logw)
        if np.max(np.abs(step[m:])) < tol and (ll - ll_old) < 1e-9:
            return par, ll, grad, hess, True
    return par, ll, grad, hess, False


def _start(d: _Data):
    """Common-effect logistic fit (tau = 0) as the starting point."""
    k = d.k
    rate = np.clip(d.per_trial(d.y) / np.diff(np.r_[d.starts, len(d.y)]), 0.02, 0.98)
    a = np.zeros((k, d.pz))
    a[:, 0] = special.logit(rate)
    par = np.r_[a.ravel(), np.zeros(d.r), 0.0, 0.0]
    free = d.free.copy()
    free[-1] = False
    zero = np.zeros((k, 1))
    par, ll, grad, hess, ok = _newton(d, par, zero, zero, free)
    return par, ll, hess, ok


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
    labels = np.unique(trial)
    informative = [lab for lab in labels if 0 < y[trial == lab].mean() < 1]
    message = ""
    if len(informative) < len(labels):
        dropped = sorted(set(labels) - set(informative))
        message = f"trials without variation in the outcome set aside: {', '.join(map(str, dropped))}"
        keep = np.isin(trial, informative)
        trial, y, t, x = trial[keep], y[keep], t[keep], x[keep]
        z = None if z is None else z[keep]
    d = _Data(trial, y, x, t, z)
    if d.k < 2 and random_effect:
        random_effect = False
        message = (message + "; " if message else "") + "fewer than two trials: tau^2 not estimable, common-effect model"
    nodes, weights = np.polynomial.hermite.hermgauss(n_nodes)
    par, ll, hess, converged = _start(d)
    rounds = 0
    free = d.free.copy()
    if random_effect:
        par[-1] = 0.5
        v = None
        converged = False
        m = d.n_trial_params
        for rounds in range(1, max_rounds + 1):
            v, vq, logw = _adapt(d, par, nodes, weights, v)
            new, ll, grad, hess, ok = _newton(d, par, vq, logw, free, max_iter=20)
            moved = np.max(np.abs(new[m:] - par[m:]))
            par = new
            if ok and moved < 1e-8:
                converged = True
                break
        v, vq, logw = _adapt(d, par, nodes, weights, v)
        ll, grad, hess = _mixture(d, par, vq, logw)
    trial_par = par[: d.n_trial_params].reshape(d.k, d.pz)
    if d.pz > 1 and np.any(np.abs(trial_par[:, 1:]) > 15):
        sep = [str(d.labels[i]) for i in np.flatnonzero(np.any(np.abs(trial_par[:, 1:]) > 15, axis=1))]
        message = (message + "; " if message else "") + (
            f"separation in {', '.join(sep)}: its own covariate slope is not finite (does not affect the common terms)")
    tau = abs(par[-1]) if random_effect else 0.0
    boundary = random_effect and tau < 1e-4
    use = free.copy()
    if boundary or not random_effect:
        use[-1] = False  # tau at 0 (or fixed): its row of the information is 0
    cov = np.full((len(par), len(par)), np.nan)
    cov[np.ix_(use, use)] = np.linalg.inv(-hess[np.ix_(use, use)])
    with np.errstate(invalid="ignore"):
        se_all = np.sqrt(np.diag(cov))  # NaN for parameters that are not free
    if boundary:
        message = (message + "; " if message else "") + "tau^2 estimated at the boundary (0)"
    m, r = d.n_trial_params, d.r
    return LogisticFit(
        theta=float(par[m + r]), se=float(se_all[m + r]), tau2=float(tau**2) if not boundary else 0.0,
        beta=par[m : m + r].copy(), se_beta=se_all[m : m + r].copy(), loglik=ll,
        n_trials=int(len(labels)), n_participants=int(n_obs), converged=bool(converged), boundary=bool(boundary),
        n_nodes=n_nodes if random_effect else 0, iterations=rounds, message=message,
        cov_common=cov[m:m + r + 1, m:m + r + 1],
    )
