"""Analysis from per-trial summaries equals the pooled raw-data analysis, and the summaries
hold no row-level data."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.analyses.modifiers import modifier_estimates
from analysis.analyses.overall import overall_estimates
from analysis.analyses.summaries import export_trial_stats, fit_from_stats
from tests.simulate import continuous_ipd

KEYS = ["comparison", "outcome", "window", "term"]


def _compare(raw: pd.DataFrame, summ: pd.DataFrame):
    m = raw.merge(summ, on=KEYS, suffixes=("", "_s"))
    m = m[m.estimate.notna()]
    assert len(m) > 0
    for col in ("estimate", "se", "df", "tau2", "ci_low", "p"):
        a, b = m[col].to_numpy(float), m[f"{col}_s"].to_numpy(float)
        ok = np.isfinite(a)
        assert np.allclose(a[ok], b[ok], rtol=1e-8, atol=1e-12), col
    assert (m.n_trials == m.n_trials_s).all() and (m.n_participants == m.n_participants_s).all()


def test_demo_fits_from_summaries_equal_raw_data_fits(demo_run, tmp_path):
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    export_trial_stats(p, o, tmp_path)
    est, mods = fit_from_stats(tmp_path)
    _compare(overall_estimates(p, o)[lambda d: d.outcome != "recovered"], est)
    raw_mods, _ = modifier_estimates(p, o, outcomes_list=("pain", "function"))
    _compare(raw_mods, mods)
    assert (est[est.outcome == "recovered"].note.str.contains("not available from summary")).all()


def _random_ipd(seed, scale=1):
    rng = np.random.default_rng(seed)
    d = continuous_ipd(rng, k=6, n_range=(30 * scale, 60 * scale), interaction=0.5)
    d = d.rename(columns={"treat": "exercise", "y": "pain", "y0": "pain_bl", "x": "bmi"})
    d["participant_id"] = np.arange(len(d)).astype(str)
    d["comparison"] = np.where(
        d.exercise == 1, "exercise", np.where(d.trial_id < "T04", "none_usual_care", "other_conservative")
    )
    for c in ("age", "female", "heavy_work", "medication", "employed", "education_post_secondary", "duration_months"):
        d[c] = rng.normal(0, 1, len(d)) if c in ("age", "duration_months") else rng.integers(0, 2, len(d)).astype(float)
    d["function_bl"] = rng.normal(40, 10, len(d))
    o = d[["trial_id", "participant_id", "pain"]].assign(
        function=d.pain * 0.8 + rng.normal(0, 5, len(d)), window="short", recovered=np.nan
    )
    return d.drop(columns="pain"), o


@pytest.mark.parametrize("seed", [1, 2])
def test_random_data_fits_from_summaries_equal_raw_data_fits(seed, tmp_path):
    p, o = _random_ipd(seed)
    export_trial_stats(p, o, tmp_path)
    est, mods = fit_from_stats(tmp_path)
    _compare(overall_estimates(p, o)[lambda d: (d.outcome != "recovered")], est)
    raw_mods, _ = modifier_estimates(p, o, windows=["short"], outcomes_list=("pain", "function"))
    _compare(raw_mods, mods)


def _numbers(obj):
    if isinstance(obj, dict):
        return sum(_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_numbers(v) for v in obj)
    return 1 if isinstance(obj, (int, float)) and not isinstance(obj, bool) else 0


def test_summaries_size_does_not_grow_with_participants(tmp_path):
    """Same trials, four times the participants: the same number of stored values."""
    sizes = []
    for scale in (1, 4):
        p, o = _random_ipd(3, scale)
        out = tmp_path / f"s{scale}"
        export_trial_stats(p, o, out)
        sizes.append(sum(_numbers(json.loads(f.read_text())) for f in out.glob("*.json")))
        ids = set(p.participant_id)
        text = " ".join(f.read_text() for f in out.glob("*.json"))
        assert not any(f'"{i}"' in text for i in list(ids)[:200])  # no identifiers
    assert sizes[0] == sizes[1]
