"""The centre's side: from what the sites disclosed to the results tables of CONTRACT.md,
with the pooled analysis's own functions wherever the statistics allow.

Available from sites' statistics: every continuous one-stage model (overall, modifiers and
the sensitivity analyses that refit them), every mixed logistic model (by likelihood
rounds), the per-trial estimates and everything two-stage, the baseline table, flow and
availability. Not available (rows say so): the spline non-linearity test (its knots are
percentiles of the pooled covariate), multiple imputation (a covariate a trial never
measured is imputed from other trials' participants), and data ticks on the effect curves
(percentiles of pooled data); the curves are drawn over the pooled mean +/- 1.645 SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.analyses.descriptives import AGGREGATE_COLUMNS, baseline_summary
from analysis.analyses.modifiers import (
    MIN_TRIALS_WITHIN,
    MODIFIER_COLUMNS,
    effect_curve,
    holm_by_family,
    interaction_rows,
    logistic_interaction,
    not_estimable_rows,
    pool_per_trial,
)
from analysis.analyses.overall import (
    ALL_OVERALL,
    RESULT_COLUMNS,
    TRIAL_EFFECT_COLUMNS,
    continuous_method,
    empty_row,
    heterogeneity,
    recovery_method,
    result_row,
    with_weights,
)
from analysis.analyses.sensitivity import (
    PRIMARY,
    SENSITIVITY_COLUMNS,
    influence_summary,
    leave_out_rows,
    two_stage_rows,
)
from analysis.analyses.summaries import assemble_stats, continuous_rows, stats_key
from analysis.analyses.validation import reference_estimates
from analysis.federated.rounds import LogisticPlan, run_rounds
from analysis.federated.site import LOGISTIC_VARIANTS, logistic_key
from analysis.ingest.harmonise import instruments_table
from analysis.models.onestage import fit_reml
from analysis.settings import AGHQ_NODES, BINARY_COVARIATES, COMPARISONS, COVARIATES, PLAUSIBLE, WINDOWS

__all__ = ["assemble", "FEDERATED", "NOT_AVAILABLE"]

FEDERATED = ", federated (vantage6)"
NOT_AVAILABLE = "not available in federated mode: "
Z_90 = 1.6448536269514722  # the normal 5th-95th percentile range for the effect curves


def _frame(sites, name) -> pd.DataFrame:
    rows = [r for s in sites for r in s["tables"][name]]
    return pd.DataFrame(rows)


def _stats(sites, prefix) -> dict:
    """{stats key: (TrialStats, varies)} over the sites, for keys starting with ``prefix|``."""
    by_key: dict = {}
    for s in sites:
        for key, entries in s["continuous"].items():
            head, _, rest = key.partition("|")
            if head == prefix:
                by_key.setdefault(rest, []).extend(entries.items())
    return {k: assemble_stats(v) for k, v in by_key.items()}


def _plans(sites) -> list:
    by_key: dict = {}
    for s in sites:
        for key, desc in s["logistic"].items():
            by_key.setdefault(key, []).append(desc)
    plans = []
    for key, descs in sorted(by_key.items()):
        analysis = key.split("|")[0]
        random_effect = LOGISTIC_VARIANTS[analysis][1] if analysis in LOGISTIC_VARIANTS else True
        plans.append(LogisticPlan(key, descs, random_effect, AGHQ_NODES))
    return plans


def _fit_or_skip(plans, likelihoods, max_rounds):
    """Fit the models that have an informative trial and (modifiers) within-trial
    information in at least two trials; the others are reported as not estimable."""
    fit_these = [p for p in plans if p.informative and (not p.key.startswith("modifier|")
                                                        or sum(p.varies.values()) >= MIN_TRIALS_WITHIN)]
    fits, rounds = run_rounds(fit_these, likelihoods, max_rounds=max_rounds) if fit_these else ({}, 0)
    return fits, rounds


def _continuous_row(analysis, c, o, w, entry, **options):
    method = continuous_method(**options) + FEDERATED
    if entry is None:
        return empty_row(analysis, c, o, w, "exercise", "md", method,
                         "not estimable: no trials with both arms at this window")
    fit = fit_reml(entry[0], **options)
    return result_row(analysis, c, o, w, "exercise", "md", fit.summary(), method, fit.message)


def _recovery_row(analysis, c, w, plan, fit, random_effect=True):
    method = recovery_method(random_effect) + FEDERATED
    if plan is None or fit is None:
        k, n = (len(plan.trials), plan.n) if plan else (0, 0)
        return empty_row(analysis, c, "recovered", w, "exercise", "log_or", method,
                         "not estimable: no trials, no events or one arm only at this window", k, n)
    s = fit.summary()
    s.update(n_trials=len(plan.trials), n_participants=plan.n)
    return result_row(analysis, c, "recovered", w, "exercise", "log_or", s, method, fit.message)


def _overall_rows(analysis, stats, plans, fits, combos=ALL_OVERALL, **options):
    rows = []
    for c, o, w in combos:
        if o == "recovered":
            key = logistic_key(analysis, c, w)
            rows.append(_recovery_row(analysis, c, w, plans.get(key), fits.get(key),
                                      LOGISTIC_VARIANTS.get(analysis, (None, True))[1]))
        else:
            rows.append(_continuous_row(analysis, c, o, w, stats.get(stats_key(c, o, w)), **options))
    return rows


def _by_window(rows):
    """Rows in the pooled run's order: window by window, then comparison and outcome."""
    order = {w.name: i for i, w in enumerate(WINDOWS)}
    return sorted(rows, key=lambda r: order[r["window"]])


