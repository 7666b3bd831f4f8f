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
