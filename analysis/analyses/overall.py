"""Overall exercise effects: one-stage models per comparison, outcome and window, and the
per-trial (first-stage) estimates used by the two-stage cross-check and forest plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.analyses.arrays import Arms, Sample, as_sample, usable_trials
from analysis.analyses.samples import BASELINE, comparison_participants, window_frame
from analysis.models.distributed import LogisticDesign
from analysis.models.distributions import chi2_upper_tail
from analysis.models.glmm import fit_mixed_logistic
from analysis.models.meta import pool
from analysis.models.onestage import TrialStats, fit_reml, sufficient_stats
from analysis.models.pertrial import per_trial_logistic
from analysis.settings import AGHQ_NODES, COMPARISONS, WINDOWS

__all__ = ["continuous_stats", "fit_continuous", "fit_recovery", "recovery_design", "recovery_method", "with_weights",
           "per_trial_effects", "two_stage",
           "RESULT_COLUMNS", "result_row", "empty_row", "continuous_method", "overall_one", "overall_rows",
           "overall_estimates", "trial_effects", "heterogeneity", "ALL_OVERALL", "TRIAL_EFFECT_COLUMNS",
           "WindowArms"]

RESULT_COLUMNS = [
    "analysis", "comparison", "outcome", "window", "term", "scale", "estimate", "se", "ci_low", "ci_high",
    "df", "p", "tau2", "pi_low", "pi_high", "n_trials", "n_participants", "method", "converged", "note",
]


def result_row(analysis, comparison, outcome, window, term, scale, summary: dict, method, note="") -> dict:
    row = {"analysis": analysis, "comparison": comparison, "outcome": outcome, "window": window,
           "term": term, "scale": scale, "method": method, "note": note}
    for key in ("estimate", "se", "ci_low", "ci_high", "df", "p", "tau2", "pi_low", "pi_high",
                "n_trials", "n_participants", "converged"):
        row[key] = summary.get(key, np.nan)
    return row


def empty_row(analysis, comparison, outcome, window, term, scale, method, note, n_trials=0, n_participants=0):
    """A row for an analysis that could not be estimated, saying why."""
    return result_row(analysis, comparison, outcome, window, term, scale,
                      {"n_trials": n_trials, "n_participants": n_participants, "converged": False}, method, note)


def continuous_stats(sample, outcome: str) -> TrialStats:
    """Per-trial statistics of the ANCOVA one-stage model (baseline slope per trial), from an
    analysis sample (a Sample or a pandas frame)."""
    s = as_sample(sample)
    return sufficient_stats(s.trial, s[outcome], s["exercise"][:, None], s[BASELINE[outcome]][:, None],
                            terms=["exercise"])


def fit_continuous(sample, outcome, inference="satterthwaite", residual="common", random_effect=True):
    st = continuous_stats(sample, outcome)
    return fit_reml(st, inference=inference, residual=residual, random_effect=random_effect)


def continuous_method(inference="satterthwaite", residual="common", random_effect=True) -> str:
    parts = ["one-stage LMM, REML"]
    parts.append("random exercise effect" if random_effect else "common effect")
    if residual == "trial":
        parts.append("trial-specific residual variances")
    parts.append("Satterthwaite t" if inference == "satterthwaite" else "z (normal)")
    return ", ".join(parts)


def recovery_design(sample) -> LogisticDesign:
    """The recovery model's arrays: trial intercepts, common slopes for both baselines, exercise."""
    s = as_sample(sample)
    return LogisticDesign(s.trial, s["recovered"], np.column_stack([s["pain_bl"], s["function_bl"]]), s["exercise"])


def fit_recovery(sample, n_nodes=AGHQ_NODES, random_effect=True):
    return fit_mixed_logistic(*recovery_design(sample), n_nodes=n_nodes, random_effect=random_effect)


def recovery_method(random_effect=True) -> str:
    return f"one-stage mixed logistic, ML, AGHQ {AGHQ_NODES} nodes" + ("" if random_effect else ", common effect")


