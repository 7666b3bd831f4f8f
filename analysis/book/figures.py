"""The book's figures, in one house style (matplotlib). Each function returns a Figure drawn
from results and aggregates only, never row-level data, and sized for the printed page
(16 cm text width): text is set at 7.5-9 pt at 100 %, so it stays readable in print.

The Jupyter kernel's inline backend shows each returned figure once; the backend is left
to Jupyter (selecting one here would stop figures from reaching the book).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from analysis.book.report import COVARIATE_LABEL, OUTCOME_LABEL, Report, fmt, reason_label
from analysis.settings import BINARY_COVARIATES, COVARIATES, WINDOWS

__all__ = ["house_style", "flow_diagram", "availability_heatmap", "followup_availability", "forest_plot",
           "modifier_curves", "subgroup_forest", "leave_one_out_plot", "WIDTH"]

INK = "#1b2a41"
ACCENT = "#b03a2e"
MUTED = "#6c7a89"
FILL = "#d6e4f0"
WIDTH = 6.3  # inches: the text width of an A4 page with 2.5 cm margins
CONTROL_LABEL = {"none_usual_care": "Control", "other_conservative": "Other", "any_non_exercise": "Control"}


def house_style():
    """Consistent typography and output for every format (SVG text as paths, 300 dpi PNG)."""
    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
        "xtick.labelsize": 7.5, "ytick.labelsize": 7.5, "legend.fontsize": 7.5,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": INK, "axes.labelcolor": INK,
        "xtick.color": INK, "ytick.color": INK, "text.color": INK, "legend.frameon": False,
        "savefig.dpi": 300, "svg.fonttype": "path",
    })


def _close(fig):
    """Hand the figure to the caller (Jupyter shows it once) without keeping pyplot's reference."""
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------- flow


def _box(ax, x, y, text):
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, color=INK, linespacing=1.4,
            bbox=dict(boxstyle="round,pad=0.5", fc=FILL, ec=INK, lw=0.7))


def _reasons(f: pd.DataFrame, prefix: str) -> list[str]:
    counts = {reason_label(c.removeprefix(prefix)): int(f[c].sum()) for c in f.columns
              if c.startswith(prefix) and f[c].sum() > 0}
    return [f"  {reason}: {n:,}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def flow_diagram(rep: Report):
    """PRISMA-IPD flow at both levels of intention to treat: records excluded because the
    participant or arm is unknown, and single values set missing with the participant kept."""
    f = rep.flow
    fig, ax = plt.subplots(figsize=(WIDTH, 5.2))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(0, 1))
    main_x, side_x = 0.24, 0.5
    _box(ax, main_x, 0.93, f"IPD received from {len(f)} trials\n{int(f.received.sum()):,} participant records")
    _box(ax, main_x, 0.60, f"Master data set\n{int(f.analysed.sum()):,} participants in {len(f)} trials\n"
                           "(intention to treat)")
    windows = "\n".join(f"{w.name.capitalize()} term: {int(f[f'analysed_{w.name}'].sum()):,} participants, "
                        f"{int((f[f'analysed_{w.name}'] > 0).sum())} trials" for w in WINDOWS)
    _box(ax, main_x, 0.09, "With outcome data\n" + windows)
    arrow = dict(arrowstyle="-|>", color=INK, lw=0.8)
    for y0, y1 in ((0.87, 0.68), (0.52, 0.18)):
        ax.annotate("", xy=(main_x, y1), xytext=(main_x, y0), arrowprops=arrow)
    side = dict(ha="left", va="center", fontsize=8, color=INK, linespacing=1.35,
                bbox=dict(boxstyle="round,pad=0.5", fc="white", ec=MUTED, lw=0.7))
    excluded = [f"Excluded: {int(f.excluded.sum()):,} records (participant or arm unknown)"] + _reasons(f, "excluded_")
    ax.annotate("", xy=(side_x - 0.01, 0.775), xytext=(main_x, 0.775), arrowprops=arrow)
    ax.text(side_x, 0.775, "\n".join(excluded), **side)
    if "values_set_missing" in f:
        values = ([f"Values set missing, participant kept: {int(f.values_set_missing.sum()):,}"]
                  + _reasons(f, "missing_"))
        outside = int(f.records_outside_windows.sum())
        if outside:
            values.append(f"Visits outside every window (not used): {outside:,}")
        ax.annotate("", xy=(side_x - 0.01, 0.36), xytext=(main_x, 0.36), arrowprops=arrow)
        ax.text(side_x, 0.36, "\n".join(values), **side)
    return _close(fig)


