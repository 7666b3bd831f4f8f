"""Treatment-effect modifiers with within-trial information only (Riley et al. 2020;
Fisher et al. 2017; Hua et al. 2017).

For covariate x, each trial's participants are centred at the trial mean (over the
analysis sample): xc = x - xbar_i. The one-stage model adds a trial-specific slope for
xc, the within-trial interaction exercise x xc (reported as ``exercise:<covariate>``) and,
separately, the across-trial term exercise x xbar (``exercise:<covariate>:across``), so
that the within-trial estimate is free of ecological bias.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.analyses.arrays import Arms, Sample, usable_trials
from analysis.analyses.overall import RESULT_COLUMNS, result_row
from analysis.analyses.samples import BASELINE, comparison_participants, sample_from_frame, window_frame
from analysis.models.distributed import LogisticDesign
from analysis.models.distributions import chi2_upper_tail, t_quantile, t_upper_tail
from analysis.models.glmm import SEPARATION_LIMIT, fit_mixed_logistic
from analysis.models.meta import pool
from analysis.models.onestage import fit_ml_deviance, fit_reml, sufficient_stats
from analysis.models.pertrial import per_trial_logistic_many
from analysis.settings import (
    AGHQ_NODES,
    BINARY_COVARIATES,
    COMPARISONS,
    COVARIATES,
    WINDOWS,
)

__all__ = ["MODIFIER_COLUMNS", "availability_matrix", "modifier_sample", "fit_modifier", "modifier_estimates",
           "rcs_nonlinear_term", "logistic_modifier_design", "logistic_interaction", "per_trial_interaction",
           "per_trial_interactions", "two_stage_checks", "pool_per_trial", "effect_curve", "effect_curve_columns",
           "curve_frame", "curve_grid", "modifier_method", "holm", "modifier_fits", "modifier_tables",
           "interaction_columns"]

CONTINUOUS_COVARIATES = tuple(c for c in COVARIATES if c not in BINARY_COVARIATES)
# a within-trial interaction is estimable when the covariate varies within both arms of this many
# trials (``trials_varying``): one rule for the pooled, summary-statistics and federated fits
MIN_TRIALS_WITHIN = 2
MODIFIER_COLUMNS = RESULT_COLUMNS + [
    "p_adjusted", "trials_within", "two_stage_estimate", "two_stage_se", "two_stage_disagrees", "nonlinearity_p",
]


def availability_matrix(participants: pd.DataFrame) -> pd.DataFrame:
    """Trial x covariate: measured, partly missing or not measured, with the share missing."""
    rows = []
    for tid, d in participants.groupby("trial_id"):
        for cov in COVARIATES:
            share = float(d[cov].isna().mean())
            status = "not measured" if share == 1 else "partly missing" if share > 0 else "measured"
            rows.append({"trial_id": tid, "covariate": cov, "status": status, "share_missing": share, "n": len(d)})
    return pd.DataFrame(rows)


def modifier_sample(participants, outcomes, comparison, outcome, window, covariate, frame=None) -> Sample:
    """Complete cases on outcome, baseline(s) and covariate, with trial mean and centred value.
    ``frame`` is the window's joined data when the caller already has it."""
    if frame is None:
        frame = window_frame(participants, outcomes, window)
    return Sample.from_frame(sample_from_frame(frame, comparison, outcome, covariate=covariate), covariate)


def rcs_nonlinear_term(x, knots):
    """The non-linear basis term of a restricted cubic spline with three knots (Harrell,
    Regression Modeling Strategies, 2.4.5), scaled by (t3 - t1)^2. Written by hand: patsy's
    cr() uses another parametrisation whose linear part is not x itself."""
    t1, t2, t3 = knots
    pos = lambda u: np.maximum(u, 0.0) ** 3  # noqa: E731
    return (pos(x - t1) - pos(x - t2) * (t3 - t1) / (t3 - t2) + pos(x - t3) * (t2 - t1) / (t3 - t2)) / (t3 - t1) ** 2


def interaction_columns(d: Sample, covariate):
    """The interaction model's columns besides each trial's own baseline slope: the covariate
    centred within trial (its trial-specific slope), then exercise, exercise x centred
    covariate (within) and exercise x trial mean (across) as common terms, with their names.
    ``d`` is centred on ``covariate``."""
    ex, xc, xbar = d["exercise"], d["xc"], d["xbar"]
    return xc, [ex, ex * xc, ex * xbar], ["exercise", f"exercise:{covariate}", f"exercise:{covariate}:across"]


