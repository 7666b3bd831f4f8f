"""The one-stage mixed logistic model fitted across sites that keep their data.

The model is that of :mod:`analysis.models.glmm`: trial intercepts (and trial-specific
terms) a_i, common slopes beta, the exercise effect theta and its between-trial SD tau. Its
likelihood is a product over trials, and the trial parameters belong to one trial each. So
at given common parameters phi = (beta, theta, tau) each site can

1. maximise its trials' likelihood over their own a_i (the profile likelihood in phi), with
   the quadrature nodes adapted to each trial's random effect, as the pooled fit adapts them;
2. return the log-likelihood, the gradient in phi and the Hessian in phi after eliminating
   a_i (the Schur complement of the trial blocks).

Sums over sites are the pooled profile likelihood's log-likelihood, gradient and Hessian
(the pooled Hessian is block-arrow, so its Schur complement is a sum over trials), and a
central Newton iteration on phi alone reaches the pooled maximum-likelihood estimate. What
leaves a site: one number, a gradient of length len(phi) and a len(phi)^2 matrix per
evaluation; never a participant's value and never a trial's own parameters.

Written by hand: no library fits a one-stage GLMM across sites exactly (DataSHIELD's
``ds.glmerSLMA`` pools per-study fits, a two-stage method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import special

from analysis.models.glmm import (
    SEPARATION_LIMIT,
    LogisticFit,
    _adapt,
    _Data,
    _likelihood,
    _mixture,
    _score_and_information,
    gauss_hermite,
)
from analysis.models.pertrial import trial_codes

__all__ = ["LogisticDesign", "SiteModel", "SiteProfile", "site_profile", "informative_trials", "fit_rounds",
           "FitRequest", "BOUNDARY_TAU", "START_TAU"]

BOUNDARY_TAU = 1e-4  # tau below this is reported as tau^2 = 0 (as the pooled fit does)
START_TAU = 0.5  # where the random-effects phase starts (as the pooled fit does)
MAX_STEP = 2.0  # the centre's Newton steps are at most this long (in the largest coordinate)
_INNER_TOL = 1e-10


class LogisticDesign(NamedTuple):
    """The arrays of one mixed logistic model: trial labels, outcome, common terms x,
    exercise indicator t and optional trial-specific terms z."""

    trial: np.ndarray
    y: np.ndarray
    x: np.ndarray
    t: np.ndarray
    z: np.ndarray | None = None

    def subset(self, keep) -> LogisticDesign:
        keep = np.asarray(keep)
        return LogisticDesign(self.trial[keep], self.y[keep], self.x[keep], self.t[keep],
                              None if self.z is None else self.z[keep])


def informative_trials(design: LogisticDesign) -> np.ndarray:
    """Labels of the trials whose outcome varies (an all-0 or all-1 trial has no finite
    intercept and carries no information on theta or tau; the pooled fit sets it aside)."""
    labels, codes = trial_codes(design.trial)
    rate = np.bincount(codes, weights=np.asarray(design.y, float)) / np.bincount(codes)
    return labels[(rate > 0) & (rate < 1)]


@dataclass
class SiteProfile:
    """One site's share of the profile likelihood at the common parameters it was given."""

    loglik: float
    grad: np.ndarray  # (c,) d loglik / d phi, with the trials' own parameters profiled out
    hess: np.ndarray  # (c, c) the Hessian in phi after eliminating them (Schur complement)
    separated: list = field(default_factory=list)  # trials whose own slope is not finite
    state: tuple | None = None  # (a, v): a warm start for the next evaluation (stays at the site)


class SiteModel:
    """One model's data at one site, prepared once (sorted, centred, outer products) and
    evaluated at every parameter vector the centre sends; the trials' own parameters of the
    last evaluation are kept as the next one's start (they never leave the site)."""

    def __init__(self, design: LogisticDesign, n_nodes: int = 15):
        self.data = _Data(design.trial, design.y, design.x, design.t, design.z)
        self.nodes, self.weights = gauss_hermite(n_nodes)
        self.state = None

    def profile(self, phi, adaptive: bool) -> SiteProfile:
        result = site_profile(self.data, phi, adaptive, self.nodes, self.weights, self.state)
        self.state = result.state
        return result


