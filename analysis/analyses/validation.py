"""The project's estimators on the reference data sets of data/reference/, so that the book
can set them beside the values of established implementations without fitting anything.

Each row is one checked quantity with a stable ``check`` identifier; the published value of
each identifier is in analysis/book/reference_values.py (and the tests compare the two with
a tolerance per quantity).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.models.glmm import fit_mixed_logistic
from analysis.models.meta import pool
from analysis.models.onestage import fit_reml, sufficient_stats
from analysis.paths import PROJECT_ROOT

__all__ = ["REFERENCE_DATA", "reference_csv", "bcg_effects", "reference_estimates"]

REFERENCE_DATA = PROJECT_ROOT / "data" / "reference"


def reference_csv(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE_DATA / name)


def bcg_effects():
    """dat.bcg log risk ratios and sampling variances (metafor's escalc(measure = "RR"))."""
    d = reference_csv("dat_bcg.csv")
    yi = np.log((d.tpos / (d.tpos + d.tneg)) / (d.cpos / (d.cpos + d.cneg)))
    vi = 1 / d.tpos - 1 / (d.tpos + d.tneg) + 1 / d.cpos - 1 / (d.cpos + d.cneg)
    return yi.to_numpy(), vi.to_numpy()


def reference_estimates() -> pd.DataFrame:
    """Columns ``check`` (e.g. ``bcg.REML.estimate``, ``M1.df``) and ``value`` (ours)."""
    values = {}
    yi, vi = bcg_effects()
    for method in ("REML", "DL", "PM", "ML"):
        r = pool(yi, vi, method=method)
        values[f"bcg.{method}.estimate"] = r.estimate
        values[f"bcg.{method}.tau2"] = r.tau2
    values["bcg.REML_HK.se"] = pool(yi, vi, hartung_knapp=True).se
    d = reference_csv("onestage_reference.csv")
    f = fit_reml(sufficient_stats(d.trial_id, d.y, d[["treat"]], d[["y0"]]))
    s = f.summary()
    values.update({"M1.theta": s["estimate"], "M1.se": s["se"], "M1.df": s["df"], "M1.tau2": f.tau2,
                   "M1.remlcrit": f.deviance})
    xbar = d.groupby("trial_id").x.transform("mean")
    xc = d.x - xbar
    f2 = fit_reml(sufficient_stats(d.trial_id, d.y, np.column_stack([d.treat, d.treat * xc, d.treat * xbar]),
                                   np.column_stack([d.y0, xc])))
    values.update({"M2.within": f2.coef[1], "M2.within_df": f2.df[1], "M2.across": f2.coef[2]})
    g = fit_mixed_logistic(d.trial_id, d.recovered, d[["y0"]], d.treat, n_nodes=15)
    values.update({"G15.log_or": g.theta, "G15.se": g.se, "G15.tau2": g.tau2, "G15.loglik": g.loglik})
    b = reference_csv("boundary_reference.csv")
    fb = fit_reml(sufficient_stats(b.trial_id, b.y, b[["treat"]], b[["y0"]]))
    values.update({"boundary.theta": fb.coef[0], "boundary.se": fb.se()})
    return pd.DataFrame({"check": list(values), "value": [float(v) for v in values.values()]})