def continuous_design(d: Sample, outcome, covariate, spline=None, spline_interaction=True):
    """Per-trial statistics of the interaction model: each trial's own baseline slope and
    covariate slope (and spline term), common exercise, within and across interactions (and,
    unless ``spline_interaction`` is False, exercise x spline: the non-linear model)."""
    xc, x, terms = interaction_columns(d, covariate)
    z = [d[BASELINE[outcome]], xc]
    if spline is not None:
        z.append(spline)
    if spline is not None and spline_interaction:
        x.insert(2, d["exercise"] * spline)
        terms.insert(2, f"exercise:{covariate}:nonlinear")
    return sufficient_stats(d.trial, d[outcome], np.column_stack(x), np.column_stack(z), terms=terms)


def _within_two_stage(st):
    """Per-trial OLS of the within-trial interaction (exercise, exercise x xc after the
    trial's own terms), pooled by REML: the 'deft' approach of Fisher et al. (2017)."""
    est, var = [], []
    for i in range(st.k):
        c = st.cross[i]
        s = c[np.ix_([0, 1], [0, 1])]
        sy = c[[0, 1], -1]
        df = st.resid_df[i] - 2
        if df <= 0 or np.linalg.cond(s) > 1e10 or s[1, 1] <= 1e-10:
            continue
        inv = np.linalg.inv(s)
        b = inv @ sy
        sigma2 = (c[-1, -1] - sy @ b) / df
        est.append(b[1])
        var.append(sigma2 * inv[1, 1])
    if len(est) < 2:
        return np.nan, np.nan
    r = pool(est, var, method="REML")
    return r.estimate, r.se


def per_trial_interaction(d: Sample, covariate) -> pd.DataFrame:
    """First stage of the logistic two-stage check: each trial's logistic regression of
    recovery on the centred covariate, exercise, their product and the other baselines.
    Trials with fewer than 10 participants, without both arms or both outcomes, without
    variation in the covariate or set aside under separation (no finite estimate, or
    SE >= 10) give no row."""
    return per_trial_interactions([(d, covariate)])[0]


# regressions are fitted together up to this many rows in all (per_trial_logistic_many): the
# work they share matters for small samples only, and a million participants' ten samples at
# once would hold a gigabyte
BATCH_ROWS = 100_000


def per_trial_interactions(samples) -> list[pd.DataFrame]:
    """``per_trial_interaction`` of each (sample, covariate) pair, the same frames, with the
    regressions of all pairs fitted together (``per_trial_logistic_many``, up to
    ``BATCH_ROWS`` rows at a time; ``samples`` may be an iterator, read one pair at a time): a
    window's ten recovery checks 0.24 -> 0.15 s of the demo's CPU time, most of it numpy's
    per-call work in each of the iterations (about 22 a call, most of them for trials under
    separation)."""
    fits = per_trial_logistic_many((_interaction_design(d, covariate) for d, covariate in samples), BATCH_ROWS)
    frames = []
    for r in fits:
        if r is None:
            frames.append(pd.DataFrame({"trial_id": [], "estimate": [], "variance": []}))
            continue
        keep = r.ok & (r.se[:, 3] < 10)
        frames.append(pd.DataFrame({"trial_id": r.labels[keep], "estimate": r.coef[keep, 3],
                                    "variance": r.se[keep, 3] ** 2}))
    return frames


def _interaction_design(d: Sample, covariate):
    """The rows and columns of ``per_trial_interaction``'s regressions: (trial, recovery,
    design), or None when no trial qualifies."""
    ex, rec = d["exercise"], d["recovered"]
    rows = (usable_trials(d, "recovered", min_n=10) & (d.trial_variances(d["xc"]) > 1e-12))[d.codes]
    if not rows.any():
        return None
    ex, xc = ex[rows], d["xc"][rows]
    cols = [np.ones(len(ex)), xc, ex, ex * xc] + [d[c][rows] for c in ("pain_bl", "function_bl") if c != covariate]
    return d.trial[rows], rec[rows], np.column_stack(cols)


def pool_per_trial(per_trial: pd.DataFrame) -> tuple[float, float]:
    """Second stage: REML pooling of per-trial interaction estimates (at least two)."""
    if len(per_trial) < 2:
        return np.nan, np.nan
    pooled = pool(per_trial.estimate.to_numpy(), per_trial.variance.to_numpy(), method="REML")
    return pooled.estimate, pooled.se