def _cold_start(d: _Data) -> np.ndarray:
    """The trials' own parameters at the start: logit of each trial's event rate, slopes 0."""
    counts = np.diff(np.r_[d.starts, len(d.y)])
    start = np.zeros((d.k, d.pz))
    start[:, 0] = special.logit(np.clip(d.per_trial(d.y) / counts, 0.02, 0.98))
    return start.ravel()


def _solve_trials(d: _Data, phi, adaptive, nodes, weights, a, v):
    """Maximise over the trials' own parameters at ``phi``; returns (par, v, ll, grad, hess)
    with the nodes adapted at the solution."""
    m = d.n_trial_params
    par = np.r_[a, phi]
    free = d.free.copy()
    free[m:] = False  # only the trials' own parameters move here
    if not adaptive:
        zero = np.zeros((d.k, 1))
        par, ll, grad, hess = _trial_newton(d, par, zero, zero, free)
        return par, v, ll, grad, hess
    for _ in range(100):
        v, vq, logw = _adapt(d, par, nodes, weights, v)
        new, ll, grad, hess = _trial_newton(d, par, vq, logw, free)
        moved = np.max(np.abs(new[:m] - par[:m])) if m else 0.0
        par = new
        if moved == 0.0:
            return par, v, ll, grad, hess  # nodes adapted at par, derivatives at par
        if moved < _INNER_TOL:
            break
    v, vq, logw = _adapt(d, par, nodes, weights, v)
    ll, grad, hess = _mixture(d, par, vq, logw)
    return par, v, ll, grad, hess


def site_profile(d: _Data, phi, adaptive: bool, nodes, weights, state=None) -> SiteProfile:
    """The profile log-likelihood of the trials in ``d`` at common parameters ``phi`` =
    (beta..., theta, tau), with its gradient and Hessian in phi.

    ``adaptive`` False evaluates the common-effect likelihood (tau fixed at 0: no quadrature,
    the pooled fit's starting phase); True uses the Gauss-Hermite ``nodes`` adapted to each
    trial's conditional mode, as the pooled fit does. ``state`` (the previous evaluation's
    trial parameters) is a warm start; when it leaves a trial parameter beyond the
    separation limit, the solve is repeated from the cold start and the better one kept (a
    start from far away can saturate a direction that is not separated)."""
    m = d.n_trial_params
    phi = np.asarray(phi, float)
    if len(phi) != d.r + 2:
        raise ValueError(f"phi has {len(phi)} values; this design has {d.r} common slopes, theta and tau")
    a, v = state if state is not None else (_cold_start(d), None)
    par, v, ll, grad, hess = _solve_trials(d, phi, adaptive, nodes, weights, a, v)
    if state is not None and np.any(np.abs(par[:m]) > SEPARATION_LIMIT):
        cold = _solve_trials(d, phi, adaptive, nodes, weights, _cold_start(d), None)
        if cold[2] > ll:
            par, v, ll, grad, hess = cold
    g, h = _eliminate_trials(grad, hess, d.free, m)
    trial_par = par[:m].reshape(d.k, d.pz)
    separated = [str(d.labels[i]) for i in np.flatnonzero(np.any(np.abs(trial_par[:, 1:]) > SEPARATION_LIMIT,
                                                                 axis=1))]
    return SiteProfile(float(ll), g, h, separated, (par[:m].copy(), v))


