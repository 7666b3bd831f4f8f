"""Sensitivity analyses: do the conclusions survive other reasonable choices?

Each analysis writes rows with the columns of estimates.csv and a distinct ``analysis``
name: two_stage_<reml|dl|pm>, common_effect, trial_residual_variances, leave_out:<trial>,
low_risk_of_bias, window_average, recovery_improvement, multiple_imputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.analyses.arrays import Sample
from analysis.analyses.modifiers import interaction_columns
from analysis.analyses.overall import (
    ALL_OVERALL,
    RESULT_COLUMNS,
    WindowArms,
    continuous_method,
    continuous_stats,
    empty_row,
    overall_rows,
    result_row,
    trial_effects,
)
from analysis.analyses.samples import BASELINE, KEY, comparison_participants
from analysis.models.distributions import t_quantile, t_upper_tail
from analysis.models.imputation import ChainedImputer, rubin
from analysis.models.meta import pool
from analysis.models.onestage import fit_reml_many, trial_cross_products
from analysis.settings import (
    BINARY_COVARIATES,
    COMPARISONS,
    COVARIATES,
    PLAUSIBLE,
    RECOVERY_IMPROVEMENT,
    RECOVERY_THRESHOLD,
    RECOVERY_TOLERANCE,
    WINDOWS,
)

__all__ = ["SENSITIVITY_COLUMNS", "sensitivity_estimates", "two_stage_rows", "leave_one_out", "influence_summary",
           "window_average_outcomes", "improvement_recovery", "multiple_imputation", "ImputedFits", "imputed_fits",
           "pooled_imputation_rows", "imputation_stream", "MI_COMPARISONS", "PRIMARY", "completed_data_fits",
           "leave_out_rows"]

SENSITIVITY_COLUMNS = RESULT_COLUMNS + ["fmi"]
# imputed values are kept inside the plausible ranges (covariates) and the 0-100 scales (outcomes)
IMPUTED_RANGES = {**PLAUSIBLE, **{v: (0.0, 100.0) for v in ("pain", "function", "pain_bl", "function_bl")}}
PRIMARY = [(c, o, "short") for c in ("none_usual_care", "other_conservative") for o in ("pain", "function")]


def two_stage_rows(effects: pd.DataFrame, methods=("REML", "DL", "PM")) -> list[dict]:
    """The per-trial estimates of each overall analysis (``trial_effects``) pooled with each
    tau^2 estimator and Hartung-Knapp CIs."""
    if isinstance(methods, str):
        methods = (methods,)
    by_analysis = dict(tuple(effects.groupby(["comparison", "outcome", "window"], sort=False)))
    empty = effects.iloc[:0]
    rows = []
    for window in WINDOWS:
        for comparison in COMPARISONS:
            for outcome in ("pain", "function", "recovered"):
                eff = by_analysis.get((comparison, outcome, window.name), empty)
                scale = "log_or" if outcome == "recovered" else "md"
                for method in methods:
                    name = f"two_stage_{method.lower()}"
                    label = f"two-stage, {method} tau², Hartung-Knapp t(k-1)"
                    if len(eff) < 2:
                        rows.append(result_row(name, comparison, outcome, window.name, "exercise", scale,
                                               {"n_trials": len(eff), "n_participants": int(eff.n.sum()),
                                                "converged": False},
                                               label, "not estimable: fewer than two trials with a per-trial estimate"))
                        continue
                    r = pool(eff.estimate, eff.variance, method=method, hartung_knapp=True)
                    summary = dict(r.as_dict(), n_trials=len(eff), n_participants=int(eff.n.sum()), converged=True)
                    rows.append(result_row(name, comparison, outcome, window.name, "exercise", scale, summary, label,
                                           f"I² {r.i2:.1f}%, Q {r.q:.1f}"))
    return rows


def leave_one_out(participants, outcomes, windows: WindowArms | None = None) -> list[dict]:
    """Each primary result refitted without one trial at a time. Removing a trial removes its
    per-trial statistics and nothing else, so each refit uses the statistics of the others
    (the same numbers as rebuilding the sample without that trial, at a fraction of the cost).
    ``windows``: the joined windows, when the caller keeps them (``overall_rows``)."""
    windows = windows or WindowArms(participants, outcomes)
    rows = []
    for comparison, outcome, window in PRIMARY:
        st = continuous_stats(windows(window)[comparison].complete(outcome), outcome)
        rows += leave_out_rows(st, comparison, outcome, window)
    return rows


def leave_out_rows(st, comparison, outcome, window, method_note="") -> list[dict]:
    """One refit per trial of ``st`` without it (none when a single trial is left: removing
    it leaves nothing to fit)."""
    left_out = st.trial_ids if st.k >= 2 else []
    fits = fit_reml_many([st.subset(np.arange(st.k) != i) for i in range(len(left_out))])
    return [result_row(f"leave_out:{trial}", comparison, outcome, window, "exercise", "md", fit.summary(),
                       continuous_method() + method_note, fit.message) for trial, fit in zip(left_out, fits)]


def influence_summary(sensitivity: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """Per primary result: the trial whose removal moves the estimate most, and tau^2 most."""
    loo = sensitivity[sensitivity.analysis.str.startswith("leave_out:")]
    rows = []
    for (c, o, w), g in loo.groupby(["comparison", "outcome", "window"]):
        p = estimates[(estimates.comparison == c) & (estimates.outcome == o) & (estimates.window == w)].iloc[0]
        d_est = (g.estimate - p.estimate).abs()
        d_tau = (g.tau2 - p.tau2).abs()
        i, j = d_est.idxmax(), d_tau.idxmax()
        rows.append({"comparison": c, "outcome": o, "window": w,
                     "largest_estimate_change_trial": g.analysis[i].split(":")[1],
                     "largest_estimate_change": float(g.estimate[i] - p.estimate),
                     "largest_tau2_change_trial": g.analysis[j].split(":")[1],
                     "largest_tau2_change": float(g.tau2[j] - p.tau2),
                     "all_within_primary_ci": bool(((g.estimate >= p.ci_low) & (g.estimate <= p.ci_high)).all())})
    return pd.DataFrame(rows)


def window_average_outcomes(visits: pd.DataFrame, threshold=RECOVERY_THRESHOLD) -> pd.DataFrame:
    """Alternative window definition: the mean of every follow-up inside the window."""
    g = visits.groupby(["trial_id", "participant_id", "window"], sort=False)
    out = g[["pain", "function"]].mean().reset_index()
    out["months"] = g.months.mean().to_numpy()
    rec = ((out.pain <= threshold) & (out.function <= threshold)).astype(float)
    out["recovered"] = rec.where(out.pain.notna() & out.function.notna())
    return out


def improvement_recovery(participants, outcomes, share=RECOVERY_IMPROVEMENT) -> pd.DataFrame:
    """Alternative recovery: at least ``share`` improvement from baseline in pain and function."""
    o = outcomes.merge(participants[["trial_id", "participant_id", "pain_bl", "function_bl"]],
                       on=["trial_id", "participant_id"], how="left")
    return outcomes.assign(recovered=_improved(o, share))


def _improved(d: pd.DataFrame, share=RECOVERY_IMPROVEMENT) -> np.ndarray:
    """Recovery as at least ``share`` improvement from baseline (pain, function, pain_bl and
    function_bl of each row; NaN where one is missing or a baseline is 0)."""
    ok = d.pain.notna() & d.function.notna() & (d.pain_bl > 0) & (d.function_bl > 0)
    tol = RECOVERY_TOLERANCE  # the boundary case (7 of 24 after 10 of 24 is exactly 30 %) is common
    rec = ((d.pain <= (1 - share) * d.pain_bl + tol) & (d.function <= (1 - share) * d.function_bl + tol)).astype(float)
    return rec.where(ok).to_numpy()


def _with_improvement_recovery(frame: pd.DataFrame) -> pd.DataFrame:
    """A window's join (``window_frame``) with recovery as improvement from baseline: the join
    of ``improvement_recovery``'s outcomes, without joining again."""
    return frame.assign(recovered=_improved(frame))