def _logistic_two_stage(d, covariate):
    """Per-trial logistic regressions of the interaction, pooled by REML."""
    return pool_per_trial(per_trial_interaction(d, covariate))


def two_stage_checks(arms: Arms, covariates) -> dict:
    """The recovery interaction models' two-stage checks (pooled estimate, SE) of the
    covariates whose within-trial interaction is estimable (those ``fit_modifier`` fits),
    their first stages together (``per_trial_interactions``). The samples are made one at a
    time as the batches take them, so that a million participants' ten are never held at once."""
    estimable = []

    def samples():
        for covariate in covariates:
            d = arms.complete("recovered", covariate)
            if int(trials_varying(d).sum()) >= MIN_TRIALS_WITHIN:
                estimable.append(covariate)
                yield d, covariate

    first_stages = per_trial_interactions(samples())
    return {c: pool_per_trial(per_trial) for c, per_trial in zip(estimable, first_stages)}


def _row(comparison, outcome, window, term, scale, summary, method, note, extra):
    row = result_row("modifier", comparison, outcome, window, term, scale, summary, method, note)
    row.update(extra)
    return row


def _coef_summary(est, se, df, k, n, converged):
    crit = t_quantile(0.975, df)
    tstat = est / se if se > 0 else np.nan
    p = 2 * t_upper_tail(abs(tstat), df)
    return dict(estimate=est, se=se, ci_low=est - crit * se, ci_high=est + crit * se, df=df, p=float(p),
                n_trials=k, n_participants=n, converged=converged)


def trials_varying(d: Sample) -> pd.Series:
    """Per trial: does the centred covariate vary within both arms (within-trial information)?
    Needs more than three participants and a variance above 1e-12 in each arm."""
    if d.empty:
        return pd.Series(dtype=bool)
    treated = d["exercise"] == 1
    varies = (d.trial_variances(d["xc"], treated) > 1e-12) & (d.trial_variances(d["xc"], ~treated) > 1e-12)
    return pd.Series(varies & (d.counts > 3), index=d.labels)


def _empty_extra(trials_within):
    return {"trials_within": trials_within, "p_adjusted": np.nan, "two_stage_estimate": np.nan,
            "two_stage_se": np.nan, "two_stage_disagrees": np.nan, "nonlinearity_p": np.nan}


def modifier_method(outcome):
    return (f"one-stage mixed logistic, ML, AGHQ {AGHQ_NODES} nodes, within-trial interaction" if outcome == "recovered"
            else "one-stage LMM, REML, Satterthwaite t, within-trial interaction")


def not_estimable_rows(comparison, outcome, window, covariate, k, n, varies: pd.Series):
    trials_within = int(varies.sum())
    ids = ", ".join(varies.index[varies]) if trials_within else "none"
    note = (f"not estimable: the covariate varies within both arms in {trials_within} trial(s) "
            f"({ids}); a within-trial interaction needs at least two")
    scale = "log_or" if outcome == "recovered" else "md"
    empty = dict(n_trials=k, n_participants=n, converged=False)
    method = modifier_method(outcome)
    return [_row(comparison, outcome, window, f"exercise:{covariate}", scale, empty, method, note,
                 _empty_extra(trials_within)),
            _row(comparison, outcome, window, f"exercise:{covariate}:across", scale, empty, method, note,
                 _empty_extra(trials_within))]


