"""Analysis samples as CONTRACT.md defines them.

A comparison uses the trials with at least one exercise arm and at least one arm of that
comparison, and the participants of those arms only (``any_non_exercise``: every
non-exercise arm). Continuous outcomes: complete cases on the outcome at the window and on
the same outcome's baseline. Recovery: complete cases on recovered, pain_bl, function_bl.
Modifiers: additionally complete on the covariate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.settings import COMPARISONS

__all__ = ["comparison_participants", "complete_cases", "needed_columns", "outcome_sample", "window_frame",
           "sample_from_frame", "in_key_order", "BASELINE", "KEY"]

BASELINE = {"pain": "pain_bl", "function": "function_bl"}


def comparison_participants(participants: pd.DataFrame, comparison: str) -> pd.DataFrame:
    """Participants of the eligible trials' exercise and comparison arms."""
    if comparison not in COMPARISONS:
        raise ValueError(f"unknown comparison {comparison!r}; expected one of {COMPARISONS}")
    arm = participants.comparison.to_numpy()
    in_comparison = (arm != "exercise") if comparison == "any_non_exercise" else (arm == comparison)
    exercise = participants.exercise.to_numpy() == 1
    # per trial (numbered by hashing; a missing trial id, number -1, is in no trial): has it
    # both arms? Counted with bincount: a pandas groupby cost more than the rest of a call
    trial, labels = pd.factorize(participants.trial_id)
    known = trial >= 0

    def any_per_trial(flag):
        return np.bincount(trial[known], weights=flag[known], minlength=len(labels)) > 0

    both = any_per_trial(exercise) & any_per_trial(in_comparison)
    eligible = np.append(both, False)[trial]  # number -1 takes the False at the end
    return participants[eligible & (exercise | in_comparison)]


KEY = ["trial_id", "participant_id"]


def in_key_order(frame: pd.DataFrame) -> bool:
    """Are the rows in strictly increasing (trial_id, participant_id) order (so no participant
    appears twice)? A comparison of neighbours: a twentieth of a sort, a fifth of
    ``duplicated`` (fit_all hands every analysis its participants in that order)."""
    trial, pid = frame.trial_id.to_numpy(), frame.participant_id.to_numpy()
    if len(trial) < 2:
        return True
    same = trial[1:] == trial[:-1]
    return bool(np.all((trial[1:] > trial[:-1]) | (same & (pid[1:] > pid[:-1]))))


def window_frame(participants, outcomes, window) -> pd.DataFrame:
    """Participants joined with their outcomes at one window (one merge, reused by every
    comparison and outcome at that window). Each side must name a participant once: checked
    with ``duplicated`` (at under half the cost of the merge's own ``validate``), or by the
    order of the rows where they are in key order."""
    o = outcomes[outcomes.window == window][KEY + ["pain", "function", "recovered"]]
    for frame, what in ((participants, "participants"), (o, f"outcomes at the {window} window")):
        if not in_key_order(frame) and frame.duplicated(KEY).any():
            raise ValueError(f"{what}: a participant (trial_id, participant_id) appears more than once")
    return participants.merge(o, on=KEY, how="inner")


def sample_from_frame(frame, comparison, outcome, covariate=None) -> pd.DataFrame:
    """Complete-case sample for one analysis from a window frame, sorted by trial and participant."""
    return complete_cases(comparison_participants(frame, comparison), outcome, covariate)


def needed_columns(outcome, covariate=None) -> list[str]:
    """The columns a complete case has: the outcome, its baseline(s) and the covariate."""
    needed = [outcome] + (["pain_bl", "function_bl"] if outcome == "recovered" else [BASELINE[outcome]])
    if covariate is not None and covariate not in needed:
        needed.append(covariate)
    return needed


def complete_cases(d, outcome, covariate=None) -> pd.DataFrame:
    """The participants of ``d`` (one comparison's, at one window) complete on the outcome,
    its baseline(s) and the covariate, sorted by trial and participant."""
    d = d.dropna(subset=needed_columns(outcome, covariate))
    return d.sort_values(KEY, kind="stable").reset_index(drop=True)


def outcome_sample(participants, outcomes, comparison, outcome, window, covariate=None) -> pd.DataFrame:
    """Complete-case sample for one analysis, sorted by trial and participant."""
    return sample_from_frame(window_frame(participants, outcomes, window), comparison, outcome, covariate)