# ----------------------------------------------------------------------------- descriptives


def availability_heatmap(rep: Report):
    """Covariates (rows) by trials (columns): the share of participants with the covariate
    recorded; a cross marks a covariate the trial did not measure."""
    a = rep.availability
    share = a.pivot(index="covariate", columns="trial_id", values="share_missing").loc[list(COVARIATES)]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.2 * len(share) + 1.3), layout="constrained")
    im = ax.imshow(1 - share.to_numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_yticks(range(len(share.index)), [COVARIATE_LABEL[c].split(" (")[0] for c in share.index])
    ax.set_xticks(range(len(share.columns)), share.columns, rotation=90, fontsize=7)
    for i, j in zip(*np.nonzero(share.to_numpy() == 1)):
        ax.text(j, i, "×", ha="center", va="center", color=MUTED, fontsize=7.5)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, label="Share recorded", shrink=0.9, aspect=15, pad=0.01)
    return _close(fig)


def followup_availability(rep: Report):
    f = rep.flow.set_index("trial_id")
    share = pd.DataFrame({w.name: f[f"analysed_{w.name}"] / f.analysed for w in WINDOWS})
    fig, ax = plt.subplots(figsize=(WIDTH, 2.6), layout="constrained")
    x = np.arange(len(share))
    for i, (w, colour) in enumerate(zip(share.columns, (INK, "#2e86c1", "#a9cce3"))):
        ax.bar(x + (i - 1) * 0.27, share[w], width=0.27, label=f"{w} term", color=colour)
    ax.set_xticks(x, share.index, rotation=90, fontsize=7)
    ax.set_ylabel("Share with outcome data")
    ax.set_ylim(0, 1.12)
    ax.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.08))
    return _close(fig)


# ----------------------------------------------------------------------------- forest plots


def _nice_limits(values, log=False):
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if log:
        lo, hi = np.log(lo), np.log(hi)
    pad = 0.06 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    return (np.exp(lo), np.exp(hi)) if log else (lo, hi)