def per_trial_effects(sample, outcome) -> pd.DataFrame:
    """First-stage estimates: each trial's ANCOVA (y ~ baseline + exercise) exercise effect.

    Continuous outcomes come from the per-trial statistics (the same numbers an OLS fit
    gives: tested against statsmodels and lm() in tests/test_overall.py). Recovery uses a
    per-trial logistic regression (the GLM's fit, all trials at once: analysis.pertrial).
    Trials without both arms or without residual degrees of freedom are skipped, and so are
    recovery estimates under separation.
    """
    rows = []
    s = as_sample(sample)
    if outcome == "recovered":
        # trials with both arms, both outcome values and at least 6 participants; a trial's
        # estimate is set aside under separation (no finite estimate, or SE > 20)
        usable = usable_trials(s, "recovered", min_n=6)[s.codes] if len(s) else np.zeros(0, bool)
        if not usable.any():
            return pd.DataFrame(rows, columns=["trial_id", "estimate", "variance", "n"])
        x = np.column_stack([np.ones(int(usable.sum())), s["pain_bl"][usable], s["function_bl"][usable],
                             s["exercise"][usable]])
        r = per_trial_logistic(s.trial[usable], s["recovered"][usable], x)
        keep = r.ok & (r.se[:, 3] <= 20)
        return pd.DataFrame({"trial_id": r.labels[keep], "estimate": r.coef[keep, 3], "variance": r.se[keep, 3] ** 2,
                             "n": r.n[keep]})
    st = continuous_stats(s, outcome)
    for i, tid in enumerate(st.trial_ids):
        c = st.cross[i]
        stt, sty, syy = c[0, 0], c[0, 1], c[1, 1]
        df = st.resid_df[i] - 1
        if stt <= 1e-12 or df <= 0:
            continue
        est = sty / stt
        sigma2 = (syy - sty**2 / stt) / df
        rows.append((tid, est, sigma2 / stt, int(st.n[i])))
    return pd.DataFrame(rows, columns=["trial_id", "estimate", "variance", "n"])


def two_stage(effects: pd.DataFrame, method="REML", hartung_knapp=True):
    """Second stage: random-effects pooling of the per-trial estimates."""
    return pool(effects.estimate.to_numpy(), effects.variance.to_numpy(), method=method, hartung_knapp=hartung_knapp)


def overall_one(participants, outcomes, comparison, outcome, window, analysis="overall",
                inference="satterthwaite", residual="common", random_effect=True, frame=None, arms=None) -> dict:
    """One overall analysis as a results row (never raises for too little data: it says so).
    ``frame`` is the window's joined data, ``arms`` the comparison's participants in it
    (``Arms``), when the caller already has them."""
    if arms is None:
        if frame is None:
            frame = window_frame(participants, outcomes, window)
        arms = Arms(comparison_participants(frame, comparison), _SAMPLE_COLUMNS)
    sample = arms.complete(outcome)
    k, n = sample.k, len(sample)
    if outcome == "recovered":
        method = recovery_method(random_effect)
        if k == 0 or len(np.unique(sample["recovered"])) < 2 or len(np.unique(sample["exercise"])) < 2:
            return empty_row(analysis, comparison, outcome, window, "exercise", "log_or", method,
                             "not estimable: no trials, no events or one arm only at this window", k, n)
        fit = fit_recovery(sample, n_nodes=AGHQ_NODES, random_effect=random_effect)
        s = fit.summary()
        s.update(n_trials=k, n_participants=n)
        return result_row(analysis, comparison, outcome, window, "exercise", "log_or", s, method, fit.message)
    method = continuous_method(inference, residual, random_effect)
    if k == 0 or len(np.unique(sample["exercise"])) < 2:
        return empty_row(analysis, comparison, outcome, window, "exercise", "md", method,
                         "not estimable: no trials with both arms at this window", k, n)
    fit = fit_continuous(sample, outcome, inference=inference, residual=residual, random_effect=random_effect)
    return result_row(analysis, comparison, outcome, window, "exercise", "md", fit.summary(), method, fit.message)


_SAMPLE_COLUMNS = ("pain", "function", "recovered", "pain_bl", "function_bl")


class WindowArms:
    """Each comparison's participants at a window (``Arms``), joined and sorted on first use
    and kept: the overall analyses, the per-trial estimates and the sensitivity analyses that
    refit them on the same data (common effect, trial-specific residual variances, leave one
    out) then join each window once instead of five times (seconds each at a million
    participants). One per data set; it holds every window it has built. ``frames``: each
    window's ``window_frame`` of these participants and outcomes (a function of the window),
    when the caller keeps them."""

    def __init__(self, participants, outcomes, frames=None):
        self.participants, self.outcomes, self.frames = participants, outcomes, frames
        self._built: dict = {}

    def frame(self, window) -> pd.DataFrame:
        """The window's join of these participants and outcomes (``window_frame``)."""
        return self.frames(window) if self.frames else window_frame(self.participants, self.outcomes, window)

    def __call__(self, window) -> dict:
        if window not in self._built:
            frame = self.frame(window)
            self._built[window] = {c: Arms(comparison_participants(frame, c), _SAMPLE_COLUMNS) for c in COMPARISONS}
        return self._built[window]