def _summed(sites, field) -> dict:
    out: dict = {}
    for s in sites:
        for key, value in s[field].items():
            if isinstance(value, list):
                out.setdefault(key, []).extend(value)
            else:
                total = out.setdefault(key, dict.fromkeys(value, 0.0))
                for f in value:
                    total[f] += value[f]
    return out


def _recovered_modifier(c, w, cov, plan, fit, interactions):
    """Rows of one recovery interaction, and (coef, cov, df) for its curve (None if not
    estimable)."""
    varies = pd.Series(plan.varies, dtype=bool)
    if fit is None:
        return not_estimable_rows(c, "recovered", w, cov, len(plan.trials), plan.n, varies), None
    within, across, coef, cov_m = logistic_interaction(fit)
    ts = pool_per_trial(pd.DataFrame(interactions, columns=["trial_id", "estimate", "variance"]))
    rows = interaction_rows(c, "recovered", w, cov, len(plan.trials), plan.n, int(varies.sum()), within, across,
                            fit.converged, fit.message, fit.tau2, ts)
    return rows, (coef, cov_m, np.inf)


def _modifier_rows(sites, stats, plans, fits):
    """Within- and across-trial rows of every modifier (in the pooled run's order), with
    Holm-adjusted p-values, and the effect curves."""
    sums, interactions = _summed(sites, "curves"), _summed(sites, "interactions")
    _, continuous = continuous_rows(stats, modifier_note=NOT_AVAILABLE + "the non-linearity test needs the "
                                    "pooled covariate's percentiles")
    pairs: dict = {}
    for r in continuous:
        pairs.setdefault((r["comparison"], r["outcome"], r["window"], r["term"].split(":")[1]), []).append(r)
    rows, curves = [], []
    for c in COMPARISONS:
        for o in ("pain", "function", "recovered"):
            for w in WINDOWS:
                for cov in COVARIATES:
                    key = stats_key(c, o, w.name, cov)
                    if o == "recovered":
                        plan = plans.get(logistic_key("modifier", c, w.name, cov))
                        if plan is None:
                            continue
                        new, curve_fit = _recovered_modifier(c, w.name, cov, plan, fits.get(plan.key),
                                                             interactions.get(key, []))
                    else:
                        new = pairs.get((c, o, w.name, cov))
                        if new is None:
                            continue
                        estimable = int(stats[key][1].sum()) >= MIN_TRIALS_WITHIN
                        fit = fit_reml(stats[key][0]) if estimable else None
                        curve_fit = (fit.coef, fit.cov, fit.df[0]) if estimable else None
                    for r in new:
                        r["method"] += FEDERATED
                    rows += new
                    if curve_fit is not None:
                        coef, cov_m, df = curve_fit
                        curves.append(_curve(sums[key], cov, coef[:3], cov_m[:3, :3], df).assign(
                            comparison=c, outcome=o, window=w.name, covariate=cov,
                            scale="log_or" if o == "recovered" else "md"))
    table = holm_by_family(pd.DataFrame(rows, columns=MODIFIER_COLUMNS))
    return table, (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())


def _curve(agg, covariate, coef, cov, df):
    """The effect curve over the pooled mean +/- 1.645 SD (no percentiles: they would need
    pooled data), or at the two levels of a binary covariate."""
    n = agg["n"]
    xbar = agg["total"] / n
    if covariate in BINARY_COVARIATES:
        return effect_curve([0.0, 1.0], ["level"] * 2, xbar, coef, cov, df)
    sd = np.sqrt(max(agg["total_sq"] - agg["total"] ** 2 / n, 0.0) / max(n - 1, 1))
    # within what the covariate can be (a skewed one, e.g. duration, would reach below 0)
    low, high = PLAUSIBLE.get(covariate, (0.0, np.inf))
    grid = np.linspace(max(xbar - Z_90 * sd, low), min(xbar + Z_90 * sd, high), 25)
    return effect_curve(grid, ["curve"] * len(grid), xbar, coef, cov, df)