def interaction_rows(comparison, outcome, window, covariate, k, n, trials_within, within, across, converged,
                     note, tau2, two_stage, nonlinearity_p=np.nan):
    """The within-trial and across-trial rows, from (estimate, se, df) of each term."""
    scale = "log_or" if outcome == "recovered" else "md"
    extra = _empty_extra(trials_within)
    extra["nonlinearity_p"] = nonlinearity_p
    extra["two_stage_estimate"], extra["two_stage_se"] = two_stage
    if np.isfinite(two_stage[0]):
        extra["two_stage_disagrees"] = bool(abs(two_stage[0] - within[0]) > max(within[1], two_stage[1]))
    est, se = within[0], within[1]
    if outcome == "recovered" and not (np.isfinite(se) and abs(est) < SEPARATION_LIMIT):
        # separation in the interaction itself: the likelihood rises without bound along it,
        # and where a fit stops (an estimate of -38, an SE of 1e7 or none) means nothing
        summary_w = dict(n_trials=k, n_participants=n, converged=False)
        note = ("not estimable: the interaction is not finite (separation: within the trials, the covariate "
                "predicts recovery in one arm perfectly)" + (f"; {note}" if note else ""))
        converged = False
    else:
        summary_w = dict(_coef_summary(*within, k, n, converged), tau2=tau2)
    rows = [_row(comparison, outcome, window, f"exercise:{covariate}", scale, summary_w, modifier_method(outcome), note,
                 extra)]
    across_extra = dict(extra, two_stage_estimate=np.nan, two_stage_se=np.nan, two_stage_disagrees=np.nan,
                        nonlinearity_p=np.nan)
    if k >= 3 and converged:
        summary_a = dict(_coef_summary(*across, k, n, converged), tau2=tau2)
        rows.append(
            _row(
                comparison,
                outcome,
                window,
                f"exercise:{covariate}:across",
                scale,
                summary_a,
                modifier_method(outcome),
                "across-trial (ecological) association: not a modifier estimate",
                across_extra,
            )
        )
    else:
        rows.append(_row(comparison, outcome, window, f"exercise:{covariate}:across", scale,
                         dict(n_trials=k, n_participants=n, converged=False), modifier_method(outcome),
                         "not estimable: fewer than three trials" if k < 3 else "not estimable: the model did not "
                         "converge", across_extra))
    return rows


def continuous_interaction(st):
    """REML fit of the within/across interaction model and its two-stage check, from the
    per-trial statistics alone (so it can run on exported summaries)."""
    fit = fit_reml(st)
    se = np.sqrt(np.diag(fit.cov))
    within = (fit.coef[1], se[1], fit.df[1])
    across = (fit.coef[2], se[2], fit.df[2])
    return fit, within, across, _within_two_stage(st)


def logistic_modifier_design(d: Sample, covariate) -> LogisticDesign:
    """The recovery interaction model's arrays: common slopes for the baselines (other than
    the covariate itself), exercise x centred covariate (within) and exercise x trial mean
    (across), the centred covariate as each trial's own term, exercise."""
    ex = d["exercise"]
    common = [d[c] for c in ("pain_bl", "function_bl") if c != covariate]
    x = np.column_stack(common + [ex * d["xc"], ex * d["xbar"]])
    return LogisticDesign(d.trial, d["recovered"], x, ex, d["xc"][:, None])


def logistic_interaction(fit):
    """(estimate, se, df) of the within and across terms of a recovery interaction fit, and
    the coefficients and covariance of (exercise, within, across) for the effect curve."""
    j = len(fit.beta) - 2
    coef = np.r_[fit.beta, fit.theta]
    cov = fit.cov_common
    with np.errstate(invalid="ignore"):
        within = (coef[j], np.sqrt(cov[j, j]), np.inf)
        across = (coef[j + 1], np.sqrt(cov[j + 1, j + 1]), np.inf)
    idx = [len(coef) - 1, j, j + 1]
    return within, across, coef[idx], cov[np.ix_(idx, idx)]


