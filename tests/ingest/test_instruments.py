"""Rescaling of every instrument to 0-100 (higher = worse), by hand-computed cases."""

import numpy as np
import pytest

from analysis.ingest.instruments import INSTRUMENTS, rescale

# (instrument, raw value, expected 0-100): computed by hand as 100 * x / max, reversed for PSFS
CASES = [
    ("vas_100", 37, 37.0),
    ("vas_10", 3.7, 37.0),
    ("nrs_10", 7, 70.0),
    ("rmdq_24", 6, 25.0),
    ("rmdq_23", 23, 100.0),
    ("odi_100", 42, 42.0),
    ("odi_50", 21, 42.0),
    ("quebec_100", 0, 0.0),
    ("psfs_10", 10, 0.0),  # best function -> 0 (higher is better on the raw scale)
    ("psfs_10", 2.5, 75.0),
]


@pytest.mark.parametrize("name, raw, expected", CASES)
def test_rescale_hand_cases(name, raw, expected):
    assert rescale(raw, name) == pytest.approx(expected)


@pytest.mark.parametrize("name", list(INSTRUMENTS))
def test_rescale_round_trip_and_direction(name):
    ins = INSTRUMENTS[name]
    grid = np.linspace(ins.low, ins.high, 11)
    assert np.allclose(ins.from_0_100(ins.to_0_100(grid)), grid)
    worse = ins.high if ins.higher_is_worse else ins.low
    assert ins.to_0_100(worse) == pytest.approx(100.0)