ALL_OVERALL = [(c, o, w.name) for c in COMPARISONS for o in ("pain", "function", "recovered") for w in WINDOWS]


def overall_rows(participants, outcomes, combinations, progress=None, windows: WindowArms | None = None,
                 **options) -> list[dict]:
    """overall_one for each (comparison, outcome, window), returned in the given order, each
    window's data joined once (``windows``: the joined windows of these participants and
    outcomes, when the caller keeps them for other analyses)."""
    windows = windows or WindowArms(participants, outcomes)
    rows = {}
    for window in dict.fromkeys(w for _, _, w in combinations):
        arms = windows(window)
        for comparison, outcome, w in combinations:
            if w == window:
                rows[comparison, outcome, w] = overall_one(participants, outcomes, comparison, outcome, w,
                                                           arms=arms[comparison], **options)
                if progress:
                    progress()
    return [rows[key] for key in combinations]


TRIAL_EFFECT_COLUMNS = ["comparison", "outcome", "window", "trial_id", "n", "n_exercise", "n_control", "estimate",
                        "variance", "weight"]


def with_weights(eff: pd.DataFrame) -> pd.DataFrame:
    """Each trial's random-effects weight (per cent) in the two-stage REML analysis of one
    overall analysis, w_i = 1 / (v_i + tau^2), as metafor's forest() shows it."""
    tau2 = pool(eff.estimate.to_numpy(), eff.variance.to_numpy()).tau2 if len(eff) >= 2 else 0.0
    w = 1.0 / (eff.variance.to_numpy() + tau2)
    return eff.assign(weight=100 * w / w.sum() if len(eff) else w)


def _with_arms_and_weights(eff: pd.DataFrame, sample: Sample) -> pd.DataFrame:
    """Participants per arm, and each trial's two-stage weight."""
    treated = pd.Series(np.bincount(sample.codes, weights=sample["exercise"], minlength=sample.k), index=sample.labels)
    eff = eff.assign(n_exercise=eff.trial_id.map(treated).astype(int))
    eff["n_control"] = eff.n - eff.n_exercise
    return with_weights(eff)


def trial_effects(participants, outcomes, combinations=None, windows: WindowArms | None = None) -> pd.DataFrame:
    """The first-stage estimate of every trial in every overall analysis, with participants
    per arm and two-stage weights (forest plots, two-stage sensitivity analyses); ``windows``
    as in ``overall_rows``."""
    combinations = ALL_OVERALL if combinations is None else combinations
    windows = windows or WindowArms(participants, outcomes)
    frames = []
    for window in dict.fromkeys(w for _, _, w in combinations):
        arms = windows(window)
        for comparison, outcome, w in combinations:
            if w == window:
                sample = arms[comparison].complete(outcome)
                eff = _with_arms_and_weights(per_trial_effects(sample, outcome), sample)
                frames.append(eff.assign(comparison=comparison, outcome=outcome, window=w))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=TRIAL_EFFECT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TRIAL_EFFECT_COLUMNS]


def heterogeneity(effects: pd.DataFrame) -> pd.DataFrame:
    """Two-stage heterogeneity of every overall analysis from its per-trial estimates:
    Cochran's Q with its df and p, I^2 (Higgins and Thompson 2002) and the REML tau^2."""
    rows = []
    for (comparison, outcome, window), eff in effects.groupby(["comparison", "outcome", "window"], sort=False):
        k = len(eff)
        row = {"comparison": comparison, "outcome": outcome, "window": window, "k": k, "q": np.nan, "df_q": k - 1,
               "p_q": np.nan, "i2": np.nan, "tau2": np.nan}
        if k >= 2:
            r = pool(eff.estimate.to_numpy(), eff.variance.to_numpy())
            row.update(q=r.q, p_q=float(chi2_upper_tail(r.q, k - 1)), i2=r.i2, tau2=r.tau2)
        rows.append(row)
    return pd.DataFrame(rows, columns=["comparison", "outcome", "window", "k", "q", "df_q", "p_q", "i2", "tau2"])


def overall_estimates(participants, outcomes, progress=None, windows: WindowArms | None = None) -> pd.DataFrame:
    """Every overall analysis: three comparisons x three outcomes x three windows."""
    return pd.DataFrame(overall_rows(participants, outcomes, ALL_OVERALL, progress=progress, windows=windows),
                        columns=RESULT_COLUMNS)
