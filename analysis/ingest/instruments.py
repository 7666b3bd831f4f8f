"""Outcome instruments and their rescaling to 0-100 with higher = worse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Instrument", "INSTRUMENTS", "rescale", "get_instrument"]


@dataclass(frozen=True)
class Instrument:
    name: str
    label: str
    domain: str  # pain | function
    low: float
    high: float
    higher_is_worse: bool
    resolution: float  # smallest step of the raw scale
    short: str = ""  # abbreviation for tables

    def to_0_100(self, x):
        """Linear map of [low, high] to [0, 100], reversed when higher is better."""
        x = np.asarray(x, dtype=float)
        scaled = 100.0 * (x - self.low) / (self.high - self.low)
        return scaled if self.higher_is_worse else 100.0 - scaled

    def from_0_100(self, s):
        s = np.asarray(s, dtype=float)
        s = s if self.higher_is_worse else 100.0 - s
        return self.low + s * (self.high - self.low) / 100.0

    @property
    def step_0_100(self) -> float:
        """Raw resolution expressed on the 0-100 scale (the rounding of the instrument)."""
        return 100.0 * self.resolution / (self.high - self.low)


INSTRUMENTS = {
    i.name: i
    for i in [
        Instrument("vas_100", "Visual analogue scale, 0-100 mm", "pain", 0, 100, True, 1, "VAS 0-100"),
        Instrument("vas_10", "Visual analogue scale, 0-10 cm", "pain", 0, 10, True, 0.1, "VAS 0-10"),
        Instrument("nrs_10", "Numeric rating scale, 0-10", "pain", 0, 10, True, 1, "NRS 0-10"),
        Instrument("rmdq_24", "Roland-Morris Disability Questionnaire, 0-24", "function", 0, 24, True, 1, "RMDQ-24"),
        Instrument("rmdq_23", "Roland-Morris Disability Questionnaire (23-item), 0-23", "function", 0, 23, True, 1,
                   "RMDQ-23"),
        Instrument("odi_100", "Oswestry Disability Index, 0-100 %", "function", 0, 100, True, 2, "ODI %"),
        Instrument("odi_50", "Oswestry Disability Index, raw score 0-50", "function", 0, 50, True, 1, "ODI 0-50"),
        Instrument("quebec_100", "Quebec Back Pain Disability Scale, 0-100", "function", 0, 100, True, 1, "QBPDS"),
        Instrument("psfs_10", "Patient-Specific Functional Scale, 0-10 (higher = better)", "function", 0, 10, False,
                   0.1, "PSFS"),
    ]
}


def get_instrument(name: str) -> Instrument:
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise KeyError(name) from None


def rescale(x, instrument: str):
    return get_instrument(instrument).to_0_100(x)
