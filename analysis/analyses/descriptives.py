"""Baseline characteristics by arm from per-trial sums, so that the pooled run and the
federated run (where only the sums leave a site) describe participants the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.settings import BINARY_COVARIATES, COVARIATES

__all__ = ["AGGREGATE_COLUMNS", "BASELINE_COLUMNS", "baseline_aggregates", "baseline_summary"]

AGGREGATE_COLUMNS = ["trial_id", "arm", "covariate", "n", "n_measured", "total", "total_sq", "ones"]
BASELINE_COLUMNS = ["arm", "covariate", "n", "n_measured", "n_missing", "mean", "sd", "ones"]


def baseline_aggregates(participants: pd.DataFrame) -> pd.DataFrame:
    """Per trial, arm type and covariate: participants, how many have the value, its sum
    and sum of squares, and (binary covariates) how many are 1."""
    rows = []
    for (trial, arm), d in participants.groupby(["trial_id", "comparison"], sort=True):
        for v in COVARIATES:
            x = d[v].dropna().to_numpy(float)
            rows.append((trial, arm, v, len(d), len(x), float(x.sum()), float((x**2).sum()),
                         float(x.sum()) if v in BINARY_COVARIATES else np.nan))
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


def baseline_summary(aggregates: pd.DataFrame) -> pd.DataFrame:
    """Per arm type and variable, over trials: participants, measured, missing, mean, SD
    (from the sums: var = (S2 - S^2 / n) / (n - 1)) and the count of ones."""
    g = aggregates.groupby(["arm", "covariate"], sort=False)[["n", "n_measured", "total", "total_sq", "ones"]].sum(
        min_count=1)
    g = g.reset_index()
    m = g.n_measured.to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = g.total / m
        var = (g.total_sq - g.total**2 / m) / (m - 1)
    out = g.assign(n_missing=g.n - g.n_measured, mean=mean.where(m > 0),
                   sd=np.sqrt(var.clip(lower=0)).where(m > 1))
    return out[BASELINE_COLUMNS]