def _trial_newton(d, par, vq, logw, free, max_iter=100):
    """Maximise over the trials' own parameters with the nodes held: Newton steps trial by
    trial with a pseudo-inverse, so that a slope under separation (a direction without
    curvature) stops instead of stalling every other direction; backtracking keeps the
    log-likelihood rising."""
    m = d.n_trial_params
    k, pz = d.k, d.pz
    ft = free[:m].reshape(k, pz)
    ll, grad, hess = _mixture(d, par, vq, logw)
    for _ in range(max_iter):
        block = np.where(ft[:, :, None] & ft[:, None, :], -hess.trial, 0.0)
        g = np.where(ft, grad[:m].reshape(k, pz), 0.0)
        step = (np.linalg.pinv(block, rcond=1e-12, hermitian=True) @ g[:, :, None])[:, :, 0].ravel()
        if np.max(np.abs(step), initial=0.0) < _INNER_TOL:
            break  # converged: the derivatives in hand are those at the optimum (to rounding)
        # the full step, halved until the likelihood does not fall (near the optimum the full
        # step is taken); the derivatives only at the step taken
        size = 1.0
        for _ in range(31):
            new = par.copy()
            new[:m] += size * step
            value = _likelihood(d, new, vq, logw)
            if _rises(value.loglik, ll):
                break
            size /= 2
        else:
            break
        ll_new, (grad_new, hess_new) = value.loglik, _score_and_information(d, value)
        gain = ll_new - ll
        par, ll, grad, hess = new, ll_new, grad_new, hess_new
        if gain < 1e-14 * max(1.0, abs(ll)):
            break
    return par, ll, grad, hess


def _rises(ll_new, ll):
    """The likelihood did not fall (up to rounding)."""
    return np.isfinite(ll_new) and ll_new >= ll - 1e-12 * max(1.0, abs(ll))


def _eliminate_trials(grad, hess, free, m):
    """Gradient and Hessian in the common parameters with the trials' own parameters
    eliminated: g_c - sum_i B_i' T_i^-1 g_i and C - sum_i B_i' T_i^-1 B_i (fixed trial
    parameters, e.g. a term with no variation in its trial, take no part)."""
    k, pz, c = hess.cross.shape
    ft = free[:m].reshape(k, pz)
    trial = np.where(ft[:, :, None] & ft[:, None, :], hess.trial, 0.0)
    trial[~ft] += np.eye(pz)[np.nonzero(~ft)[1]]
    cross = np.where(ft[:, :, None], hess.cross, 0.0)
    gt = np.where(ft, grad[:m].reshape(k, pz), 0.0)
    # a pseudo-inverse: a trial's own slope under separation has (numerically) no curvature
    # and no coupling, and then contributes nothing (as in the pooled Newton step)
    inverse = np.linalg.pinv(trial, rcond=1e-12, hermitian=True)
    inv_cross = inverse @ cross
    inv_gt = (inverse @ gt[:, :, None])[:, :, 0]
    h = hess.common - np.einsum("kpa,kpb->ab", cross, inv_cross)
    g = grad[m:] - np.einsum("kpa,kp->a", cross, inv_gt)
    return g, (h + h.T) / 2


class FitRequest(NamedTuple):
    """What the centre asks every site to evaluate: the common parameters and whether the
    random effect is in (adaptive quadrature) or not (tau fixed at 0)."""

    phi: np.ndarray
    adaptive: bool


def _ascent_direction(g, h, free):
    """Newton direction for maximisation on the free parameters; if -H is not positive
    definite (far from the optimum) it is shifted until it is (Levenberg)."""
    idx = np.flatnonzero(free)
    neg = -h[np.ix_(idx, idx)]
    scale = max(float(np.abs(np.diag(neg)).mean()), 1e-12)
    shift = 0.0
    out = np.zeros_like(g)
    for _ in range(30):
        try:
            chol = np.linalg.cholesky(neg + shift * np.eye(len(idx)))
            out[idx] = np.linalg.solve(chol.T, np.linalg.solve(chol, g[idx]))
            return out
        except np.linalg.LinAlgError:
            shift = max(shift * 10, 1e-6 * scale)
    out[idx] = g[idx] / scale
    return out