def _trial_effects(sites) -> pd.DataFrame:
    eff = pd.DataFrame([r for s in sites for r in s["two_stage"]])
    if eff.empty:
        return pd.DataFrame(columns=TRIAL_EFFECT_COLUMNS)
    order = {key: i for i, key in enumerate(sorted(ALL_OVERALL, key=lambda k: [w.name for w in WINDOWS].index(k[2])))}
    parts = []
    for key, g in eff.groupby(["comparison", "outcome", "window"], sort=False):
        parts.append((order[key], with_weights(g.sort_values("trial_id", kind="stable").reset_index(drop=True))))
    return pd.concat([p for _, p in sorted(parts, key=lambda x: x[0])], ignore_index=True)[TRIAL_EFFECT_COLUMNS]


def _sensitivity(stats, wa_stats, plans, fits, effects, low_rob):
    rows = two_stage_rows(effects)
    rows += _overall_rows("common_effect", stats, plans, fits, random_effect=False)
    rows += _overall_rows("trial_residual_variances", stats, plans, fits,
                          [r for r in ALL_OVERALL if r[1] != "recovered"], residual="trial")
    for c, o, w in PRIMARY:
        entry = stats.get(stats_key(c, o, w))
        if entry is None:
            continue
        rows += leave_out_rows(entry[0], c, o, w, FEDERATED)
    low_stats = {}
    for key, (st, varies) in stats.items():
        keep = np.isin(st.trial_ids, sorted(low_rob))
        if keep.any():
            low_stats[key] = (st.subset(keep), varies[keep])
    rows += _by_window(_overall_rows("low_risk_of_bias", low_stats, plans, fits))
    rows += _by_window(_overall_rows("window_average", wa_stats, plans, fits))
    rows += _by_window(_overall_rows("recovery_improvement", stats, plans, fits,
                                     [r for r in ALL_OVERALL if r[1] == "recovered"]))
    method = "one-stage LMM, REML, multiple imputation" + FEDERATED
    note = NOT_AVAILABLE + "imputing a covariate a trial never measured needs other trials' participants"
    for c in ("none_usual_care", "other_conservative"):
        for o in ("pain", "function"):
            for term in ["exercise"] + [f"exercise:{cov}" for cov in COVARIATES]:
                rows.append(empty_row("multiple_imputation", c, o, "short", term, "md", method, note))
    table = pd.DataFrame(rows)
    for col in SENSITIVITY_COLUMNS:
        if col not in table:
            table[col] = np.nan
    return table[SENSITIVITY_COLUMNS]


def assemble(sites: list, likelihoods, max_rounds: int = 500) -> tuple[dict, int]:
    """Every results table from the sites' first-round answers; ``likelihoods(requests)``
    runs one round of the mixed logistic fits. Returns ({name: table}, rounds)."""
    stats = _stats(sites, "overall")
    stats.update(_stats(sites, "modifier"))
    wa_stats = _stats(sites, "window_average")
    plans = {p.key: p for p in _plans(sites)}
    fits, rounds = _fit_or_skip(list(plans.values()), likelihoods, max_rounds)
    estimates = pd.DataFrame(_by_window(_overall_rows("overall", stats, plans, fits)), columns=RESULT_COLUMNS)
    estimates = estimates.set_index(["comparison", "outcome", "window"]).loc[
        [(c, o, w) for c, o, w in ALL_OVERALL]].reset_index()[RESULT_COLUMNS]
    modifiers, curves = _modifier_rows(sites, stats, plans, fits)
    effects = _trial_effects(sites)
    trials = _frame(sites, "trials").sort_values("trial_id", kind="stable")
    low_rob = set(trials.loc[trials.risk_of_bias == "low", "trial_id"].astype(str))
    sensitivity = _sensitivity(stats, wa_stats, plans, fits, effects, low_rob)
    baseline = baseline_summary(_frame(sites, "baseline").reindex(columns=AGGREGATE_COLUMNS))
    refused = pd.DataFrame([dict(r, site=s["site"]) for s in sites for r in s["refused"]],
                           columns=["site", "trial_id", "analysis", "reason"])
    tables = {
        "estimates": estimates, "modifiers": modifiers, "modifier_effects": curves, "trial_effects": effects,
        "heterogeneity": heterogeneity(effects), "sensitivity": sensitivity,
        "influence": influence_summary(sensitivity, estimates),
        "covariate_availability": _frame(sites, "availability").sort_values(["trial_id"], kind="stable"),
        "baseline": baseline, "reference_checks": reference_estimates(), "disclosure": refused,
        "derived/flow": _frame(sites, "flow").sort_values("trial_id", kind="stable"), "derived/trials": trials,
        "derived/harmonisation_log": _frame(sites, "harmonisation_log"), "derived/instruments": instruments_table(),
    }
    return tables, rounds
