"""Analysis samples as numpy columns: selected once per comparison and window, then masked
per outcome and covariate.

A comparison at one window has 90 modifier models (and multiple imputation refits 20 of
them per completed data set). Building each model's sample with pandas (drop missing rows,
sort, group means) cost more than fitting it, so the comparison's participants are sorted
by trial and participant once (``Arms``) and every analysis sample is a boolean mask of
those columns (``Sample``). Row order, trials and participants are those of
``samples.complete_cases``, which stays the definition (tests compare the two).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.analyses.samples import in_key_order, needed_columns

__all__ = ["Arms", "Sample", "as_sample", "usable_trials"]


class Arms:
    """One comparison's participants at one window (a frame with the covariates, baselines,
    exercise and outcome columns), sorted by trial and participant once."""

    def __init__(self, frame: pd.DataFrame, columns):
        d = frame if in_key_order(frame) else frame.sort_values(["trial_id", "participant_id"], kind="stable")
        self.trial = d.trial_id.to_numpy()
        self.columns = {c: d[c].to_numpy(float) for c in dict.fromkeys(["exercise", *columns])}
        self._observed = {c: ~np.isnan(v) for c, v in self.columns.items()}

    def __len__(self):
        return len(self.trial)

    def complete(self, outcome, covariate=None) -> Sample:
        """The complete cases of one analysis (as ``samples.complete_cases``), with the
        covariate's trial means and centred values when a covariate is given."""
        needed = needed_columns(outcome, covariate)
        keep = np.logical_and.reduce([self._observed[c] for c in needed])
        return Sample(self.trial[keep], {c: self.columns[c][keep] for c in dict.fromkeys(needed + ["exercise"])},
                      covariate)


def as_sample(d, covariate=None) -> Sample:
    """``d`` itself if it is a Sample; a pandas analysis sample (complete cases, sorted by
    trial) as one otherwise."""
    return d if isinstance(d, Sample) else Sample.from_frame(d, covariate)


def usable_trials(s: Sample, outcome: str, min_n: int) -> np.ndarray:
    """Per trial: both arms, both values of the binary ``outcome`` and at least ``min_n``
    participants (what a per-trial logistic regression needs)."""
    n = s.counts
    treated = np.bincount(s.codes, weights=s["exercise"], minlength=s.k)
    events = np.bincount(s.codes, weights=s[outcome], minlength=s.k)
    return (treated > 0) & (treated < n) & (events > 0) & (events < n) & (n >= min_n)


@dataclass
class Sample:
    """An analysis sample as columns, rows sorted by trial (``trial``: each row's label).
    With a ``covariate``: its trial means over the sample (``xbar``) and centred values
    (``xc``), as the within-trial interaction models need them."""

    trial: np.ndarray
    columns: dict
    covariate: str | None = None
    codes: np.ndarray = field(init=False)
    labels: np.ndarray = field(init=False)
    counts: np.ndarray = field(init=False)

    def __post_init__(self):
        trial = self.trial
        change = np.flatnonzero(trial[1:] != trial[:-1]) + 1 if len(trial) > 1 else np.array([], int)
        starts = np.r_[0, change] if len(trial) else np.array([], int)
        self.labels = trial[starts]
        if len(pd.unique(self.labels)) != len(self.labels):
            raise ValueError("a Sample's rows must be grouped by trial (sorted by trial)")
        self.codes = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(trial)]))
        self.counts = np.bincount(self.codes, minlength=len(starts))
        if self.covariate is not None:
            self._centre()

    def _centre(self):
        x = self.columns[self.covariate]
        self.columns["xbar"] = self.trial_means(x)[self.codes]
        self.columns["xc"] = x - self.columns["xbar"]

    def centred_on(self, covariate) -> Sample:
        """The same rows with ``covariate``'s trial means and centred values."""
        out = copy.copy(self)
        out.columns, out.covariate = dict(self.columns), covariate
        out._centre()
        return out

    @classmethod
    def from_frame(cls, d: pd.DataFrame, covariate=None, columns=None) -> Sample:
        """A sample from a frame already restricted to complete cases (rows put in trial order
        when they are not: a stable sort keeps each trial's order)."""
        trial = d.trial_id.to_numpy()
        if len(trial) > 1 and len(pd.unique(trial)) != 1 + np.count_nonzero(trial[1:] != trial[:-1]):
            d = d.sort_values("trial_id", kind="stable")
        columns = columns or [c for c in ("exercise", "pain", "function", "recovered", "pain_bl", "function_bl",
                                          covariate) if c is not None and c in d]
        return cls(d.trial_id.to_numpy(), {c: d[c].to_numpy(float) for c in dict.fromkeys(columns)}, covariate)

    def __len__(self):
        return len(self.trial)

    def __getitem__(self, column) -> np.ndarray:
        return self.columns[column]

    @property
    def k(self) -> int:
        return len(self.labels)

    @property
    def empty(self) -> bool:
        return len(self.trial) == 0

    def trial_means(self, values) -> np.ndarray:
        return np.bincount(self.codes, weights=values, minlength=self.k) / self.counts

    def trial_variances(self, values, rows=None) -> np.ndarray:
        """Per trial, the sample variance (ddof 1) of ``values`` over ``rows`` (a mask; all
        rows by default); NaN where a trial has fewer than two such rows (as pandas)."""
        codes = self.codes if rows is None else self.codes[rows]
        v = values if rows is None else values[rows]
        n = np.bincount(codes, minlength=self.k).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(codes, weights=v, minlength=self.k) / n
            ss = np.bincount(codes, weights=(v - mean[codes]) ** 2, minlength=self.k)
            return np.where(n >= 2, ss / (n - 1), np.nan)

    def subset(self, rows) -> Sample:
        """The rows ``rows`` (a mask), trial means kept as computed on the whole sample."""
        out = Sample(self.trial[rows], {c: v[rows] for c, v in self.columns.items()}, None)
        out.covariate = self.covariate
        return out