def fit_modifier(participants, outcomes, comparison, outcome, window, covariate, frame=None, arms: Arms = None,
                 two_stage=None):
    """Within- and across-trial interaction rows for one covariate, and the effect curve's
    columns (``effect_curve_columns``; None when not estimable). ``arms``: the comparison's
    participants at the window when the caller already selected them; ``two_stage``: a
    recovery model's two-stage check (pooled estimate, SE) when the caller made it
    (``two_stage_checks``)."""
    if arms is not None:
        d = arms.complete(outcome, covariate)
    else:
        d = modifier_sample(participants, outcomes, comparison, outcome, window, covariate, frame=frame)
    k, n = d.k, len(d)
    scale = "log_or" if outcome == "recovered" else "md"
    varies = trials_varying(d)
    trials_within = int(varies.sum())
    if trials_within < MIN_TRIALS_WITHIN:
        return not_estimable_rows(comparison, outcome, window, covariate, k, n, varies), None
    nonlinearity_p = np.nan
    if outcome == "recovered":
        design = logistic_modifier_design(d, covariate)
        fit = fit_mixed_logistic(*design, n_nodes=AGHQ_NODES)
        within, across, curve_coef, curve_cov = logistic_interaction(fit)
        curve_df = np.inf
        ts = two_stage if two_stage is not None else _logistic_two_stage(d, covariate)
    else:
        fit, within, across, ts = continuous_interaction(continuous_design(d, outcome, covariate))
        curve_coef, curve_cov, curve_df = fit.coef, fit.cov, fit.df[0]
        if covariate in CONTINUOUS_COVARIATES and trials_within >= 3:
            knots = np.percentile(d["xc"], [10, 50, 90])
            if np.all(np.diff(knots) > 0):
                spline = rcs_nonlinear_term(d["xc"], knots)
                # both models carry the spline's main effect in each trial's own terms, so
                # they differ only by the exercise x spline term: an ML likelihood-ratio test
                dev_lin = fit_ml_deviance(continuous_design(d, outcome, covariate, spline, spline_interaction=False))
                dev_nl = fit_ml_deviance(continuous_design(d, outcome, covariate, spline))
                nonlinearity_p = float(chi2_upper_tail(max(dev_lin - dev_nl, 0.0), 1))
    rows = interaction_rows(comparison, outcome, window, covariate, k, n, trials_within, within, across,
                            fit.converged, fit.message, fit.tau2, ts, nonlinearity_p)
    curve = effect_curve_columns(*curve_grid(d, covariate), curve_coef[:3], curve_cov[:3, :3], curve_df,
                                 labels=dict(comparison=comparison, outcome=outcome, window=window,
                                             covariate=covariate, scale=scale))
    return rows, curve


DECILES_MIN_N = 100  # deciles are shown only when each tenth holds at least 10 participants


def curve_grid(d: Sample, covariate):
    """Where to draw the effect curve: 25 points from the covariate's 5th to 95th percentile
    (``curve``) and its deciles (``decile``, to show where the data are; aggregates of at
    least a tenth of the sample, never single values, and only with at least
    ``DECILES_MIN_N`` participants), or the two levels of a binary covariate (``level``);
    and the sample's mean of the covariate."""
    xbar = float(np.mean(d[covariate]))
    if covariate in BINARY_COVARIATES:
        return np.array([0.0, 1.0]), ["level"] * 2, xbar
    grid = np.linspace(*np.percentile(d[covariate], [5, 95]), 25)
    kind = ["curve"] * len(grid)
    if len(d) >= DECILES_MIN_N:
        deciles = np.percentile(d[covariate], np.arange(10, 100, 10))
        grid, kind = np.r_[grid, deciles], kind + ["decile"] * len(deciles)
    return grid, kind, xbar


def effect_curve_columns(grid, kind, xbar, coef, cov, df, labels=None) -> dict:
    """Predicted exercise effect at each covariate value of ``grid``, for a participant of a
    trial whose covariate mean is ``xbar``: theta + within x (value - xbar) + across x xbar,
    from the coefficients (exercise, within, across) and their covariance, as columns
    (``curve_frame`` makes them a table). ``labels``: constant columns (one value each)."""
    grid = np.asarray(grid, float)
    a = np.column_stack([np.ones_like(grid), grid - xbar, np.full_like(grid, xbar)])
    est = a @ coef
    var = np.einsum("ij,jk,ik->i", a, cov, a)
    se = np.sqrt(np.where(var >= 0, var, np.nan))  # a negative variance: a degenerate fit, no band
    crit = t_quantile(0.975, df)
    return {"kind": list(kind), "value": grid, "estimate": est, "se": se, "ci_low": est - crit * se,
            "ci_high": est + crit * se, **(labels or {})}


def effect_curve(grid, kind, xbar, coef, cov, df, labels=None) -> pd.DataFrame:
    """``effect_curve_columns`` as a table."""
    return pd.DataFrame(effect_curve_columns(grid, kind, xbar, coef, cov, df, labels))


def curve_frame(curves: list[dict]) -> pd.DataFrame:
    """One table of many curves' columns (``effect_curve_columns``), in their order, each
    curve's constant labels repeated along its rows: the same table as concatenating a frame
    per curve, made at once (270 small frames, made in the workers and sent here, cost a
    tenth of a second of the demo's fit)."""
    if not curves:
        return pd.DataFrame()
    lengths = [len(c["value"]) for c in curves]
    columns = {}
    for name, first in curves[0].items():
        if isinstance(first, np.ndarray):  # values
            columns[name] = np.concatenate([c[name] for c in curves])
        elif isinstance(first, list):  # the kind of each point
            columns[name] = [v for c in curves for v in c[name]]
        else:  # a label, one per curve
            columns[name] = [c[name] for c, n in zip(curves, lengths) for _ in range(n)]
    return pd.DataFrame(columns)


