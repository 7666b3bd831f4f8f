"""Small seeded simulators of the one-stage models, for recovery and coverage tests."""

import numpy as np
import pandas as pd


def continuous_ipd(rng, k=8, n_range=(40, 120), theta=-8.0, tau=3.0, sigma=14.0,
                   interaction=0.0, across=0.0, within_sd=4.0, between_sd=2.5):
    """IPD from the continuous one-stage model (ANCOVA with trial-specific terms).

    ``interaction`` is the within-trial exercise x covariate effect; ``across`` makes
    the trial's exercise effect depend on its mean covariate (ecological association).
    """
    rows = []
    for i in range(k):
        n = int(rng.integers(*n_range))
        treat = rng.permutation(np.arange(n) % 2)
        y0 = rng.normal(60, 15, n)
        xbar = rng.normal(27, between_sd)
        x = rng.normal(xbar, within_sd, n)
        effect = theta + tau * rng.normal() + across * (xbar - 27)
        y = (rng.normal(20, 5) + rng.uniform(0.3, 0.7) * (y0 - 60) + 0.4 * (x - xbar)
             + treat * (effect + interaction * (x - xbar)) + rng.normal(0, sigma, n))
        rows.append(pd.DataFrame(dict(trial_id=f"T{i + 1:02d}", treat=treat, y0=y0, x=x, y=y)))
    return pd.concat(rows, ignore_index=True)
