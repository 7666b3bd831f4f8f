"""The book's figures (matplotlib, one house style). Every function returns a Figure and
shows no row-level data: only per-trial or pooled summaries."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.book.report import (  # noqa: E402
    COMPARISON_LABEL,
    COVARIATE_LABEL,
    OUTCOME_LABEL,
    Report,
)
from analysis.settings import BINARY_COVARIATES, COVARIATES, WINDOWS  # noqa: E402

__all__ = ["house_style", "flow_diagram", "availability_heatmap", "followup_availability", "forest_plot",
           "modifier_curves", "subgroup_forest", "leave_one_out_plot"]

INK = "#1b2a41"
ACCENT = "#c0392b"
MUTED = "#7f8c8d"
FILL = "#d6e4f0"


def house_style():
    """Consistent typography and vector/300 dpi output for every format."""
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 300, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": INK, "axes.labelcolor": INK,
        "xtick.color": INK, "ytick.color": INK, "font.family": "DejaVu Sans", "legend.frameon": False,
        "figure.constrained_layout.use": True,
    })


def flow_diagram(rep: Report):
    """PRISMA-IPD style flow: trials and participants received, excluded by reason, analysed."""
    f = rep.flow
    reasons = {c.removeprefix("excluded_").replace("_", " "): int(f[c].sum()) for c in f.columns
               if c.startswith("excluded_") and f[c].sum() > 0}
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    box = dict(boxstyle="round,pad=0.6", fc=FILL, ec=INK, lw=0.8)
    main_x = 0.27
    ax.text(
        main_x,
        0.92,
        f"Trials with IPD received: {len(f)}\nParticipants (records received): {int(f.received.sum())}",
        ha="center",
        va="center",
        fontsize=8.5,
        color=INK,
        bbox=box,
    )
    ax.text(main_x, 0.55, f"Participants in the master data set:\n{int(f.analysed.sum())}",
            ha="center", va="center", fontsize=8.5, color=INK, bbox=box)
    ax.text(main_x, 0.15, "Analysed with outcome data\n" + "\n".join(
        f"{w.name} term: {int(f[f'analysed_{w.name}'].sum())} in {int((f[f'analysed_{w.name}'] > 0).sum())} trials"
        for w in WINDOWS), ha="center", va="center", fontsize=8.5, color=INK, bbox=box)
    for y0, y1 in ((0.84, 0.62), (0.48, 0.27)):
        ax.annotate("", xy=(main_x, y1), xytext=(main_x, y0), arrowprops=dict(arrowstyle="->", color=INK))
    excl = f"Excluded: {int(f.excluded.sum())} participants\n" + "\n".join(f"   {k}: {v}" for k, v in reasons.items())
    outside = int(f.records_outside_windows.sum())
    if outside:
        excl += f"\nFollow-up records outside every window: {outside}"
    ax.annotate("", xy=(0.58, 0.73), xytext=(main_x, 0.73), arrowprops=dict(arrowstyle="->", color=INK))
    ax.text(0.60, 0.73, excl, ha="left", va="center", fontsize=8, color=INK,
            bbox=dict(boxstyle="round,pad=0.5", fc="white", ec=MUTED, lw=0.8))
    return fig


def availability_heatmap(rep: Report):
    a = rep.availability
    share = a.pivot(index="trial_id", columns="covariate", values="share_missing")[list(COVARIATES)]
    fig, ax = plt.subplots(figsize=(7, 6.5))
    im = ax.imshow(1 - share.to_numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(
        range(len(share.columns)), [COVARIATE_LABEL[c].split(" (")[0] for c in share.columns], rotation=45, ha="right"
    )
    ax.set_yticks(range(len(share.index)), share.index)
    for i, j in zip(*np.nonzero(share.to_numpy() == 1)):
        ax.text(j, i, "×", ha="center", va="center", color=MUTED, fontsize=8)
    fig.colorbar(im, ax=ax, label="Share of participants with the covariate recorded", shrink=0.6)
    ax.set_title("Covariate availability by trial (× = not measured)")
    return fig


def followup_availability(rep: Report):
    f = rep.flow.set_index("trial_id")
    share = pd.DataFrame({w.name: f[f"analysed_{w.name}"] / f.analysed for w in WINDOWS})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(share))
    for i, (w, colour) in enumerate(zip(share.columns, (INK, "#2e86c1", "#85c1e9"))):
        ax.bar(x + (i - 1) * 0.27, share[w], width=0.27, label=w, color=colour)
    ax.set_xticks(x, share.index, rotation=90)
    ax.set_ylabel("Share analysed with outcome data")
    ax.set_ylim(0, 1.05)
    ax.legend(title="Window", ncols=3, loc="lower left")
    return fig


def forest_plot(rep: Report, outcome="pain", window="short", comparison="none_usual_care"):
    """Each trial's first-stage estimate, the one-stage pooled estimate with its CI and the
    prediction interval."""
    e = rep.trial_effects
    eff = e[(e.comparison == comparison) & (e.outcome == outcome) & (e.window == window)].sort_values("trial_id")
    pooled = rep.overall(comparison, outcome, window)
    log = outcome == "recovered"
    tr = np.exp if log else (lambda v: v)
    est, half = eff.estimate.to_numpy(), 1.96 * np.sqrt(eff.variance.to_numpy())
    n = len(eff)
    fig, ax = plt.subplots(figsize=(6.5, 0.24 * n + 1.6))
    y = np.arange(n)[::-1] + 2
    ax.errorbar(tr(est), y, xerr=[tr(est) - tr(est - half), tr(est + half) - tr(est)], fmt="s", color=INK,
                ms=3, lw=0.8, capsize=0)
    for yi, (tid, nn) in zip(y, zip(eff.trial_id, eff.n)):
        ax.annotate(f"{tid} (n={nn})", (0, yi), xycoords=("axes fraction", "data"), xytext=(-4, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=7)
    e, lo, hi = tr(pooled.estimate), tr(pooled.ci_low), tr(pooled.ci_high)
    ax.fill([lo, e, hi, e], [0.8, 1.1, 0.8, 0.5], color=ACCENT)
    if np.isfinite(pooled.pi_low):
        ax.plot([tr(pooled.pi_low), tr(pooled.pi_high)], [0.2, 0.2], color=ACCENT, lw=2, alpha=0.6)
    ax.axvline(1.0 if log else 0.0, color=MUTED, lw=0.8, ls="--")
    ax.set_yticks([])
    ax.set_ylim(-0.3, n + 2.7)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(
        "Odds ratio (exercise vs comparison)" if log else "Mean difference, 0-100 (negative favours exercise)"
    )
    ax.set_title(f"{OUTCOME_LABEL[outcome].capitalize()}, {window} term, vs {COMPARISON_LABEL[comparison]}: "
                 f"{int(pooled.n_trials)} trials", loc="left")
    ax.annotate("pooled (one-stage) and 95% prediction interval", (0, 0.8), xycoords=("axes fraction", "data"),
                xytext=(-4, 0), textcoords="offset points", ha="right", va="center", fontsize=7, color=ACCENT)
    return fig


def modifier_curves(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    c = rep.modifier_effects
    covs = [v for v in COVARIATES if v not in BINARY_COVARIATES]
    fig, axes = plt.subplots(1, len(covs), figsize=(8, 2.4), sharey=True)
    for ax, cov in zip(axes, covs):
        d = c[(c.covariate == cov) & (c.outcome == outcome) & (c.comparison == comparison) & (c.window == window)]
        if d.empty:
            ax.text(0.5, 0.5, "not estimable", transform=ax.transAxes, ha="center", color=MUTED)
        else:
            ax.fill_between(d.value, d.ci_low, d.ci_high, color=FILL)
            ax.plot(d.value, d.estimate, color=INK)
        ax.axhline(0, color=MUTED, lw=0.7, ls="--")
        ax.set_xlabel(textwrap.fill(COVARIATE_LABEL[cov], 22), fontsize=7)
    axes[0].set_ylabel("Exercise effect (0-100)")
    fig.suptitle(f"Predicted exercise effect on {OUTCOME_LABEL[outcome]} across covariate values "
                 f"({window} term, vs {COMPARISON_LABEL[comparison]})", fontsize=9)
    return fig


def subgroup_forest(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    c = rep.modifier_effects
    rows = []
    for cov in BINARY_COVARIATES:
        d = c[(c.covariate == cov) & (c.outcome == outcome) & (c.comparison == comparison) & (c.window == window)]
        for r in d.itertuples():
            rows.append((f"{COVARIATE_LABEL[cov]}: {'yes' if r.value == 1 else 'no'}", r.estimate, r.ci_low, r.ci_high))
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(rows) + 1))
    y = np.arange(len(rows))[::-1]
    for yi, (label, e, lo, hi) in zip(y, rows):
        ax.plot([lo, hi], [yi, yi], color=INK, lw=1)
        ax.plot(e, yi, "o", color=ACCENT if label.endswith("yes") else INK, ms=4)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.axvline(0, color=MUTED, lw=0.8, ls="--")
    ax.set_xlabel("Exercise effect (0-100, negative favours exercise)")
    ax.set_title(f"Exercise effect on {OUTCOME_LABEL[outcome]} by binary covariate ({window} term)", loc="left")
    return fig


def leave_one_out_plot(rep: Report, outcome="pain", comparison="none_usual_care", window="short"):
    s = rep.sensitivity
    d = s[s.analysis.str.startswith("leave_out:") & (s.outcome == outcome) & (s.comparison == comparison)
          & (s.window == window)].copy()
    d["trial"] = d.analysis.str.split(":").str[1]
    d = d.sort_values("trial")
    primary = rep.overall(comparison, outcome, window)
    fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(d) + 1.2))
    y = np.arange(len(d))[::-1]
    ax.errorbar(d.estimate, y, xerr=[d.estimate - d.ci_low, d.ci_high - d.estimate], fmt="o", color=INK, ms=3, lw=0.8)
    ax.axvspan(primary.ci_low, primary.ci_high, color=FILL, zorder=0)
    ax.axvline(primary.estimate, color=ACCENT, lw=1)
    ax.set_yticks(y, [f"without {t}" for t in d.trial], fontsize=7)
    ax.set_xlabel("Mean difference, 0-100 (negative favours exercise)")
    ax.set_title(f"Leave-one-trial-out: {OUTCOME_LABEL[outcome]}, {window} term (band: primary 95% CI)", loc="left")
    return fig