def _of_trials(frame: pd.DataFrame, trials: set) -> pd.DataFrame:
    """The rows of ``trials`` in a window's join: the join of those trials' participants and
    outcomes (the merge keeps the participants' order), without joining again."""
    return frame[frame.trial_id.isin(trials)].reset_index(drop=True)


def _mi_sample(participants, outcomes, comparison, window="short"):
    """All participants of the comparison's trials that followed up in the window,
    with outcomes left missing where not observed (to be imputed)."""
    p = comparison_participants(participants, comparison)
    o = outcomes[outcomes.window == window][KEY + ["pain", "function"]]
    trials = set(o.trial_id.unique())  # the distinct values first: a set of 940,000 rows took 0.11 s
    d = p[p.trial_id.isin(trials)].merge(o, on=KEY, how="left")
    return d.sort_values(KEY, kind="stable").reset_index(drop=True)


MI_COMPARISONS = ("none_usual_care", "other_conservative")


def imputation_stream(seed: int, comparison: str, draw: int) -> np.random.Generator:
    """The random stream of one imputation: its own child of ``seed``'s SeedSequence, keyed
    by the comparison and the imputation's number (numpy's way to make independent streams).
    Each imputation is then the same whether it runs alone, in a pool or in any order."""
    key = (COMPARISONS.index(comparison), draw)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class ImputedFits:
    """The completed-data fits of some imputations (``draws``: their numbers, 0 to m - 1) of
    one comparison: ``fits`` maps (outcome, term) to [(estimate, variance, df, tau2, n_trials,
    n_participants) for each imputation, in the order of ``draws``] (term ``exercise`` for the
    overall effect, ``exercise:<covariate>`` for each measured covariate's within-trial
    interaction); ``n_participants``: the comparison's multiple-imputation sample."""

    comparison: str
    draws: range
    n_participants: int
    fits: dict


