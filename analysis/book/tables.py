"""The book's tables as great_tables GT objects (they render natively in HTML, Typst and
Word), each built from a plain DataFrame that the snapshot tests check (``*_data``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from great_tables import GT, loc, style

from analysis.book.report import (
    COMPARISON_LABEL,
    COVARIATE_LABEL,
    OUTCOME_LABEL,
    Report,
)
from analysis.settings import BINARY_COVARIATES, COVARIATES

__all__ = ["instrument_table", "trial_characteristics", "baseline_by_arm_data", "baseline_by_arm",
           "overall_summary_data", "overall_summary", "modifier_table_data", "modifier_table",
           "flow_table", "exclusion_reasons", "SMALL_CELL"]

SMALL_CELL = 5  # counts below this are suppressed in descriptive tables (privacy)
ARM_LABEL = {"exercise": "Exercise", "none_usual_care": "No treatment/usual care",
             "other_conservative": "Other conservative"}


def _gt(df, title, subtitle=None, source=None):
    g = GT(df).tab_header(title=title, subtitle=subtitle).sub_missing(missing_text="–")
    g = g.tab_options(table_font_size="10pt", heading_title_font_size="12pt", column_labels_font_weight="bold")
    return g.tab_source_note(source) if source else g


def instrument_table(rep: Report) -> GT:
    df = pd.DataFrame([{"Instrument": i.label, "Outcome": i.domain, "Raw range": f"{i.low:g}-{i.high:g}",
                        "Higher raw score": "worse" if i.higher_is_worse else "better",
                        "Rescaling to 0-100 (higher = worse)": (f"100 × x / {i.high - i.low:g}" if i.higher_is_worse
                                                                 else f"100 × ({i.high:g} − x) / {i.high - i.low:g}")}
                       for i in rep.instruments.itertuples()])
    return _gt(df, "Outcome instruments and their harmonisation")


def trial_characteristics(rep: Report) -> GT:
    t = rep.trials.merge(rep.flow[["trial_id", "analysed_short", "analysed_moderate", "analysed_long"]], on="trial_id")
    label = rep.instruments.set_index("name").label
    rob = {"low": "Low", "some_concerns": "Some concerns", "high": "High"}
    df = pd.DataFrame({
        "Trial": t.trial_id, "Setting": t.setting.str.capitalize(), "Arms": t.arms,
        "Comparison": t.comparisons.map(lambda s: "; ".join(COMPARISON_LABEL[c] for c in s.split("; "))),
        "Received": t.received, "Analysed": t.analysed,
        "Pain": t.pain_instrument.map(lambda n: label[n].split(",")[0]),
        "Function": t.function_instrument.map(lambda n: label[n].split(",")[0].replace("Questionnaire", "Q.")),
        "Follow-up (months)": t.followup_months.str.replace(";", ","),
        "Risk of bias": t.risk_of_bias.map(rob),
    })
    return _gt(
        df,
        "Characteristics of the included trials",
        source="Setting is a placeholder for the trial's country and setting. Received and analysed are participants.",
    )


def _summ_continuous(x):
    x = x.dropna()
    return f"{x.mean():.1f} ({x.std(ddof=1):.1f})" if len(x) >= SMALL_CELL else ("<5 measured" if len(x) else "–")


def _summ_binary(x):
    x = x.dropna()
    if not len(x):
        return "–"
    k = int(x.sum())
    if k < SMALL_CELL or len(x) - k < SMALL_CELL:  # the complement would reveal a small cell
        return f"suppressed (<{SMALL_CELL})"
    return f"{k} ({100 * k / len(x):.0f}%)"


def _count(k, n):
    if 0 < k < SMALL_CELL:
        return f"<{SMALL_CELL}"
    return f"{k} ({100 * k / max(n, 1):.0f}%)"


def baseline_by_arm_data(rep: Report) -> pd.DataFrame:
    """Mean (SD) or n (%), and the number missing, by arm type; small cells suppressed."""
    p = rep.participants
    rows = []
    for cov in COVARIATES:
        row = {"Characteristic": COVARIATE_LABEL[cov] + (", n (%)" if cov in BINARY_COVARIATES else ", mean (SD)")}
        for arm, label in ARM_LABEL.items():
            x = p.loc[p.comparison == arm, cov]
            row[label] = _summ_binary(x) if cov in BINARY_COVARIATES else _summ_continuous(x)
            row[f"{label} missing"] = _count(int(x.isna().sum()), len(x))
        rows.append(row)
    n_row = {"Characteristic": "Participants, n"}
    for arm, label in ARM_LABEL.items():
        n_row[label] = str(int((p.comparison == arm).sum()))
        n_row[f"{label} missing"] = ""
    return pd.DataFrame([n_row] + rows)


def baseline_by_arm(rep: Report) -> GT:
    df = baseline_by_arm_data(rep)
    g = _gt(
        df,
        "Baseline characteristics by arm",
        "Analysed participants; covariates a trial did not measure count as missing",
        source=f"Counts below {SMALL_CELL} are suppressed.",
    )
    for label in ARM_LABEL.values():
        g = g.tab_spanner(label=label, columns=[label, f"{label} missing"]).cols_label(
            **{label: "Value", f"{label} missing": "Missing"}
        )
    return g


def overall_summary_data(rep: Report, outcomes=("pain", "function")) -> pd.DataFrame:
    e = rep.estimates
    e = e[e.outcome.isin(outcomes)].copy()
    e["Comparison"] = e.comparison.map(COMPARISON_LABEL)
    e["Outcome"] = e.outcome.map(OUTCOME_LABEL)
    e["Window"] = e.window
    if "recovered" in outcomes:
        for c in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high"):
            e[c] = np.where(e.scale == "log_or", np.exp(e[c]), e[c])
    cols = {"Comparison": "Comparison", "Outcome": "Outcome", "Window": "Window", "n_trials": "Trials",
            "n_participants": "Participants", "estimate": "Estimate", "ci_low": "CI low", "ci_high": "CI high",
            "df": "df", "p": "p", "tau2": "tau²", "pi_low": "PI low", "pi_high": "PI high"}
    return e[list(cols)].rename(columns=cols).reset_index(drop=True)


def overall_summary(rep: Report, outcomes=("pain", "function"), title=None) -> GT:
    df = overall_summary_data(rep, outcomes)
    odds = "recovered" in outcomes
    g = _gt(
        df,
        title
        or (
            "Global recovery: odds ratios (exercise vs comparison)"
            if odds
            else "Overall effect of exercise on pain and functional limitation (0-100, negative favours exercise)"
        ),
        "One-stage models; 95% confidence and prediction intervals",
        source=(
            "Mixed logistic model, maximum likelihood with adaptive Gauss-Hermite quadrature; z-based CI."
            if odds
            else "Linear mixed model, REML, t-based CI with Satterthwaite df; prediction interval with t(k − 2)."
        ),
    )
    g = g.fmt_number(columns=["Estimate", "CI low", "CI high", "PI low", "PI high"], decimals=2 if odds else 1)
    g = g.fmt_number(columns=["df", "tau²"], decimals=1).fmt_number(columns=["p"], decimals=3)
    g = g.tab_spanner("95% CI", ["CI low", "CI high"]).tab_spanner("95% PI", ["PI low", "PI high"])
    return g.cols_hide(["df"]) if odds else g


def modifier_table_data(
    rep: Report, comparison="none_usual_care", window="short", outcomes=("pain", "function")
) -> pd.DataFrame:
    m = rep.modifiers
    m = m[(m.comparison == comparison) & (m.window == window) & m.outcome.isin(outcomes)]
    within = m[~m.term.str.endswith(":across")].copy()
    across = m[m.term.str.endswith(":across")].copy()
    within["covariate"] = within.term.str.split(":").str[1]
    across["covariate"] = across.term.str.split(":").str[1]
    df = within.merge(
        across[["outcome", "covariate", "estimate", "se"]], on=["outcome", "covariate"], suffixes=("", "_across")
    )
    out = pd.DataFrame({
        "Outcome": df.outcome.map(OUTCOME_LABEL), "Covariate": df.covariate.map(COVARIATE_LABEL),
        "Trials": df.n_trials, "Participants": df.n_participants, "Within": df.estimate,
        "CI low": df.ci_low, "CI high": df.ci_high, "p": df.p, "p (Holm)": df.p_adjusted,
        "Across": df.estimate_across, "Two-stage": df.two_stage_estimate,
        "Non-linearity p": df.nonlinearity_p,
    })
    return out.reset_index(drop=True)


def modifier_table(rep: Report, comparison="none_usual_care", window="short", outcomes=("pain", "function")) -> GT:
    df = modifier_table_data(rep, comparison, window, outcomes)
    g = _gt(
        df,
        f"Treatment-effect modifiers versus {COMPARISON_LABEL[comparison]}, {window} term",
        "Within-trial interactions (change in the exercise effect per unit of the covariate); "
        "across-trial terms shown separately",
        source="Within: one-stage model with the covariate centred at each trial's mean; "
        "Across: exercise × trial-mean term "
        "(ecological, not a modifier estimate); Two-stage: per-trial estimates pooled by REML; p (Holm) adjusts the "
        "ten prespecified covariates within each outcome.",
    )
    g = g.fmt_number(columns=["Within", "CI low", "CI high", "Across", "Two-stage"], decimals=2)
    g = g.fmt_number(columns=["p", "p (Holm)", "Non-linearity p"], decimals=3)
    g = g.tab_spanner("95% CI", ["CI low", "CI high"])
    return g.tab_style(
        style=style.text(weight="bold"), locations=loc.body(rows=list(np.flatnonzero(df["p (Holm)"] < 0.05)))
    )


def flow_table(rep: Report) -> GT:
    f = rep.flow
    df = f[
        ["trial_id", "received", "excluded", "analysed", "analysed_short", "analysed_moderate", "analysed_long"]
    ].rename(
        columns={
            "trial_id": "Trial",
            "received": "Received",
            "excluded": "Excluded",
            "analysed": "Analysed",
            "analysed_short": "Short",
            "analysed_moderate": "Moderate",
            "analysed_long": "Long",
        }
    )
    g = _gt(df, "Participants received, excluded and analysed per trial and follow-up window")
    return g.tab_spanner("Analysed with outcome data", ["Short", "Moderate", "Long"])


def exclusion_reasons(rep: Report) -> GT:
    ex = rep.exclusions
    ex = ex.assign(reason_code=ex.reason.str.split(":").str[0])
    df = ex.groupby(["trial_id", "reason_code"]).size().rename("Records").reset_index().rename(
        columns={"trial_id": "Trial", "reason_code": "Reason"})
    return _gt(
        df,
        "Raw records excluded, by trial and reason",
        source="Each record is listed with its source row in data/derived/exclusions.csv.",
    )


SENSITIVITY_LABEL = {
    "overall": "Primary: one-stage REML, Satterthwaite",
    "two_stage_reml": "Two-stage, REML, Hartung-Knapp",
    "two_stage_dl": "Two-stage, DerSimonian-Laird, Hartung-Knapp",
    "two_stage_pm": "Two-stage, Paule-Mandel, Hartung-Knapp",
    "common_effect": "Common effect (no random exercise effect)",
    "trial_residual_variances": "Trial-specific residual variances",
    "low_risk_of_bias": "Low risk-of-bias trials only",
    "window_average": "All follow-ups in the window averaged",
    "multiple_imputation": "Multiple imputation (m = 20)",
}


def sensitivity_comparison_data(rep: Report, window="short") -> pd.DataFrame:
    """Primary results next to each sensitivity analysis (and the leave-one-out range)."""
    e, s = rep.estimates, rep.sensitivity
    both = pd.concat([e.assign(fmi=np.nan), s], ignore_index=True)
    both = both[(both.window == window) & (both.term == "exercise") & both.outcome.isin(["pain", "function"])
                & both.comparison.isin(["none_usual_care", "other_conservative"])]
    rows = []
    for (c, o), g in both.groupby(["comparison", "outcome"], sort=False):
        for name, label in SENSITIVITY_LABEL.items():
            r = g[g.analysis == name]
            if r.empty:
                continue
            r = r.iloc[0]
            rows.append({"Comparison": COMPARISON_LABEL[c], "Outcome": OUTCOME_LABEL[o], "Analysis": label,
                         "Trials": r.n_trials, "Estimate": r.estimate, "CI low": r.ci_low, "CI high": r.ci_high,
                         "tau²": r.tau2})
        loo = g[g.analysis.str.startswith("leave_out:")]
        if len(loo):
            rows.append(
                {
                    "Comparison": COMPARISON_LABEL[c],
                    "Outcome": OUTCOME_LABEL[o],
                    "Analysis": "Leave one trial out: range of estimates",
                    "Trials": loo.n_trials.min(),
                    "Estimate": np.nan,
                    "CI low": loo.estimate.min(),
                    "CI high": loo.estimate.max(),
                    "tau²": np.nan,
                }
            )
    return pd.DataFrame(rows)


def sensitivity_comparison(rep: Report, window="short") -> GT:
    df = sensitivity_comparison_data(rep, window)
    g = _gt(df, f"Primary and sensitivity analyses, {window} term (mean difference, 0-100)",
            source="For leave-one-out, the two interval columns give the smallest and largest estimate.")
    g = g.fmt_number(columns=["Estimate", "CI low", "CI high", "tau²"], decimals=1).tab_spanner(
        "95% CI", ["CI low", "CI high"]
    )
    return g


def mi_modifier_data(rep: Report, window="short") -> pd.DataFrame:
    m, s = rep.modifiers, rep.sensitivity
    mi = s[(s.analysis == "multiple_imputation") & (s.term != "exercise") & (s.window == window)]
    cc = m[(m.window == window) & m.term.isin(mi.term.unique())]
    keep = ["comparison", "outcome", "term", "n_trials", "estimate", "ci_low", "ci_high"]
    df = mi[keep + ["fmi"]].merge(cc[keep], on=["comparison", "outcome", "term"], suffixes=("_mi", "_cc"))
    return pd.DataFrame(
        {
            "Comparison": df.comparison.map(COMPARISON_LABEL),
            "Outcome": df.outcome.map(OUTCOME_LABEL),
            "Covariate": df.term.str.split(":").str[1].map(COVARIATE_LABEL),
            "CC trials": df.n_trials_cc,
            "CC estimate": df.estimate_cc,
            "CC CI low": df.ci_low_cc,
            "CC CI high": df.ci_high_cc,
            "MI trials": df.n_trials_mi,
            "MI estimate": df.estimate_mi,
            "MI CI low": df.ci_low_mi,
            "MI CI high": df.ci_high_mi,
            "FMI": df.fmi,
        }
    )


def mi_modifiers(rep: Report, window="short") -> GT:
    df = mi_modifier_data(rep, window)
    g = _gt(
        df,
        "Within-trial interactions: complete cases (CC) and multiple imputation (MI)",
        source="MI: 20 imputations by chained equations within trials, covariates a trial never measured drawn with a "
        "random trial intercept; Rubin's rules with Barnard-Rubin df. FMI: fraction of missing information.",
    )
    g = g.fmt_number(columns=[c for c in df.columns if "estimate" in c or "CI" in c], decimals=2).fmt_number(
        columns=["FMI"], decimals=2
    )
    return g.tab_spanner("Complete cases", ["CC trials", "CC estimate", "CC CI low", "CC CI high"]).tab_spanner(
        "Multiple imputation", ["MI trials", "MI estimate", "MI CI low", "MI CI high", "FMI"])


def model_notes_data(rep: Report) -> pd.DataFrame:
    """Every flagged model fit (boundary variance, not estimable, not converged, separation),
    counted by kind and results file, with an example."""
    frames = []
    for name, df in (("estimates", rep.estimates), ("modifiers", rep.modifiers), ("sensitivity", rep.sensitivity)):
        if df is None:
            continue
        d = df[
            df.note.notna()
            & (df.note != "")
            & ~df.note.str.startswith(("across-trial", "I²", "fraction", "common-effect model"))
        ]
        d = d.assign(file=name)
        frames.append(d)
    notes = pd.concat(frames, ignore_index=True)
    kinds = {"boundary": "tau² at the boundary (0)", "not estimable": "not estimable",
             "separation": "separation in a trial (its own slope infinite)",
             "without variation": "trials without events set aside", "fewer than": "too few trials for tau²"}
    rows = []
    for key, label in kinds.items():
        hit = notes[notes.note.str.contains(key)]
        for f, g in hit.groupby("file"):
            ex = g.iloc[0]
            rows.append({"Issue": label, "Results file": f, "Fits": len(g),
                         "Example": f"{ex.analysis}, {ex.comparison}, {ex.outcome}, {ex.window}, {ex.term}"})
    failed = [(n, df) for n, df in (("estimates", rep.estimates), ("modifiers", rep.modifiers),
                                    ("sensitivity", rep.sensitivity)) if df is not None]
    for f, df in failed:
        bad = df[(df.converged == False) & df.estimate.notna()]  # noqa: E712
        if len(bad):
            rows.append({"Issue": "optimiser did not converge", "Results file": f, "Fits": len(bad),
                         "Example": f"{bad.iloc[0].analysis}, {bad.iloc[0].term}"})
    return pd.DataFrame(rows, columns=["Issue", "Results file", "Fits", "Example"])


def model_notes(rep: Report) -> GT:
    return _gt(model_notes_data(rep), "Flagged model fits",
               source="Each flagged fit carries its note in the 'note' column of its results file.")