def _maximise(phi, free, adaptive, max_iter=100, tol=1e-10):
    """Newton's method with backtracking on the summed profile likelihood, as a generator:
    it yields each FitRequest and is sent back (loglik, grad, hess, notes) summed over the
    sites (notes: the sites' trials under separation). Returns (phi, loglik, grad, hess,
    notes, converged, iterations)."""
    ll, g, h, notes = yield FitRequest(phi, adaptive)
    for it in range(1, max_iter + 1):
        direction = _ascent_direction(g, h, free)
        longest = np.max(np.abs(direction))
        if longest > MAX_STEP:  # a trust region: a wild first step can leave the sites' solves far behind
            direction *= MAX_STEP / longest
        step_size = 1.0
        for _ in range(40):
            new = phi + step_size * direction
            ll_new, g_new, h_new, notes_new = yield FitRequest(new, adaptive)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * max(1.0, abs(ll)):
                break
            step_size /= 2
        else:
            return phi, ll, g, h, notes, False, it
        moved = np.max(np.abs(new - phi))
        gain = ll_new - ll
        phi, ll, g, h, notes = new, ll_new, g_new, h_new, notes_new
        if moved < tol and gain < 1e-12 * max(1.0, abs(ll)):
            return phi, ll, g, h, notes, True, it
    return phi, ll, g, h, notes, False, max_iter


def fit_rounds(n_common: int, n_informative: int, n_trials: int, n_participants: int, random_effect: bool = True,
               n_nodes: int = 15, set_aside=()):
    """The mixed logistic fit as a conversation with the sites: a generator that yields a
    FitRequest, is sent the sums over sites of (loglik, grad, hess) at it with the list of
    trials under separation, and finally returns a LogisticFit equal to the pooled fit
    (``glmm.fit_mixed_logistic``).

    As in the pooled fit: a common-effect fit (tau = 0) first, then, with a random effect,
    tau starts at 0.5 and every parameter moves. ``n_trials`` and ``n_participants`` count
    the model's sample, ``n_informative`` its trials whose outcome varies; ``set_aside``
    names the others."""
    messages = []
    if set_aside:
        messages.append(f"trials without variation in the outcome set aside: {', '.join(sorted(set_aside))}")
    if n_informative < 2 and random_effect:
        random_effect = False
        messages.append("fewer than two trials: tau^2 not estimable, common-effect model")
    c = n_common + 2
    free = np.ones(c, bool)
    free[-1] = False
    phi, ll, g, h, notes, converged, iterations = yield from _maximise(np.zeros(c), free, adaptive=False)
    if random_effect:
        free[-1] = True
        phi = phi.copy()
        phi[-1] = START_TAU
        phi, ll, g, h, notes, converged, more = yield from _maximise(phi, free, adaptive=True)
        iterations += more
    if notes:
        messages.append(f"separation in {', '.join(sorted(notes))}: its own covariate slope is not finite "
                        "(does not affect the common terms)")
    tau = abs(phi[-1]) if random_effect else 0.0
    boundary = random_effect and tau < BOUNDARY_TAU
    use = free.copy()
    if boundary or not random_effect:
        use[-1] = False
    cov = np.full((c, c), np.nan)
    cov[np.ix_(use, use)] = np.linalg.inv(-h[np.ix_(use, use)])
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(cov))
    if boundary:
        messages.append("tau^2 estimated at the boundary (0)")
    r = n_common
    return LogisticFit(
        theta=float(phi[r]), se=float(se[r]), tau2=float(tau**2) if not boundary else 0.0,
        beta=phi[:r].copy(), se_beta=se[:r].copy(), loglik=float(ll), n_trials=int(n_trials),
        n_participants=int(n_participants), converged=bool(converged), boundary=bool(boundary),
        n_nodes=n_nodes if random_effect else 0, iterations=iterations, message="; ".join(messages),
        cov_common=cov[:r + 1, :r + 1],
    )