def imputed_fits(participants, outcomes, comparison, draws, seed=2020, covariates=COVARIATES,
                 window="short") -> ImputedFits:
    """Imputations ``draws`` of one comparison, each from its own stream, and the fits on
    each completed data set."""
    base = _mi_sample(participants, outcomes, comparison, window)
    measured = [c for c in covariates if base[c].notna().any()]
    trial = base.trial_id.to_numpy()
    imputer = ChainedImputer(base, measured, binary=BINARY_COVARIATES, ranges=IMPUTED_RANGES)
    collected: dict = {}
    # the imputations are drawn side by side (``ChainedImputer.draws``), each as if alone
    for columns in imputer.draws(imputation_stream(seed, comparison, draw) for draw in draws):
        completed = Sample(trial, columns)
        for key, f, column in completed_data_fits(completed, measured):
            collected.setdefault(key, []).append(
                (f.coef[column], f.cov[column, column], f.df[column], f.tau2, f.n_trials, f.n_participants))
    return ImputedFits(comparison, draws, len(base), collected)


def completed_data_fits(d: Sample, measured):
    """The fits of one completed data set, as (outcome, term), fit, and the term's number
    in the fit: per outcome the overall effect (the model of ``continuous_stats``) and each
    covariate's within-trial interaction (the model of ``continuous_design`` without a
    spline). Every row is complete, so all these models share their rows, and their
    per-trial statistics come from one pass over the rows (``trial_cross_products``) instead
    of one per model (the refits of one imputation at a million participants: 0.6 s instead
    of 1.1 s), and they are fitted together (``fit_reml_many``)."""
    columns = [d["exercise"], d["pain"], d["function"], d["pain_bl"], d["function_bl"]]
    where = {"exercise": 0, "pain": 1, "function": 2, "pain_bl": 3, "function_bl": 4}
    terms = {}
    for cov in measured:
        xc, x, terms[cov] = interaction_columns(d.centred_on(cov), cov)
        where[cov] = len(columns)  # its centred values, then the common terms but exercise
        columns += [xc, *x[1:]]
    cross = trial_cross_products(d.trial, np.column_stack(columns), exercise=0)
    models = []
    for outcome in ("pain", "function"):
        baseline, y = where[BASELINE[outcome]], where[outcome]
        models.append(((outcome, "exercise"), cross.stats([baseline], [0], y, ["exercise"]), 0))
        for cov in measured:
            c = where[cov]
            st = cross.stats([baseline, c], [0, c + 1, c + 2], y, terms[cov])
            models.append(((outcome, f"exercise:{cov}"), st, 1))
    fits = fit_reml_many([st for _, st, _ in models])
    return [(key, fit, column) for (key, _, column), fit in zip(models, fits)]