def _ci_text(est, low, high, digits):
    return f"{fmt(est, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def forest_plot(rep: Report, outcome="pain", window="short", comparison="none_usual_care"):
    """Forest plot in the manner of metafor's forest(): each trial's own estimate (first-stage
    ANCOVA, or logistic regression for recovery) with its 95% CI, participants per arm, the
    estimate [95% CI] and two-stage weight as text, squares sized by weight, the one-stage
    summary as a diamond, its 95% prediction interval, heterogeneity and the direction of
    benefit. A CI that leaves the axis ends in an arrow."""
    e = rep.trial_effects
    eff = e[(e.comparison == comparison) & (e.outcome == outcome) & (e.window == window)].sort_values("trial_id")
    pooled = rep.overall(comparison, outcome, window)
    het = rep.heterogeneity_of(comparison, outcome, window)
    log = outcome == "recovered"
    tr = np.exp if log else (lambda v: np.asarray(v, float))
    digits = 2 if log else 1
    se = np.sqrt(eff.variance.to_numpy())
    est, lo, hi = tr(eff.estimate), tr(eff.estimate - 1.96 * se), tr(eff.estimate + 1.96 * se)
    n = len(eff)

    # the axis covers the estimates, the pooled CI and the prediction interval; trial CIs
    # that reach further are drawn to the edge with an arrow
    core = np.r_[est, tr([pooled.ci_low, pooled.ci_high, pooled.estimate]),
                 tr([pooled.pi_low, pooled.pi_high]) if np.isfinite(pooled.pi_low) else []]
    span = np.r_[core, lo, hi]
    lim = _nice_limits(span if np.ptp(np.log(span) if log else span) <= 3 * np.ptp(np.log(core) if log else core)
                       else core, log)
    if not log:
        lim = (min(lim[0], -0.5), max(lim[1], 0.5))  # the line of no effect stays on the axis

    rows = n + 5  # header, trials, gap, summary, prediction interval, heterogeneity
    fig = plt.figure(figsize=(WIDTH, 0.19 * rows + 0.75))
    bottom = 0.62 / (0.19 * rows + 0.75)
    ax = fig.add_axes((0.27, bottom, 0.39, 1 - bottom - 0.02))
    ax.set_ylim(-3.6, n + 1.4)
    ax.set_xlim(*lim)
    if log:
        ax.set_xscale("log")
    ax.spines[["left", "right", "top"]].set_visible(False)
    ax.set_yticks([])
    text = blended_transform_factory(fig.transFigure, ax.transData)
    columns = [(0.01, "Trial", "left"), (0.165, "Exercise", "right"), (0.245, CONTROL_LABEL[comparison], "right"),
               (0.885, "Estimate [95% CI]", "right"), (0.985, "Weight", "right")]
    for x, label, ha in columns:
        ax.text(x, n + 0.9, label, transform=text, ha=ha, va="center", weight="bold", fontsize=7.5)
    ys = np.arange(n, 0, -1)
    size = 3 + 9 * np.sqrt(eff.weight.to_numpy() / max(eff.weight.max(), 1e-9))
    for y, (_, r), e_i, l_i, h_i, s in zip(ys, eff.iterrows(), est, lo, hi, size):
        left, right = max(l_i, lim[0]), min(h_i, lim[1])
        ax.plot([left, right], [y, y], color=INK, lw=0.8, solid_capstyle="butt")
        if l_i < lim[0]:
            ax.plot(lim[0], y, marker="<", color=INK, ms=3.5, clip_on=False)
        if h_i > lim[1]:
            ax.plot(lim[1], y, marker=">", color=INK, ms=3.5, clip_on=False)
        if lim[0] <= e_i <= lim[1]:
            ax.plot(e_i, y, marker="s", color=INK, ms=s, mew=0)
        for x, value, ha in ((0.01, r.trial_id, "left"), (0.165, f"{int(r.n_exercise)}", "right"),
                             (0.245, f"{int(r.n_control)}", "right"),
                             (0.885, _ci_text(e_i, l_i, h_i, digits), "right"), (0.985, f"{r.weight:.1f}%", "right")):
            ax.text(x, y, value, transform=text, ha=ha, va="center", fontsize=7.5)
    # summary diamond and prediction interval
    pe, plo, phi = tr([pooled.estimate, pooled.ci_low, pooled.ci_high])
    y_sum = -0.6
    ax.fill([plo, pe, phi, pe], [y_sum, y_sum + 0.38, y_sum, y_sum - 0.38], color=ACCENT, lw=0)
    ax.text(0.01, y_sum, "One-stage random-effects model", transform=text, ha="left", va="center", weight="bold",
            fontsize=7.5)
    ax.text(0.885, y_sum, _ci_text(pe, plo, phi, digits), transform=text, ha="right", va="center", weight="bold",
            fontsize=7.5)
    ax.text(0.985, y_sum, "100%", transform=text, ha="right", va="center", fontsize=7.5)
    y_pi = -1.55
    if np.isfinite(pooled.pi_low):
        qlo, qhi = tr([pooled.pi_low, pooled.pi_high])
        ax.plot([max(qlo, lim[0]), min(qhi, lim[1])], [y_pi, y_pi], color=ACCENT, lw=1.6, alpha=0.55)
        ax.text(0.01, y_pi, "95% prediction interval", transform=text, ha="left", va="center", fontsize=7.5)
        ax.text(0.885, y_pi, f"[{fmt(qlo, digits)}, {fmt(qhi, digits)}]", transform=text, ha="right", va="center",
                fontsize=7.5)
    tau_text = f"τ² = {fmt(pooled.tau2, 2 if not log else 3)} (one-stage)"
    i2_text = f"; I² = {het.i2:.0f}% (two-stage)" if het is not None and np.isfinite(het.i2) else ""
    ax.text(0.01, -2.5, f"Heterogeneity: {tau_text}{i2_text}; k = {int(pooled.n_trials)} trials, "
            f"{int(pooled.n_participants):,} participants", transform=text, ha="left", va="center", fontsize=7.5,
            color=MUTED)
    ax.axvline(1.0 if log else 0.0, color=MUTED, lw=0.7, ls=(0, (3, 2)), ymax=(n + 0.6 + 3.6) / (n + 5.0))
    if log:
        ax.xaxis.set_major_locator(FixedLocator([v for v in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20)
                                                 if lim[0] <= v <= lim[1]]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("Odds ratio of recovery (exercise vs comparison)" if log
                  else f"Mean difference in {OUTCOME_LABEL[outcome]}, 0-100 (exercise − comparison)", labelpad=13)
    better_left = not log  # lower scores are better; for recovery a higher odds is better
    for x, ha, label in ((0, "left", "◀ favours exercise" if better_left else "◀ favours comparison"),
                         (1, "right", "favours comparison ▶" if better_left else "favours exercise ▶")):
        ax.annotate(label, xy=(x, 0), xycoords="axes fraction", xytext=(0, -14), textcoords="offset points",
                    ha=ha, va="top", fontsize=6.5, color=MUTED)
    return _close(fig)


def leave_one_out_plot(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    s = rep.sensitivity
    d = s[s.analysis.str.startswith("leave_out:") & (s.outcome == outcome) & (s.comparison == comparison)
          & (s.window == window)].copy()
    d["trial"] = d.analysis.str.split(":").str[1]
    d = d.sort_values("trial")
    primary = rep.overall(comparison, outcome, window)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.19 * len(d) + 0.9), layout="constrained")
    y = np.arange(len(d))[::-1]
    ax.axvspan(primary.ci_low, primary.ci_high, color=FILL, zorder=0, lw=0, label="primary 95% CI")
    ax.axvline(primary.estimate, color=ACCENT, lw=1, label="primary estimate")
    ax.errorbar(d.estimate, y, xerr=[d.estimate - d.ci_low, d.ci_high - d.estimate], fmt="o", color=INK, ms=3,
                lw=0.8, capsize=0)
    ax.set_yticks(y, [f"without {t}" for t in d.trial], fontsize=7)
    ax.set_xlabel(f"Mean difference in {OUTCOME_LABEL[outcome]}, 0-100 (exercise − comparison)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=7)
    return _close(fig)


# ----------------------------------------------------------------------------- modifiers


def _curves(rep, outcome, comparison, window):
    c = rep.modifier_effects
    return c[(c.outcome == outcome) & (c.comparison == comparison) & (c.window == window)]


def modifier_curves(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    """Predicted exercise effect across each continuous covariate (within-trial interaction
    model), with its 95% CI; ticks on the axis mark the covariate's deciles (where the data
    are), never single values."""
    c = _curves(rep, outcome, comparison, window)
    covs = [v for v in COVARIATES if v not in BINARY_COVARIATES]
    ncols = 3
    nrows = int(np.ceil(len(covs) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, 2.1 * nrows + 0.3), sharey=True, layout="constrained")
    axes = axes.ravel()
    for ax, cov in zip(axes, covs):
        d = c[c.covariate == cov]
        curve, deciles = d[d.kind == "curve"], d[d.kind == "decile"]
        if curve.empty:
            ax.text(0.5, 0.5, "not estimable", transform=ax.transAxes, ha="center", color=MUTED)
        else:
            ax.fill_between(curve.value, curve.ci_low, curve.ci_high, color=FILL, lw=0)
            ax.plot(curve.value, curve.estimate, color=INK, lw=1.2)
            if len(deciles):  # an empty unclipped line has no extent and collapses the layout
                ax.plot(deciles.value, np.zeros(len(deciles)), "|", color=ACCENT, ms=7, mew=1,
                        transform=ax.get_xaxis_transform(), clip_on=False)
        ax.axhline(0, color=MUTED, lw=0.7, ls=(0, (3, 2)))
        ax.set_xlabel(textwrap.fill(COVARIATE_LABEL[cov], 28))
    for ax in axes[len(covs):]:
        ax.set_axis_off()
    key = axes[-1] if len(covs) < len(axes) else fig
    where = ("Ticks on each axis: deciles of\nthe covariate." if (c.kind == "decile").any()
             else "Curves span the mean \u00b1 1.645\nSD (no deciles: federated).")
    key_text = f"Line: predicted effect; band: 95% CI.\n{where} Negative values\nfavour exercise."
    note = key.text(0.0, 0.6, key_text, transform=key.transAxes if key is not fig else fig.transFigure,
                    fontsize=7.5, color=MUTED, va="center")
    note.set_in_layout(False)  # a legend in the empty panel: it must not shrink the others
    for row in range(nrows):
        axes[row * ncols].set_ylabel(f"Effect on {OUTCOME_LABEL[outcome]}\n(MD, 0-100)")
    return _close(fig)


def subgroup_forest(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    """Exercise effect in each level of each binary covariate (from the interaction models)."""
    c = _curves(rep, outcome, comparison, window)
    rows = []
    for cov in BINARY_COVARIATES:
        d = c[(c.covariate == cov) & (c.kind == "level")].sort_values("value", ascending=False)
        for r in d.itertuples():
            rows.append((COVARIATE_LABEL[cov] if r.value == 1 else "", "yes" if r.value == 1 else "no",
                         r.estimate, r.ci_low, r.ci_high))
    fig = plt.figure(figsize=(WIDTH, 0.2 * len(rows) + 0.9))
    bottom = 0.55 / (0.2 * len(rows) + 0.9)
    ax = fig.add_axes((0.42, bottom, 0.32, 1 - bottom - 0.1))
    text = blended_transform_factory(fig.transFigure, ax.transData)
    y = np.arange(len(rows))[::-1]
    ax.set_ylim(-0.7, len(rows) - 0.1)
    for yi, (label, level, e, lo, hi) in zip(y, rows):
        ax.plot([lo, hi], [yi, yi], color=INK, lw=0.9)
        ax.plot(e, yi, "s", color=ACCENT if level == "yes" else INK, ms=4.5, mew=0)
        ax.text(0.01, yi, label, transform=text, ha="left", va="center", fontsize=7.5)
        ax.text(0.40, yi, level, transform=text, ha="right", va="center", fontsize=7.5)
        ax.text(0.985, yi, _ci_text(e, lo, hi, 1), transform=text, ha="right", va="center", fontsize=7.5)
    ax.text(0.01, len(rows) - 0.1, "Covariate", transform=text, ha="left", va="bottom", weight="bold", fontsize=7.5)
    ax.text(0.985, len(rows) - 0.1, "Effect [95% CI]", transform=text, ha="right", va="bottom", weight="bold",
            fontsize=7.5)
    ax.axvline(0, color=MUTED, lw=0.7, ls=(0, (3, 2)))
    ax.spines[["left", "right", "top"]].set_visible(False)
    ax.set_yticks([])
    ax.set_xlabel(f"Mean difference in {OUTCOME_LABEL[outcome]}, 0-100\n(negative favours exercise)", fontsize=7.5)
    return _close(fig)
