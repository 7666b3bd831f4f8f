"""Disclosure control at a site, as DataSHIELD practises it: a site refuses to return
statistics computed from too few people, whatever the analyst asks.

The thresholds are the site's settings (the node's environment in vantage6, the station
table in the mock), never task input: an analyst cannot lower them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SiteSettings", "refusals", "MIN_CELL", "MIN_EVENTS"]

MIN_CELL = 5  # participants per trial x arm x window cell (DataSHIELD's nfilter.tab default is 3; we are stricter)
MIN_EVENTS = 3  # events and non-events of a binary outcome per arm


@dataclass(frozen=True)
class SiteSettings:
    min_cell: int = MIN_CELL
    min_events: int = MIN_EVENTS

    @classmethod
    def from_environment(cls) -> SiteSettings:
        """A vantage6 node passes its administrator's settings to the algorithm as environment
        variables (``algorithm_env`` in the node configuration)."""
        return cls(int(os.environ.get("IPD_MIN_CELL", MIN_CELL)), int(os.environ.get("IPD_MIN_EVENTS", MIN_EVENTS)))

    @classmethod
    def from_row(cls, row: pd.Series) -> SiteSettings:
        return cls(int(row.get("min_cell", MIN_CELL)), int(row.get("min_events", MIN_EVENTS)))


def refusals(sample: pd.DataFrame, settings: SiteSettings, outcome: str | None = None) -> dict:
    """{trial_id: reason} for the trials of an analysis sample whose statistics the site
    refuses to return: an arm with fewer than ``min_cell`` participants, or (binary outcome)
    an arm with fewer than ``min_events`` events or non-events."""
    labels, codes = np.unique(sample.trial_id.astype(str).to_numpy(), return_inverse=True)
    treated = sample.exercise.to_numpy() == 1
    k = len(labels)
    # per trial and arm with bincount (pandas' groupby costs more than the counting here)
    sizes = np.stack([np.bincount(codes[~treated], minlength=k), np.bincount(codes[treated], minlength=k)])
    small = sizes.min(axis=0) < settings.min_cell
    rare = np.zeros(k, bool)
    if outcome is not None:
        y = sample[outcome].to_numpy(float)
        events = np.stack([np.bincount(codes[~treated], y[~treated], minlength=k),
                           np.bincount(codes[treated], y[treated], minlength=k)])
        rare = np.minimum(events, sizes - events).min(axis=0) < settings.min_events
    out = {}
    for label, is_small, is_rare in zip(labels, small, rare):
        if is_small:
            out[label] = f"an arm has fewer than {settings.min_cell} participants"
        elif is_rare:
            out[label] = f"an arm has fewer than {settings.min_events} events or non-events"
    return out