def holm_by_family(table: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p-values of the within-trial interactions, per comparison, outcome and
    window. The families are gathered with a dictionary and adjusted on arrays: a pandas
    groupby with an assignment per family took 7 ms of the demo's 540 rows, in the serial
    end of the fit."""
    table = table.copy()
    family = ["comparison", "outcome", "window"]
    within = (~table.term.str.endswith(":across") & table.p.notna() & table[family].notna().all(axis=1)).to_numpy()
    rows = np.flatnonzero(within)
    members: dict = {}
    for row, key in zip(rows.tolist(), zip(*(table[c].to_numpy()[rows].tolist() for c in family))):
        members.setdefault(key, []).append(row)
    p, adjusted = table.p.to_numpy(float), table.p_adjusted.to_numpy(float, copy=True)
    for rows_of_family in members.values():
        adjusted[rows_of_family] = holm(p[rows_of_family])
    table["p_adjusted"] = adjusted
    return table


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): the i-th smallest of m p-values times
    (m - i + 1), made non-decreasing in that order, capped at 1. Written by hand: statsmodels'
    multipletests gives the same values but runs gc.collect on every call (2.6 s of the
    demo's modifier stage)."""
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty(len(p))
    out[order] = adjusted
    return out


def modifier_fits(participants, outcomes, comparisons=COMPARISONS, outcomes_list=("pain", "function", "recovered"),
                  windows=None, progress=None, frames=None) -> tuple[list, list]:
    """The interaction rows (p-values not yet adjusted) and effect curves of the given
    comparisons and outcomes: a part of ``modifier_estimates`` that can run on its own.
    ``frames``: each window's ``window_frame`` of these participants and outcomes (a function
    of the window), when the caller keeps them."""
    windows = windows or [w.name for w in WINDOWS]
    rows, curves = [], []
    columns = list(outcomes_list) + ["pain_bl", "function_bl"] + list(COVARIATES)
    for window in windows:
        frame = frames(window) if frames else window_frame(participants, outcomes, window)
        # each comparison's participants at the window, selected and sorted once for its models
        arms = {c: Arms(comparison_participants(frame, c), columns) for c in comparisons}
        for comparison in comparisons:
            for outcome in outcomes_list:
                checks = two_stage_checks(arms[comparison], COVARIATES) if outcome == "recovered" else {}
                for covariate in COVARIATES:
                    r, c = fit_modifier(participants, outcomes, comparison, outcome, window, covariate,
                                        arms=arms[comparison], two_stage=checks.get(covariate))
                    rows.append(((comparison, outcome, window), r))
                    if c is not None:
                        curves.append(((comparison, outcome, window), c))
                    if progress:
                        progress()
    return rows, curves


def modifier_tables(parts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The modifier and effect-curve tables from ``modifier_fits`` parts, in the order of
    comparison, outcome and window (as CONTRACT.md lists them; whatever order the parts were
    fitted in), with Holm-adjusted p-values within each comparison, outcome and window."""
    rank = {c: i for i, c in enumerate(COMPARISONS)}
    outcome_rank = {o: i for i, o in enumerate(("pain", "function", "recovered"))}
    window_rank = {w.name: i for i, w in enumerate(WINDOWS)}

    def ordered(items):
        key = lambda item: (rank[item[0][0]], outcome_rank[item[0][1]], window_rank[item[0][2]])  # noqa: E731
        return [x for _, x in sorted(items, key=key)]  # a stable sort keeps the covariates' order

    rows = [r for part in ordered([i for p in parts for i in p[0]]) for r in part]
    curves = ordered([i for p in parts for i in p[1]])
    table = holm_by_family(pd.DataFrame(rows, columns=MODIFIER_COLUMNS))
    return table, curve_frame(curves)


def modifier_estimates(participants, outcomes, windows=None, outcomes_list=("pain", "function", "recovered"),
                       progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every prespecified interaction, with Holm-adjusted p-values within each comparison,
    outcome and window (the family of the ten prespecified covariates)."""
    part = modifier_fits(participants, outcomes, COMPARISONS, outcomes_list, windows, progress)
    return modifier_tables([part])
