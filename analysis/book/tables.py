"""The book's tables as great_tables GT objects, in journal form: each label shown once (row
groups), spanners over related columns, estimates with their 95% CI in one cell, p as
<0.001, sensible digits, no title inside the table (the Quarto caption is the title) and a
note that says how. They render natively in HTML, Typst and Word.

Each table is built from a plain DataFrame of display strings (``*_data``), which the
snapshot tests check.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from great_tables import GT, html, loc, style

from analysis.book.report import COMPARISON_LABEL, COVARIATE_LABEL, OUTCOME_LABEL, Report, fmt, fmt_p, reason_label
from analysis.settings import BINARY_COVARIATES, COVARIATES, WINDOWS

__all__ = ["instrument_table", "trial_characteristics", "baseline_by_arm_data", "baseline_by_arm",
           "overall_summary_data", "overall_summary", "modifier_table_data", "modifier_table",
           "flow_table", "exclusion_table_data", "exclusion_table", "value_issue_table_data", "value_issue_table",
           "sensitivity_comparison_data",
           "sensitivity_comparison", "mi_modifier_data", "mi_modifiers", "model_notes_data", "model_notes",
           "recoding_table_data", "recoding_table", "reference_table", "truth_table", "packages_table",
           "checksums_table", "benchmarks_table", "SMALL_CELL"]

SMALL_CELL = 5  # counts below this are suppressed in descriptive tables (privacy)
ARM_LABEL = {"exercise": "Exercise", "none_usual_care": "No treatment/usual care",
             "other_conservative": "Other conservative"}
WINDOW_LABEL = {w.name: f"{w.name.capitalize()} term" for w in WINDOWS}
DASH = "–"
# sans-serif faces, the first available used; Libertinus Serif (bundled with Typst) guarantees the
# PDF a known font on any machine, so Typst never falls back with a warning
TABLE_FONTS = ["Liberation Sans", "Helvetica Neue", "Arial", "DejaVu Sans", "Libertinus Serif"]


_MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


def _text(s: str) -> str:
    """Cell text as HTML that every output format reads alike. great_tables escapes cell text
    to entities (``&lt;0.001``), and Quarto 1.10's HTML-to-Typst step prints entities literally,
    so text is passed through raw; only a '<' or '&' that could start markup is escaped."""
    return _MARKUP.sub(lambda m: "&lt;" if m.group() == "<" else "&amp;", str(s))


_NUMBER = re.compile(r"^\s*(?:[−\-<]?\d|–$|not run$)")


def _looks_numeric(col: pd.Series) -> bool:
    """Numbers, estimates with CIs and p values are set right-aligned, as journals do."""
    values = col.dropna().astype(str)
    values = values[values != ""]
    return len(values) > 0 and values.str.match(_NUMBER).mean() >= 0.8


def _auto_widths(df: pd.DataFrame, groups: str | None) -> dict:
    """Column widths in proportion to each column's longest entry (capped: long text wraps),
    so that every format, Word included, gives wide content the room and narrow numbers less."""
    need = {}
    for c in df.columns:
        if c == groups:
            continue
        longest_word = max((len(w) for w in str(c).split()), default=1)
        values = df[c].dropna().astype(str)
        need[c] = min(max(longest_word + 1, values.str.len().max() if len(values) else 1, 4), 40)
    total = sum(need.values())
    return {c: f"{100 * n / total:.1f}%" for c, n in need.items()}


def _gt(df: pd.DataFrame, note: str | None = None, *, groups: str | None = None, stub: str | None = None,
        font: str = "9pt", widths: dict | None = None) -> GT:
    """The house table: no title (the Quarto caption is the title), bold column labels,
    row groups from ``groups``, a stub column, a dash for missing values and a note."""
    df = df.astype({c: object for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])})
    for c in (groups, stub):  # labels great_tables always escapes: typographic quotes need no escaping
        if c is not None:
            df[c] = df[c].astype(str).str.replace("'", "’")
    text_columns = [c for c in df.columns if df[c].dtype == object and c not in (groups, stub)]
    g = GT(df, groupname_col=groups, rowname_col=stub).sub_missing(missing_text=DASH)
    if text_columns:
        g = g.fmt(_text, columns=text_columns)
    numeric = [c for c in df.columns if c not in (groups, stub) and _looks_numeric(df[c])]
    if numeric:
        g = g.cols_align("right", columns=numeric)
    # every weight named: great_tables' default "initial" (= normal) is not a weight Quarto's
    # Typst translation knows, and it says so once per table
    g = g.tab_options(table_font_size=font, column_labels_font_weight="bold", row_group_font_weight="bold",
                      heading_title_font_weight="normal", heading_subtitle_font_weight="normal",
                      stub_font_weight="normal", stub_row_group_font_weight="normal", data_row_padding="2px",
                      row_group_padding="3px", source_notes_font_size="8pt", table_width="100%",
                      table_layout="auto", table_font_names=TABLE_FONTS)
    g = g.cols_width(widths or _auto_widths(df, groups))
    return g.tab_source_note(html(_text(note))) if note else g


def _est_ci(est, low, high, digits=1, transform=None) -> str:
    """'−10.2 (−12.7 to −7.8)': an estimate with its 95% CI in one cell."""
    if not np.isfinite(est):
        return DASH
    if transform is not None:
        est, low, high = transform(est), transform(low), transform(high)
    return f"{fmt(est, digits)} ({fmt(low, digits)} to {fmt(high, digits)})"


def _range(low, high, digits=1) -> str:
    return f"{fmt(low, digits)} to {fmt(high, digits)}" if np.isfinite(low) else DASH


def _num(x, digits=1) -> str:
    return fmt(x, digits) if x is not None and np.isfinite(x) else DASH


# ----------------------------------------------------------------------------- methods, descriptives


def instrument_table(rep: Report) -> GT:
    df = pd.DataFrame([{
        "Outcome": "Pain" if i.domain == "pain" else "Functional limitation",
        "Instrument": i.label.rsplit(",", 1)[0], "Abbreviation": i.short, "Raw range": f"{i.low:g}-{i.high:g}",
        "Higher raw score": "worse" if i.higher_is_worse else "better",
        "Rescaled to 0-100 (higher = worse)": (f"100 × x / {i.high - i.low:g}" if i.higher_is_worse
                                              else f"100 × ({i.high:g} − x) / {i.high - i.low:g}")}
        for i in rep.instruments.itertuples()])
    return _gt(df, groups="Outcome")


def trial_characteristics(rep: Report) -> GT:
    t = rep.trials
    short = rep.instruments.set_index("name").short
    rob = {"low": "Low", "some_concerns": "Some concerns", "high": "High"}
    comparison = {"none_usual_care": "NUC", "other_conservative": "OC"}
    df = pd.DataFrame({
        "Trial": t.trial_id, "Setting": t.setting.str.capitalize(), "Arms": t.arms.str.replace("; ", ", "),
        "Comparison": t.comparisons.map(lambda s: ", ".join(comparison[c] for c in s.split("; "))),
        "Received": t.received, "Analysed": t.analysed,
        "Pain": t.pain_instrument.map(short), "Function": t.function_instrument.map(short),
        "Follow-up (months)": t.followup_months.str.replace(";", ","),
        "Risk of bias": t.risk_of_bias.map(rob),
    })
    note = ("NUC: no treatment/usual care; OC: other conservative treatment. Received: randomised participants in "
            "the trial file; analysed: in the master data. Instruments: see the methods. The setting stands in "
            "for each trial’s country and setting.")
    g = _gt(df, note, font="8.5pt", widths={"Trial": "5%", "Setting": "16%", "Arms": "20%", "Comparison": "8%",
                                            "Received": "7%", "Analysed": "7%", "Pain": "8%", "Function": "8%",
                                            "Follow-up (months)": "10%", "Risk of bias": "11%"})
    return g.tab_spanner("Participants", ["Received", "Analysed"]).tab_spanner("Instrument", ["Pain", "Function"])


def _summ_continuous(r):
    if r.n_measured >= SMALL_CELL:
        return f"{r['mean']:.1f} ({r.sd:.1f})"
    return "<5 measured" if r.n_measured else DASH


def _summ_binary(r):
    if not r.n_measured:
        return DASH
    k = int(round(r.ones))
    if k < SMALL_CELL or r.n_measured - k < SMALL_CELL:  # the complement would reveal a small cell
        return f"suppressed (<{SMALL_CELL})"
    return f"{k} ({100 * k / r.n_measured:.0f}%)"


def _count(k, n):
    if 0 < k < SMALL_CELL:
        return f"<{SMALL_CELL}"
    return f"{k} ({100 * k / max(n, 1):.0f}%)"


def baseline_by_arm_data(rep: Report) -> pd.DataFrame:
    """Mean (SD) or n (%), and the number missing, by arm type (from results/baseline.csv:
    sums over trials, the same in a pooled and a federated run); small cells suppressed."""
    b = rep.baseline.set_index(["arm", "covariate"])
    rows = []
    for cov in COVARIATES:
        row = {"Characteristic": COVARIATE_LABEL[cov] + (", n (%)" if cov in BINARY_COVARIATES else ", mean (SD)")}
        for arm, label in ARM_LABEL.items():
            if (arm, cov) not in b.index:
                row[label], row[f"{label} missing"] = DASH, ""
                continue
            r = b.loc[(arm, cov)]
            row[label] = _summ_binary(r) if cov in BINARY_COVARIATES else _summ_continuous(r)
            row[f"{label} missing"] = _count(int(r.n_missing), int(r.n))
        rows.append(row)
    n_row = {"Characteristic": "Participants, n"}
    sizes = rep.baseline.groupby("arm").n.max()
    for arm, label in ARM_LABEL.items():
        n_row[label] = str(int(sizes.get(arm, 0)))
        n_row[f"{label} missing"] = ""
    return pd.DataFrame([n_row] + rows)


def baseline_by_arm(rep: Report) -> GT:
    df = baseline_by_arm_data(rep)
    g = _gt(df, f"Participants in the master data. Missing includes covariates a trial did not measure. Counts "
                f"below {SMALL_CELL} are suppressed.", stub="Characteristic",
            widths={"Characteristic": "28%", **{c: "12%" for c in df.columns[1:]}})
    for label in ARM_LABEL.values():
        g = g.tab_spanner(label=label, columns=[label, f"{label} missing"]).cols_label(
            **{label: "Value", f"{label} missing": "Missing"})
    return g


def flow_table(rep: Report) -> GT:
    f = rep.flow
    df = f[["trial_id", "received", "excluded", "analysed", "values_set_missing", "analysed_short",
            "analysed_moderate", "analysed_long"]].rename(
        columns={"trial_id": "Trial", "received": "Received", "excluded": "Excluded", "analysed": "Master data",
                 "values_set_missing": "Values set missing", "analysed_short": "Short",
                 "analysed_moderate": "Moderate", "analysed_long": "Long"})
    g = _gt(df, "Received: participant records in the trial’s tables. Excluded: records whose participant or arm is "
                "unknown. Values set missing: single values that could not be used, the participant kept.",
            widths={"Trial": "9%", **{c: "13%" for c in df.columns[1:]}})
    return g.tab_spanner("With outcome data", ["Short", "Moderate", "Long"])


def _by_trial_and_reason(flow: pd.DataFrame, prefix: str, extra: dict | None = None) -> pd.DataFrame:
    """Counts per trial (rows) and reason (columns, from flow.csv's ``<prefix><reason>``
    columns), with a total; trials and reasons without any are left out."""
    cols = [c for c in flow.columns if c.startswith(prefix) and flow[c].sum() > 0]
    table = flow.set_index("trial_id")[cols].rename(columns=lambda c: reason_label(c.removeprefix(prefix)))
    for name, col in (extra or {}).items():
        if col in flow and flow[col].sum() > 0:
            table[name] = flow.set_index("trial_id")[col]
    table.columns = [c[0].upper() + c[1:] for c in table.columns]
    table["All"] = table.sum(axis=1)
    table = table[table.All > 0]
    return table.reset_index().rename(columns={"trial_id": "Trial"}).astype({c: int for c in table.columns})


def exclusion_table_data(rep: Report) -> pd.DataFrame:
    """Participants excluded per trial (rows) and reason (columns)."""
    return _by_trial_and_reason(rep.flow, "excluded_")


def exclusion_table(rep: Report) -> GT:
    df = exclusion_table_data(rep)
    g = _gt(df, "Participants whose identity or arm is unknown, and records that are no randomised participant’s. "
                "Each raw record is listed with its source file, row and reason in data/derived/exclusions.csv "
                "(at the trial’s site in a federated analysis).")
    return g.sub_zero(zero_text="")


def value_issue_table_data(rep: Report) -> pd.DataFrame:
    """Values set missing per trial and reason, and visit records outside every window."""
    return _by_trial_and_reason(rep.flow, "missing_", {"follow-up outside windows": "records_outside_windows"})


def value_issue_table(rep: Report) -> GT:
    df = value_issue_table_data(rep)
    g = _gt(df, "The participant stays in the master data; only the value is missing. Each is listed with its file, "
                "row, column and raw value in data/derived/value_issues.csv (at the trial’s site in a federated "
                "analysis).", font="8pt")
    return g.sub_zero(zero_text="")


# ----------------------------------------------------------------------------- overall effects


def _scale_rows(e: pd.DataFrame) -> pd.DataFrame:
    """Display columns of results rows: mean differences (1 decimal) or, for log odds ratios,
    odds ratios (2 decimals)."""
    rows = []
    for r in e.itertuples():
        log = r.scale == "log_or"
        tr, digits = (np.exp, 2) if log else ((lambda v: v), 1)
        rows.append({"Trials": _int(r.n_trials), "Participants": _int(r.n_participants),
                     "Effect (95% CI)": _est_ci(r.estimate, r.ci_low, r.ci_high, digits, tr if log else None),
                     "p": fmt_p(r.p), "τ²": _num(r.tau2, 3 if log else 1),
                     "95% PI": _range(tr(r.pi_low), tr(r.pi_high), digits)})
    return pd.DataFrame(rows, columns=["Trials", "Participants", "Effect (95% CI)", "p", "τ²", "95% PI"])


def overall_summary_data(rep: Report, outcomes=("pain", "function")) -> pd.DataFrame:
    """One row per comparison, outcome and window: trials, participants, the effect with its
    CI, p, tau² and the prediction interval (odds ratios for recovery)."""
    e = rep.estimates
    e = e[e.outcome.isin(outcomes)].reset_index(drop=True)
    df = _scale_rows(e)
    df.insert(0, "Window", e.window.map(WINDOW_LABEL))
    if len(outcomes) > 1:
        df.insert(0, "Outcome", e.outcome.map(OUTCOME_LABEL).str.capitalize())
    df.insert(0, "Comparison", "Exercise vs " + e.comparison.map(COMPARISON_LABEL))
    return df


def overall_summary(rep: Report, outcomes=("pain", "function")) -> GT:
    df = overall_summary_data(rep, outcomes)
    odds = set(outcomes) == {"recovered"}
    if "Outcome" in df:
        df["Window"] = df.Outcome + ", " + df.Window.str.lower()
        df = df.drop(columns="Outcome")
    note = ("Odds ratios of global recovery, exercise vs comparison (above 1 favours exercise): one-stage mixed "
            "logistic model, maximum likelihood with adaptive Gauss-Hermite quadrature; Wald (z) CI and p." if odds
            else "Mean differences on the 0-100 scale, exercise minus comparison (negative favours exercise): "
                 "one-stage linear mixed model, REML; t-based CI and p with Satterthwaite df.")
    note += " τ²: between-trial variance of the exercise effect. PI: 95% prediction interval for a new trial."
    return _gt(df, note, groups="Comparison", stub="Window",
               widths={"Window": "21%", "Trials": "7%", "Participants": "13%", "Effect (95% CI)": "25%", "p": "8%",
                       "τ²": "8%", "95% PI": "18%"})


# ----------------------------------------------------------------------------- modifiers


def modifier_table_data(rep: Report, comparison="none_usual_care", window="short",
                        outcomes=("pain", "function")) -> pd.DataFrame:
    m = rep.modifiers
    m = m[(m.comparison == comparison) & (m.window == window) & m.outcome.isin(outcomes)]
    within = m[~m.term.str.endswith(":across")].copy()
    across = m[m.term.str.endswith(":across")].copy()
    within["covariate"] = within.term.str.split(":").str[1]
    across["covariate"] = across.term.str.split(":").str[1]
    df = within.merge(across[["outcome", "covariate", "estimate", "ci_low", "ci_high"]], on=["outcome", "covariate"],
                      suffixes=("", "_across")).reset_index(drop=True)
    return pd.DataFrame({
        "Outcome": df.outcome.map(OUTCOME_LABEL).str.capitalize(),
        "Covariate": df.covariate.map(COVARIATE_LABEL),
        "Trials": df.n_trials.astype("Int64"), "Participants": df.n_participants.astype("Int64"),
        "Within-trial (95% CI)": [_est_ci(r.estimate, r.ci_low, r.ci_high, 2) for r in df.itertuples()],
        "p": df.p.map(fmt_p), "p (Holm)": df.p_adjusted.map(fmt_p),
        "Across-trial (95% CI)": [_est_ci(r.estimate_across, r.ci_low_across, r.ci_high_across, 2)
                                  for r in df.itertuples()],
        "Two-stage": df.two_stage_estimate.map(lambda v: _num(v, 2)),
        "Non-linearity p": df.nonlinearity_p.map(fmt_p),
        "_holm": df.p_adjusted,
    })


def modifier_table(rep: Report, comparison="none_usual_care", window="short", outcomes=("pain", "function")) -> GT:
    df = modifier_table_data(rep, comparison, window, outcomes)
    significant = list(np.flatnonzero(df["_holm"].to_numpy() < 0.05))
    df = df.drop(columns="_holm")
    note = ("Change in the exercise effect (0-100 scale) per unit of the covariate (binary: yes vs no). Within-trial: "
            "one-stage model with the covariate centred at each trial’s mean (the modifier estimate). Across-trial: "
            "exercise × trial mean, which reflects differences between trials and is not a modifier estimate. "
            "Two-stage: per-trial interactions pooled by REML. p (Holm): adjusted for the ten prespecified "
            "covariates within each outcome. Non-linearity p: restricted cubic spline likelihood-ratio test. "
            "Bold: Holm-adjusted p < 0.05.")
    g = _gt(df, note, groups="Outcome", stub="Covariate", font="8.5pt",
            widths={"Covariate": "22%", "Trials": "6%", "Participants": "9%", "Within-trial (95% CI)": "17%",
                    "p": "6%", "p (Holm)": "7%", "Across-trial (95% CI)": "17%", "Two-stage": "7%",
                    "Non-linearity p": "9%"})
    g = g.tab_spanner("Interaction", ["Within-trial (95% CI)", "p", "p (Holm)"])
    if significant:
        g = g.tab_style(style=style.text(weight="bold"), locations=loc.body(rows=significant))
    return g


# ----------------------------------------------------------------------------- sensitivity

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
        group = f"{OUTCOME_LABEL[o].capitalize()}, exercise vs {COMPARISON_LABEL[c]}"
        for name, label in SENSITIVITY_LABEL.items():
            r = g[g.analysis == name]
            if r.empty:
                continue
            r = r.iloc[0]
            rows.append({"Result": group, "Analysis": label, "Trials": _int(r.n_trials),
                         "Mean difference (95% CI)": _est_ci(r.estimate, r.ci_low, r.ci_high),
                         "τ²": _num(r.tau2)})
        loo = g[g.analysis.str.startswith("leave_out:")]
        if len(loo):
            rows.append({"Result": group, "Analysis": "Leave one trial out: smallest to largest estimate",
                         "Trials": _int(loo.n_trials.min()),
                         "Mean difference (95% CI)": _range(loo.estimate.min(), loo.estimate.max()), "τ²": DASH})
    return pd.DataFrame(rows)


def _int(x) -> str:
    return f"{int(x)}" if np.isfinite(x) else DASH


def sensitivity_comparison(rep: Report, window="short") -> GT:
    df = sensitivity_comparison_data(rep, window)
    return _gt(df, "Mean differences on the 0-100 scale, exercise minus comparison (negative favours exercise). "
                   "Two-stage: per-trial ANCOVA estimates pooled with the tau² estimator named.",
               groups="Result", stub="Analysis",
               widths={"Analysis": "50%", "Trials": "10%", "Mean difference (95% CI)": "28%", "τ²": "12%"})


def mi_modifier_data(rep: Report, window="short") -> pd.DataFrame:
    m, s = rep.modifiers, rep.sensitivity
    mi = s[(s.analysis == "multiple_imputation") & (s.term != "exercise") & (s.window == window)]
    cc = m[(m.window == window) & m.term.isin(mi.term.unique())]
    keep = ["comparison", "outcome", "term", "n_trials", "estimate", "ci_low", "ci_high"]
    df = mi[keep + ["fmi"]].merge(cc[keep], on=["comparison", "outcome", "term"], suffixes=("_mi", "_cc"))
    return pd.DataFrame({
        "Result": [f"{OUTCOME_LABEL[o].capitalize()}, exercise vs {COMPARISON_LABEL[c]}"
                   for c, o in zip(df.comparison, df.outcome)],
        "Covariate": df.term.str.split(":").str[1].map(COVARIATE_LABEL),
        "CC trials": df.n_trials_cc.map(_int),
        "Complete cases (95% CI)": [_est_ci(a, b, c, 2)
                                    for a, b, c in zip(df.estimate_cc, df.ci_low_cc, df.ci_high_cc)],
        "MI trials": df.n_trials_mi.map(_int),
        "Multiple imputation (95% CI)": [_est_ci(a, b, c, 2)
                                         for a, b, c in zip(df.estimate_mi, df.ci_low_mi, df.ci_high_mi)],
        "FMI": df.fmi.map(lambda v: _num(v, 2)),
    })


def mi_modifiers(rep: Report, window="short") -> GT:
    df = mi_modifier_data(rep, window)
    note = ("Within-trial interactions (change in the exercise effect per unit of the covariate). MI: 20 imputations "
            "by chained equations within trials; covariates a trial never measured drawn with a random trial "
            "intercept; Rubin’s rules with Barnard-Rubin df. FMI: fraction of missing information.")
    if rep.federation is not None:
        note = ("Within-trial interactions (change in the exercise effect per unit of the covariate). Multiple "
                "imputation is not available in a federated analysis: it needs other trials' participants.")
    return _gt(df, note, groups="Result", stub="Covariate", font="8pt",
               widths={"Covariate": "26%", "CC trials": "9%", "Complete cases (95% CI)": "24%", "MI trials": "9%",
                       "Multiple imputation (95% CI)": "24%", "FMI": "8%"})


def model_notes_data(rep: Report) -> pd.DataFrame:
    """Every flagged model fit (boundary variance, not estimable, not converged, separation),
    counted by kind and results file, with an example."""
    frames = []
    for name, df in (("estimates", rep.estimates), ("modifiers", rep.modifiers), ("sensitivity", rep.sensitivity)):
        if df is None:
            continue
        d = df[df.note.notna() & (df.note != "")
               & ~df.note.str.startswith(("across-trial", "I²", "fraction", "common-effect model"))]
        frames.append(d.assign(file=name))
    notes = pd.concat(frames, ignore_index=True)
    kinds = {"boundary": "τ² estimated at the boundary (0)", "not estimable": "not estimable",
             "separation": "separation in a trial (its own slope infinite)",
             "without variation": "trials without events set aside", "fewer than": "too few trials for τ²"}
    rows = []
    for key, label in kinds.items():
        hit = notes[notes.note.str.contains(key)]
        for f, g in hit.groupby("file"):
            ex = g.iloc[0]
            rows.append({"Issue": label, "Results file": f"{f}.csv", "Fits": len(g),
                         "Example": f"{ex.analysis}, {ex.comparison}, {ex.outcome}, {ex.window}, {ex.term}"})
    for f, df in (("estimates", rep.estimates), ("modifiers", rep.modifiers), ("sensitivity", rep.sensitivity)):
        if df is None:
            continue
        bad = df[(df.converged == False) & df.estimate.notna()]  # noqa: E712
        if len(bad):
            rows.append({"Issue": "optimiser did not converge", "Results file": f"{f}.csv", "Fits": len(bad),
                         "Example": f"{bad.iloc[0].analysis}, {bad.iloc[0].term}"})
    return pd.DataFrame(rows, columns=["Issue", "Results file", "Fits", "Example"])


def model_notes(rep: Report) -> GT:
    return _gt(model_notes_data(rep), "Each flagged fit carries its note in the note column of its results file.",
               groups="Issue", widths={"Results file": "22%", "Fits": "8%", "Example": "70%"})


# ----------------------------------------------------------------------------- appendices


RECODING_COLUMNS = {
    "rescaled": "Outcomes rescaled to 0-100", "recoded": "Covariates recoded", "derived": "Derived or converted",
    "not measured": "Not measured", "other": "Columns dropped or not used; follow-up outside the windows",
}


def _recoding_kind(step: str) -> str:
    if step.endswith("rescaled"):
        return "rescaled"
    if step.endswith("recoded"):
        return "recoded"
    if step.endswith(("derived", "converted")):
        return "derived"
    return "not measured" if step == "covariates not measured" else "other"


def recoding_table_data(rep: Report) -> pd.DataFrame:
    """The harmonisation log, one row per trial and one column per kind of step."""
    log = rep.harmonisation_log.copy()
    log["kind"] = log.step.map(_recoding_kind)
    subject = log.step.str.replace(r" (rescaled|recoded|derived|converted)$", "", regex=True)
    detail = (log.detail.str.replace(" -> ", " → ", regex=False).str.replace("^2", "²", regex=False)
              .str.replace(r": 100 x \(x - [\d.]+\) / [\d.]+(, reversed.*)?$", "", regex=True))  # formula: see methods
    named = subject.str.replace("_", " ") + ": " + detail
    log["text"] = np.where(log.kind.isin(["rescaled", "recoded", "derived"]), named,
                           np.where(log.kind == "other", log.step + ": " + detail, detail.str.replace("_", " ")))
    table = log.groupby(["trial_id", "kind"], sort=False).text.agg("; ".join).unstack()
    table = table.reindex(columns=list(RECODING_COLUMNS)).rename(columns=RECODING_COLUMNS)
    return table.reset_index().rename(columns={"trial_id": "Trial"})


def recoding_table(rep: Report) -> GT:
    df = recoding_table_data(rep)
    return _gt(df, "From data/derived/harmonisation_log.csv, which lists each step on its own row.", font="7.5pt",
               widths={"Trial": "5%", RECODING_COLUMNS["rescaled"]: "27%", RECODING_COLUMNS["recoded"]: "22%",
                       RECODING_COLUMNS["derived"]: "17%", RECODING_COLUMNS["not measured"]: "11%",
                       RECODING_COLUMNS["other"]: "18%"})


def reference_table(agreement: pd.DataFrame) -> GT:
    df = agreement.assign(**{
        "Reference value": agreement["Reference value"].map(lambda v: f"{v:.6g}"),
        "This project": agreement["This project"].map(lambda v: f"{v:.6g}"),
        "Relative difference": agreement["Relative difference"].map(lambda v: f"{v:.1e}"),
    })
    return _gt(df, "Reference values as published by the implementation named (R 4.2.2; metafor 3.8-1, lme4 1.1-31, "
                   "lmerTest 3.1-3); relative difference = |ours − reference| / |reference|.",
               groups="Reference", stub="Quantity")


def truth_table(recovery: pd.DataFrame) -> GT:
    df = pd.DataFrame({
        "Result": [f"{OUTCOME_LABEL[o].capitalize()}, exercise vs {COMPARISON_LABEL[c]}"
                   for c, o in zip(recovery.Comparison, recovery.Outcome)],
        "Quantity": recovery.Term.map(lambda t: "Overall effect" if t == "exercise"
                                      else f"Interaction: {COVARIATE_LABEL[t.split(':')[1]].lower()}"),
        "Truth": recovery.Truth.map(lambda v: fmt(v, 2)),
        "Estimate (95% CI)": [_est_ci(e, lo, hi, 2) for e, lo, hi in
                              zip(recovery.Estimate, recovery["CI low"], recovery["CI high"])],
        "Covered": recovery.Covered.map({True: "yes", False: "no"}),
    })
    return _gt(df, "Short-term results; overall effects are mean differences (0-100), interactions the change in the "
                   "effect per unit of the covariate.", groups="Result", stub="Quantity")


def packages_table(packages: dict, python: str) -> GT:
    df = pd.DataFrame(sorted(packages.items()), columns=["Package", "Version"])
    return _gt(pd.concat([pd.DataFrame([{"Package": "Python", "Version": python}]), df], ignore_index=True))


def checksums_table(inputs: dict) -> GT:
    df = pd.DataFrame(sorted((k, v) for k, v in inputs.items() if not k.startswith("analysis/")),
                      columns=["File", "SHA-256"])
    df["Folder"] = df.File.str.split("/").str[0].map({"specs": "Trial specifications (data/specs)",
                                                      "raw": "Raw data files (data/raw)",
                                                      "sites": "Data stations (specifications and raw files)"})
    df["Folder"] = df.Folder.fillna("Other")
    df["File"] = df.File.str.split("/").str[-1]
    df["SHA-256"] = df["SHA-256"].str[:16]
    return _gt(df, "First 16 hexadecimal digits; the full checksums are in results/provenance.json.",
               groups="Folder", font="8pt")


BENCHMARK_ROWS = {
    "harmonise_rows_per_s": ("Harmonisation (participants per second)", 0),
    "one_fit_s": ("One continuous one-stage fit (ms)", None),
    "mixedlm_s": ("statsmodels MixedLM, same model and sample (s)", 2),
    "speedup": ("Speed-up over MixedLM (×)", 0),
    "all_overall_s": ("All overall analyses (CPU s)", 1),
    "modifiers_s": ("All modifier analyses (CPU s)", 1),
    "sensitivity_s": ("All sensitivity analyses, m = 20 (CPU s)", 1),
    "all_s": ("Whole pipeline, python -m analysis all (s)", 1),
    "peak_rss_gib": ("Peak memory of its largest process (GiB)", 2),
}


def refusals_table(rep: Report) -> GT:
    """Statistics the stations of a federated run refused, by station and reason."""
    refused = rep.disclosure
    if refused is None or refused.empty:
        return _gt(pd.DataFrame({"Disclosure control": ["No station refused any statistic."]}))
    counts = (refused.assign(Reason=refused.reason.str.capitalize())
              .groupby(["site", "Reason"]).size().rename("Statistics refused").reset_index()
              .rename(columns={"site": "Station"}))
    return _gt(counts, "A statistic is refused for a trial whose arm has fewer participants, or (recovery) fewer "
               "events or non-events, than the station's threshold; the full list is results/disclosure.csv.",
               font="8pt")


def benchmarks_table(bench: pd.DataFrame) -> GT:
    """Measures (rows) by data size (columns): narrow enough for any page."""
    columns = {}
    for r in bench.to_dict("records"):
        name = f"{int(r['trials']):,} trials, {int(r['participants']):,}"
        col = []
        for key, (_, digits) in BENCHMARK_ROWS.items():
            v = r.get(key, np.nan)
            if v is None or not np.isfinite(v):
                col.append("not run")
            elif digits is None:
                col.append(f"{1000 * v:.1f}")
            else:
                col.append(f"{v:,.{digits}f}")
        columns[name] = col
    df = pd.DataFrame({"Measure": [label for label, _ in BENCHMARK_ROWS.values()], **columns})
    return _gt(df, "Measured with python -m benchmarks.run on the machine described in benchmarks/README.md.",
               stub="Measure")
