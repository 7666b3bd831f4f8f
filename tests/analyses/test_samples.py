"""analysis.analyses.samples.window_frame: the join of participants and one window's
outcomes (source of truth: pandas' merge with validate="one_to_one", row for row), and its
refusal of a participant named twice on either side."""

import pandas as pd
import pytest

from analysis.analyses.samples import window_frame


def test_window_frame_equals_a_validated_merge(demo_run):
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    for window in ("short", "long"):
        expected = p.merge(o[o.window == window][["trial_id", "participant_id", "pain", "function", "recovered"]],
                           on=["trial_id", "participant_id"], how="inner", validate="one_to_one")
        pd.testing.assert_frame_equal(window_frame(p, o, window), expected)


def test_window_frame_refuses_a_participant_named_twice(demo_run):
    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    with pytest.raises(ValueError, match="participants: a participant"):
        window_frame(pd.concat([p, p.iloc[[5]]]), o, "short")
    short = o[o.window == "short"]
    with pytest.raises(ValueError, match="outcomes at the short window"):
        window_frame(p, pd.concat([o, short.iloc[[3]]]), "short")


def test_in_key_order_means_strictly_increasing_keys(demo_run):
    """Source of truth: a stable sort by (trial_id, participant_id) and ``duplicated``. Sorted
    unique rows are in key order; a repeated participant, or two rows swapped, are not (so
    window_frame's duplicate check falls back to ``duplicated``: the refusal above holds for
    sorted and unsorted participants alike)."""
    from analysis.analyses.samples import in_key_order

    p = demo_run.tables["participants"].sort_values(["trial_id", "participant_id"], kind="stable",
                                                     ignore_index=True)
    assert in_key_order(p) and not p.duplicated(["trial_id", "participant_id"]).any()
    assert not in_key_order(pd.concat([p.iloc[:5], p.iloc[[4]], p.iloc[5:]], ignore_index=True))
    assert not in_key_order(p.iloc[[1, 0, 2]])
    assert in_key_order(p.iloc[:1])
    o = demo_run.tables["outcomes"]
    with pytest.raises(ValueError, match="participants: a participant"):
        window_frame(pd.concat([p.iloc[:5], p.iloc[[4]], p.iloc[5:]], ignore_index=True), o, "short")
