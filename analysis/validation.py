"""Validation tables for the appendix: the project's estimators against published reference
values, and recovery of the synthetic truth on the demo data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import reference_values as ref
from .demo import TRUTH
from .glmm import fit_mixed_logistic
from .meta import pool
from .onestage import fit_reml, sufficient_stats

__all__ = ["reference_agreement", "truth_recovery"]


def reference_agreement() -> pd.DataFrame:
    """Each row: what was estimated, the reference implementation's value and ours."""
    rows = []
    yi, vi = ref.bcg_effects()
    for method in ("REML", "DL", "PM", "ML"):
        r = pool(yi, vi, method=method)
        rows += [("metafor rma(), dat.bcg", f"{method}: log risk ratio", ref.BCG[method]["estimate"], r.estimate),
                 ("metafor rma(), dat.bcg", f"{method}: tau²", ref.BCG[method]["tau2"], r.tau2)]
    r = pool(yi, vi, hartung_knapp=True)
    rows.append(("metafor rma(test = 'knha')", "REML + Hartung-Knapp: SE", ref.BCG_REML_HK["se"], r.se))
    d = ref.reference_csv("onestage_reference.csv")
    f = fit_reml(sufficient_stats(d.trial_id, d.y, d[["treat"]], d[["y0"]]))
    s = f.summary()
    rows += [("lme4/lmerTest lmer(), M1", "theta", ref.M1["theta"], s["estimate"]),
             ("lme4/lmerTest lmer(), M1", "SE", ref.M1["se"], s["se"]),
             ("lme4/lmerTest lmer(), M1", "Satterthwaite df", ref.M1["df_satterthwaite"], s["df"]),
             ("lme4/lmerTest lmer(), M1", "tau²", ref.M1["tau2"], f.tau2),
             ("lme4/lmerTest lmer(), M1", "REML criterion", ref.M1["remlcrit"], f.deviance)]
    xbar = d.groupby("trial_id").x.transform("mean")
    xc = d.x - xbar
    f2 = fit_reml(sufficient_stats(d.trial_id, d.y, np.column_stack([d.treat, d.treat * xc, d.treat * xbar]),
                                   np.column_stack([d.y0, xc])))
    rows += [("lme4/lmerTest lmer(), M2", "within-trial interaction", ref.M2["within"], f2.coef[1]),
             ("lme4/lmerTest lmer(), M2", "within-trial Satterthwaite df", ref.M2["within_df"], f2.df[1]),
             ("lme4/lmerTest lmer(), M2", "across-trial term", ref.M2["across"], f2.coef[2])]
    g = fit_mixed_logistic(d.trial_id, d.recovered, d[["y0"]], d.treat, n_nodes=15)
    rows += [("lme4 glmer(nAGQ = 15)", "log odds ratio", ref.G15["log_or"], g.theta),
             ("lme4 glmer(nAGQ = 15)", "SE", ref.G15["se"], g.se),
             ("lme4 glmer(nAGQ = 15)", "tau²", ref.G15["tau2"], g.tau2),
             ("lme4 glmer(nAGQ = 15)", "log-likelihood", ref.G15["loglik"], g.loglik)]
    b = ref.reference_csv("boundary_reference.csv")
    fb = fit_reml(sufficient_stats(b.trial_id, b.y, b[["treat"]], b[["y0"]]))
    rows += [("lme4 lmer(), boundary case", "theta (tau² = 0)", ref.BOUNDARY["theta"], fb.coef[0]),
             ("lme4 lmer(), boundary case", "SE", ref.BOUNDARY["se"], fb.se())]
    out = pd.DataFrame(rows, columns=["Reference", "Quantity", "Reference value", "This project"])
    out["Relative difference"] = (out["This project"] - out["Reference value"]).abs() / out["Reference value"].abs()
    return out


def truth_recovery(rep) -> pd.DataFrame:
    """Short-term estimates on the demo data next to the generator's truth."""
    rows = []
    for (comparison, outcome), truth in TRUTH["theta"].items():
        r = rep.overall(comparison, outcome, "short")
        rows.append(("overall", comparison, outcome, "exercise", truth, r.estimate, r.ci_low, r.ci_high))
    m = rep.modifiers
    cases = [(c, cov, TRUTH["modifiers"][cov]) for c in ("none_usual_care", "other_conservative")
             for cov in ("heavy_work", "medication")]
    cases += [("none_usual_care", "bmi", TRUTH["bmi_modifier_none_usual_care"]), ("other_conservative", "bmi", 0.0)]
    for comparison, cov, truth in cases:
        for outcome in ("pain", "function"):
            r = m[(m.comparison == comparison) & (m.outcome == outcome) & (m.window == "short")
                  & (m.term == f"exercise:{cov}")].iloc[0]
            rows.append(("modifier", comparison, outcome, f"exercise:{cov}", truth, r.estimate, r.ci_low, r.ci_high))
    out = pd.DataFrame(rows, columns=["Analysis", "Comparison", "Outcome", "Term", "Truth", "Estimate", "CI low", "CI high"])
    out["Covered"] = (out["CI low"] <= out.Truth) & (out.Truth <= out["CI high"])
    return out