def pooled_imputation_rows(parts: list[ImputedFits], m: int, covariates=COVARIATES, window="short") -> list[dict]:
    """Rubin's rules (Barnard-Rubin df, fraction of missing information) over the m
    imputations of one comparison (``parts``: its ``imputed_fits``, in any order, together
    draws 0 to m - 1), and an empty row with the reason for each covariate no trial of the
    comparison measured (it has no fits)."""
    if m < 2 or not parts:
        raise ValueError("Rubin's rules need at least two imputations")
    parts = sorted(parts, key=lambda part: part.draws.start)
    comparison, n_participants = parts[0].comparison, parts[0].n_participants
    collected: dict = {}
    for part in parts:
        for key, values in part.fits.items():
            collected.setdefault(key, []).extend(values)
    method = (f"one-stage LMM, REML, {m} imputations (chained equations within trials), Rubin's rules, "
              "Barnard-Rubin df")
    rows = []
    for (outcome, term), vals in collected.items():
        v = np.array(vals)
        pooled = rubin(v[:, 0], v[:, 1], df_complete=float(np.mean(v[:, 2])))
        crit = t_quantile(0.975, pooled["df"])
        est, se = pooled["estimate"], pooled["se"]
        s = dict(estimate=est, se=se, ci_low=est - crit * se, ci_high=est + crit * se, df=pooled["df"],
                 p=float(2 * t_upper_tail(abs(est / se), pooled["df"])), tau2=float(np.mean(v[:, 3])),
                 n_trials=int(v[0, 4]), n_participants=int(v[0, 5]), converged=True)
        row = result_row("multiple_imputation", comparison, outcome, window, term, "md", s, method,
                         f"fraction of missing information {pooled['fmi']:.2f}")
        row["fmi"] = pooled["fmi"]
        rows.append(row)
    for outcome in ("pain", "function"):
        for cov in covariates:
            if (outcome, f"exercise:{cov}") in collected:
                continue
            rows.append(empty_row("multiple_imputation", comparison, outcome, window, f"exercise:{cov}", "md",
                                  method, f"not estimable: no trial of this comparison measured {cov}, "
                                  "so there is nothing to impute it from", n_participants=n_participants))
    return rows


def multiple_imputation(participants, outcomes, m=20, seed=2020, comparisons=MI_COMPARISONS,
                        covariates=COVARIATES, window="short") -> list[dict]:
    """Overall effects and within-trial interactions at short term, pooled over m
    imputations with Rubin's rules (Barnard-Rubin df, fraction of missing information).
    Each imputation draws from its own random stream (``imputation_stream``), so a run that
    spreads them over processes (``fit_all``) gives the same rows."""
    rows = []
    for comparison in comparisons:
        part = imputed_fits(participants, outcomes, comparison, range(m), seed, covariates, window)
        rows += pooled_imputation_rows([part], m, covariates, window)
    return rows


def sensitivity_estimates(participants, outcomes, visits, trials, m=20, seed=2020, progress=None,
                          effects=None, imputed=None, windows: WindowArms | None = None) -> pd.DataFrame:
    """Every sensitivity analysis; ``effects``: the per-trial estimates (``trial_effects``),
    ``imputed``: the rows of ``multiple_imputation`` and ``windows``: the joined windows of
    these participants and outcomes, when the caller already has them."""
    rows = []
    windows = windows or WindowArms(participants, outcomes)
    if effects is None:
        effects = trial_effects(participants, outcomes, windows=windows)

    def step(new):
        rows.extend(new)
        if progress:
            progress()

    step(two_stage_rows(effects))
    step(overall_rows(participants, outcomes, ALL_OVERALL, analysis="common_effect", random_effect=False,
                      windows=windows))
    step(overall_rows(participants, outcomes, [r for r in ALL_OVERALL if r[1] != "recovered"],
                      analysis="trial_residual_variances", residual="trial", windows=windows))
    step(leave_one_out(participants, outcomes, windows))
    # the low-risk trials' and the improvement-defined recovery's windows from the primary
    # windows' joins (the same rows in the same order; each join is seconds at a million), so
    # their WindowArms need no participants and outcomes of their own
    low = set(trials.loc[trials.risk_of_bias == "low", "trial_id"])
    low_risk = WindowArms(None, None, lambda w: _of_trials(windows.frame(w), low))
    step(overall_rows(None, None, ALL_OVERALL, analysis="low_risk_of_bias", windows=low_risk))
    step(overall_rows(participants, window_average_outcomes(visits), ALL_OVERALL, analysis="window_average"))
    improved = WindowArms(None, None, lambda w: _with_improvement_recovery(windows.frame(w)))
    step(overall_rows(None, None, [r for r in ALL_OVERALL if r[1] == "recovered"], analysis="recovery_improvement",
                      windows=improved))
    step(multiple_imputation(participants, outcomes, m=m, seed=seed) if imputed is None else imputed)
    table = pd.DataFrame(rows)
    for col in SENSITIVITY_COLUMNS:
        if col not in table:
            table[col] = np.nan
    return table[SENSITIVITY_COLUMNS]
