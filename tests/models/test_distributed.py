"""analysis.models.distributed: the mixed logistic fit from sites' profile likelihoods. Source
of truth: the pooled fit (``fit_mixed_logistic``, itself checked against glmer in
tests/models/test_glmm.py) on the same simulated data. Both maximise the same likelihood with
the same quadrature and stop at a gradient of about 1e-10, so they agree to 1e-8 (observed
1e-13); any site grouping gives the same answer."""

import numpy as np
import pytest

from analysis.models.distributed import LogisticDesign, SiteModel, fit_rounds, informative_trials
from analysis.models.glmm import fit_mixed_logistic


def _simulate(seed, k=10, heterogeneity=1.5, slope_z=True):
    rng = np.random.default_rng(seed)
    n = rng.integers(150, 400, k)
    trial = np.repeat([f"S{i:02d}" for i in range(k)], n)
    big_n = len(trial)
    t = rng.integers(0, 2, big_n).astype(float)
    x = rng.normal(size=(big_n, 2))
    z = rng.normal(size=big_n)
    eta = (np.repeat(rng.normal(-1, 0.5, k), n) + x @ [0.4, -0.3]
           + t * (0.5 + np.repeat(rng.normal(0, heterogeneity, k), n)) + 0.2 * z)
    y = (rng.random(big_n) < 1 / (1 + np.exp(-eta))).astype(float)
    return LogisticDesign(trial, y, x, t, z[:, None] if slope_z else None)


def _federated(design, sites, random_effect=True):
    """The centre's loop over sites (what analysis.federated.rounds does for many models)."""
    labels = informative_trials(design)
    gen = fit_rounds(design.x.shape[1], len(labels), len(np.unique(design.trial)), len(design.y), random_effect)
    keep = [np.isin(design.trial, s) & np.isin(design.trial, labels) for s in sites]
    models = [SiteModel(design.subset(k)) for k in keep if k.any()]  # a site without information sends nothing
    request = next(gen)
    try:
        while True:
            parts = [m.profile(request.phi, request.adaptive) for m in models]
            request = gen.send((sum(p.loglik for p in parts), sum(p.grad for p in parts),
                                sum(p.hess for p in parts), [t for p in parts for t in p.separated]))
    except StopIteration as done:
        return done.value


@pytest.mark.parametrize("grouping", ["one trial per site", "two sites"])
def test_federated_fit_equals_the_pooled_fit(grouping):
    design = _simulate(3)
    trials = sorted(set(design.trial))
    sites = [[t] for t in trials] if grouping == "one trial per site" else [trials[:4], trials[4:]]
    pooled = fit_mixed_logistic(design.trial, design.y, design.x, design.t, z=design.z)
    fed = _federated(design, sites)
    assert fed.converged and pooled.tau2 > 0.5
    for name in ("theta", "se", "tau2", "loglik"):
        assert getattr(fed, name) == pytest.approx(getattr(pooled, name), rel=1e-8), name
    np.testing.assert_allclose(fed.beta, pooled.beta, rtol=1e-8)


def test_common_effect_and_boundary_fits_equal_the_pooled_fits():
    design = _simulate(5, heterogeneity=0.0, slope_z=False)
    sites = [[t] for t in sorted(set(design.trial))]
    for random_effect in (False, True):
        pooled = fit_mixed_logistic(design.trial, design.y, design.x, design.t, random_effect=random_effect)
        fed = _federated(design, sites, random_effect)
        assert fed.theta == pytest.approx(pooled.theta, rel=1e-8) and fed.se == pytest.approx(pooled.se, rel=1e-8)
        assert fed.tau2 == pytest.approx(pooled.tau2, abs=1e-8)
        assert fed.message == pooled.message


def test_a_trial_without_events_is_set_aside_as_in_the_pooled_fit():
    design = _simulate(11, k=6)
    y = design.y.copy()
    y[design.trial == "S02"] = 0.0  # no events: no finite intercept, no information
    design = design._replace(y=y)
    assert "S02" not in informative_trials(design)
    pooled = fit_mixed_logistic(design.trial, design.y, design.x, design.t, z=design.z)
    fed = _federated(design, [[t] for t in sorted(set(design.trial))])
    assert fed.theta == pytest.approx(pooled.theta, rel=1e-8) and fed.n_trials == pooled.n_trials
