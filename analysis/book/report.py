"""What the book's chapters call: results and derived data, read lazily, and sentences built
from the numbers (so prose cannot drift from the results).

The chapters make one ``Report`` per run (``load()``); nothing is cached between runs, so a
kernel kept alive between renders never shows old results.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pandas as pd

from analysis.io import read_csv
from analysis.paths import Paths
from analysis.provenance import read_provenance

__all__ = ["Report", "load", "modifier_summary", "sensitivity_findings", "sensitivity_sentence", "fmt", "fmt_ci",
           "fmt_p", "COMPARISON_LABEL", "OUTCOME_LABEL", "COVARIATE_LABEL", "WINDOW_LABEL", "SENSITIVITY_NAME"]

COMPARISON_LABEL = {
    "none_usual_care": "no treatment/usual care",
    "other_conservative": "other conservative treatments",
    "any_non_exercise": "any non-exercise comparison",
}
OUTCOME_LABEL = {"pain": "pain", "function": "functional limitation", "recovered": "global recovery"}
WINDOW_LABEL = {"short": "short term (about 3 months)", "moderate": "moderate term (about 6 months)",
                "long": "long term (about 12 months)"}
COVARIATE_LABEL = {
    "age": "Age (years)", "female": "Female sex", "bmi": "Body mass index (kg/m²)",
    "heavy_work": "Heavy physical work demands", "medication": "Medication use for back pain",
    "employed": "Employed", "education_post_secondary": "Post-secondary education",
    "duration_months": "Duration of pain (months)", "pain_bl": "Baseline pain (0-100)",
    "function_bl": "Baseline functional limitation (0-100)",
}
# how a covariate reads in a sentence: its name, its unit for "per ..." (None: binary, yes vs
# no), and who the participants are at its high (or yes) and low (or no) end
COVARIATE_PHRASE = {
    "age": ("age", "year", "were older", "were younger"),
    "female": ("female sex", None, "were women", "were men"),
    "bmi": ("body mass index", "kg/m²", "had a higher body mass index", "had a lower body mass index"),
    "heavy_work": ("heavy physical work demands", None, "had heavy physical work demands",
                   "did not have heavy physical work demands"),
    "medication": ("medication use for back pain", None, "used medication for back pain",
                   "did not use medication for back pain"),
    "employed": ("employment", None, "were employed", "were not employed"),
    "education_post_secondary": ("post-secondary education", None, "had post-secondary education",
                                 "had no post-secondary education"),
    "duration_months": ("duration of pain", "month", "had had pain for longer", "had had pain for a shorter time"),
    "pain_bl": ("baseline pain", "point", "had more pain at baseline", "had less pain at baseline"),
    "function_bl": ("baseline functional limitation", "point", "had more functional limitation at baseline",
                    "had less functional limitation at baseline"),
}
NUMBER_WORD = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight", 9: "Nine"}
SENSITIVITY_NAME = {
    "two_stage_reml": "two-stage REML", "two_stage_dl": "two-stage DerSimonian-Laird",
    "two_stage_pm": "two-stage Paule-Mandel", "common_effect": "the common-effect model",
    "trial_residual_variances": "trial-specific residual variances", "low_risk_of_bias": "low risk-of-bias trials only",
    "window_average": "window-averaged follow-up", "multiple_imputation": "multiple imputation",
    "recovery_improvement": "recovery as 30% improvement",
}


def fmt(x, digits=1) -> str:
    """A number for prose: fixed decimals and a true minus sign."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "not estimable"
    return f"{x:.{digits}f}".replace("-", "−")


def fmt_ci(est, low, high, digits=1) -> str:
    return f"{fmt(est, digits)} (95% CI {fmt(low, digits)} to {fmt(high, digits)})"


def fmt_p(p) -> str:
    """p as journals print it: <0.001, three decimals below 0.1, two above ('–' if missing)."""
    if p is None or not np.isfinite(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def reason_label(code: str) -> str:
    """A log's reason code as words: 'implausible_bmi' -> 'implausible BMI'."""
    words = code.split(":")[0].strip().replace("followup", "follow-up").replace("non_numeric", "non-numeric")
    words = words.replace("_", " ")
    return re.sub(r"\bid\b", "ID", re.sub(r"\bbmi\b", "BMI", words))


def _n(x) -> str:
    return f"{int(x):,}"


class Report:
    """Lazy access to every table the book shows."""

    def __init__(self, paths: Paths | None = None):
        self.paths = paths or Paths()

    def _derived(self, name):
        return read_csv(self.paths.derived_file(name))

    def _result(self, name):
        path = self.paths.result_file(name)
        return read_csv(path) if path.exists() else None

    @functools.cached_property
    def flow(self):
        return self._derived("flow")

    @functools.cached_property
    def trials(self):
        return self._derived("trials")

    @functools.cached_property
    def harmonisation_log(self):
        return self._derived("harmonisation_log")

    @functools.cached_property
    def instruments(self):
        return self._derived("instruments")

    @functools.cached_property
    def baseline(self):
        return self._result("baseline")

    @functools.cached_property
    def estimates(self):
        return self._result("estimates")

    @functools.cached_property
    def trial_effects(self):
        return self._result("trial_effects")

    @functools.cached_property
    def heterogeneity(self):
        return self._result("heterogeneity")

    @functools.cached_property
    def reference_checks(self):
        return self._result("reference_checks")

    @functools.cached_property
    def modifiers(self):
        return self._result("modifiers")

    @functools.cached_property
    def modifier_effects(self):
        return self._result("modifier_effects")

    @functools.cached_property
    def availability(self):
        return self._result("covariate_availability")

    @functools.cached_property
    def sensitivity(self):
        return self._result("sensitivity")

    @functools.cached_property
    def influence(self):
        return self._result("influence")

    @functools.cached_property
    def provenance(self) -> dict:
        return read_provenance(self.paths) or {}

    @functools.cached_property
    def federation(self) -> dict | None:
        """The federated run's record (sites, failures, rounds, bytes); None after a pooled run."""
        path = self.paths.federation_file
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    @functools.cached_property
    def disclosure(self):
        """The sites' refusals under disclosure control (federated runs only)."""
        return self._result("disclosure")

    def federated_methods(self) -> str:
        """The methods' sentence on how a federated run was done ("" after a pooled run)."""
        fed = self.federation
        if fed is None:
            return ""
        answered = sum(s["ok"] for s in fed["sites"])
        return (f"The analysis was run federated on vantage6 [@moncada2020]: each of {_n(answered)} data stations "
                "harmonised its own trial files with the same code and returned only per-trial sufficient "
                "statistics of the continuous models, aggregates by arm, and, for the mixed logistic models, its "
                f"log-likelihood with gradient and Hessian at the parameters of each of {_n(fed['rounds'])} "
                "Newton rounds, which reach the pooled maximum-likelihood estimates. Stations refused statistics "
                "for cells below their own disclosure thresholds, as DataSHIELD does [@gaye2014]. The spline "
                "non-linearity tests, multiple imputation of covariates and the covariate deciles of the effect "
                "curves need pooled participant data and were not run.")

    def federation_paragraph(self) -> str:
        """The reproducibility appendix's account of a federated run ("" after a pooled run)."""
        fed = self.federation
        if fed is None:
            return ""
        sites = fed["sites"]
        answered = [s for s in sites if s["ok"]]
        received = sum(s.get("bytes_received", 0) for s in sites) / 1e6
        refused = self.disclosure if self.disclosure is not None else pd.DataFrame(columns=["site"])
        text = [f"## Federated run {{#sec-reproducibility-federated}}\n\nThese results come from a federated "
                f"run on vantage6: {_n(len(answered))} of {_n(len(sites))} data stations answered, the mixed "
                f"logistic models took {_n(fed['rounds'])} likelihood rounds, and the stations sent "
                f"{received:.1f} MB of statistics in all. Each station's specifications and raw files are "
                "identified by a SHA-256 checksum over them (@tbl-checksums); the data themselves stayed at the "
                f"stations. Stations refused {_n(len(refused))} statistics under their disclosure thresholds "
                f"({_n(refused.site.nunique())} stations), listed by station in `results/disclosure.csv`."]
        if not fed["complete"]:
            failed = "; ".join(f"{f['site']}: {f['error']}" for f in fed["failures"])
            text.append(f"**The run is incomplete**: {_n(len(fed['failures']))} station(s) failed, and their "
                        f"trials are not in these results ({failed}).")
        return "\n\n".join(text) + "\n"

    @property
    def demo_truth(self):
        """The truth built into synthetic data (None for real data)."""
        return self.provenance.get("demo_truth")

    # ------------------------------------------------------------------ single results

    def overall(self, comparison="none_usual_care", outcome="pain", window="short") -> pd.Series:
        e = self.estimates
        return e[(e.comparison == comparison) & (e.outcome == outcome) & (e.window == window)].iloc[0]

    def heterogeneity_of(self, comparison, outcome, window):
        """Two-stage heterogeneity (Q, I², tau²) of one overall analysis, or None."""
        h = self.heterogeneity
        h = h[(h.comparison == comparison) & (h.outcome == outcome) & (h.window == window)]
        return h.iloc[0] if len(h) else None

    def effect_text(self, comparison="none_usual_care", outcome="pain", window="short") -> str:
        """'−10.2 (95% CI −12.7 to −7.8)' for mean differences; the odds ratio for recovery."""
        r = self.overall(comparison, outcome, window)
        if r.scale == "log_or":
            return fmt_ci(np.exp(r.estimate), np.exp(r.ci_low), np.exp(r.ci_high), 2)
        return fmt_ci(r.estimate, r.ci_low, r.ci_high)

    def n_trials(self) -> int:
        return int(len(self.flow))

    def n_received(self) -> int:
        return int(self.flow.received.sum())

    def n_analysed(self) -> int:
        return int(self.flow.analysed.sum())

    def n_excluded(self) -> int:
        return int(self.flow.excluded.sum())

    def n_values_set_missing(self) -> int:
        return int(self.flow.values_set_missing.sum()) if "values_set_missing" in self.flow else 0

    # ------------------------------------------------------------------ sentences

    def _md_clause(self, comparison, outcome, window, evidence=True) -> str:
        """'−10.2 points (95% CI −12.7 to −7.8; 17 trials, 1,922 participants)'."""
        r = self.overall(comparison, outcome, window)
        if not np.isfinite(r.estimate):
            return f"not estimable ({r.note})"
        base = f"{fmt(r.estimate)} points (95% CI {fmt(r.ci_low)} to {fmt(r.ci_high)}"
        return base + (f"; {int(r.n_trials)} trials, {_n(r.n_participants)} participants)" if evidence else ")")

    def overall_paragraph(self, comparison: str) -> str:
        """The short-term effects on pain and function against one comparison, their
        heterogeneity, and how they changed at moderate and long term: a results paragraph."""
        pain, func = (self.overall(comparison, o, "short") for o in ("pain", "function"))
        favours = [(r.ci_high < 0) for r in (pain, func)]
        verdict = ("improved both pain and functional limitation" if all(favours)
                   else "did not clearly improve both outcomes")
        text = (f"Compared with {COMPARISON_LABEL[comparison]}, exercise {verdict} at short term: the mean "
                f"difference was {self._md_clause(comparison, 'pain', 'short')} for pain and "
                f"{self._md_clause(comparison, 'function', 'short')} for functional limitation on the 0-100 scales "
                f"(negative values favour exercise).")
        if np.isfinite(pain.pi_low):
            het = self.heterogeneity_of(comparison, "pain", "short")
            i2 = f", I² {het.i2:.0f}%" if het is not None and np.isfinite(het.i2) else ""
            text += (f" Effects varied between trials (pain: τ² {fmt(pain.tau2)}{i2}); in a new trial the pain effect "
                     f"would be expected between {fmt(pain.pi_low)} and {fmt(pain.pi_high)} points "
                     f"(95% prediction interval).")
        later = []
        for window, label in (("moderate", "At moderate term"), ("long", "at long term")):
            rows = [self.overall(comparison, o, window) for o in ("pain", "function")]
            if all(np.isfinite(r.estimate) for r in rows):
                a, b = rows
                later.append(f"{label} the differences were {fmt(a.estimate)} ({fmt(a.ci_low)} to {fmt(a.ci_high)}) "
                             f"for pain and {fmt(b.estimate)} ({fmt(b.ci_low)} to {fmt(b.ci_high)}) for function "
                             f"({int(a.n_trials)} trials)")
        if later:
            text += " " + "; ".join(later) + "."
        return text

    def recovery_sentence(self, comparison="none_usual_care", window="short") -> str:
        r = self.overall(comparison, "recovered", window)
        if not np.isfinite(r.estimate):
            return f"Global recovery at {WINDOW_LABEL[window]} could not be analysed ({r.note})."
        odds, low, high = np.exp([r.estimate, r.ci_low, r.ci_high])
        verdict = ("higher with exercise" if low > 1 else "lower with exercise" if high < 1
                   else "compatible with no difference")
        return (f"Global recovery (pain and functional limitation both at most 10/100) at {WINDOW_LABEL[window]} "
                f"had an odds ratio of {fmt(odds, 2)} (95% CI {fmt(low, 2)} to {fmt(high, 2)}; "
                f"{int(r.n_trials)} trials, {_n(r.n_participants)} participants) for exercise versus "
                f"{COMPARISON_LABEL[comparison]}: the odds of recovery were {verdict}.")

    def credible_modifiers(self, comparison="none_usual_care", window="short", alpha=0.05) -> pd.DataFrame:
        """Within-trial interactions significant after Holm adjustment for pain or function."""
        m = self.modifiers
        m = m[(m.comparison == comparison) & (m.window == window) & ~m.term.str.endswith(":across")
              & m.outcome.isin(["pain", "function"])]
        return m[m.p_adjusted < alpha]

    def modifier_sentence(self, comparison="none_usual_care", window="short") -> str:
        """Each interaction that survived Holm adjustment, with its estimate and what it means."""
        c = self.credible_modifiers(comparison, window)
        where = f"versus {COMPARISON_LABEL[comparison]} at {WINDOW_LABEL[window]}"
        if c.empty:
            return f"No within-trial interaction {where} remained significant after Holm adjustment."
        parts = []
        for cov, g in c.groupby(c.term.str.split(":").str[1], sort=False):
            phrase, unit, high, low = COVARIATE_PHRASE[cov]
            values = " and ".join(f"{OUTCOME_LABEL[r.outcome]} {fmt(r.estimate, 2)} [95% CI {fmt(r.ci_low, 2)} to "
                                  f"{fmt(r.ci_high, 2)}]" for r in g.itertuples())
            helped = low if g.estimate.mean() > 0 else high  # a positive interaction shrinks the benefit
            per = f"per {unit}, " if unit else "yes vs no, "
            parts.append(f"{phrase} ({int(g.n_trials.max())} trials; {per}{values}), exercise helping more "
                         f"those who {helped}")
        k = len(parts)
        return (f"{NUMBER_WORD.get(k, k)} within-trial interaction{'' if k == 1 else 's'} {where} remained "
                f"significant after Holm adjustment: " + "; ".join(parts) + ".")


def modifier_summary(rep: Report, comparison="none_usual_care", window="short") -> str:
    """One sentence for the abstract: in whom exercise helped more."""
    c = rep.credible_modifiers(comparison, window)
    if c.empty:
        return (f"No prespecified covariate modified the effect versus {COMPARISON_LABEL[comparison]} after Holm "
                "adjustment.")
    who = []
    for cov, g in c.groupby(c.term.str.split(":").str[1], sort=False):
        _, _, high, low = COVARIATE_PHRASE[cov]
        who.append(low if g.estimate.mean() > 0 else high)
    joined = who[0] if len(who) == 1 else ", ".join(who[:-1]) + " or " + who[-1]
    return (f"Versus {COMPARISON_LABEL[comparison]}, exercise helped more in participants who {joined} "
            "(within-trial interactions, Holm-adjusted p < 0.05).")


def _conclusion(est, low, high) -> str:
    if not np.isfinite(est) and not np.isfinite(low):
        return "not estimable"
    return "favours exercise" if high < 0 else "favours comparison" if low > 0 else "inconclusive"


def sensitivity_findings(rep: Report, window="short") -> pd.DataFrame:
    """For each primary result and sensitivity analysis: does the conclusion change?"""
    s = rep.sensitivity
    rows = []
    for c in ("none_usual_care", "other_conservative"):
        for o in ("pain", "function"):
            p = rep.overall(c, o, window)
            base = _conclusion(p.estimate, p.ci_low, p.ci_high)
            g = s[(s.comparison == c) & (s.outcome == o) & (s.window == window) & (s.term == "exercise")]
            for r in g.itertuples():
                rows.append({"comparison": c, "outcome": o, "analysis": r.analysis, "primary": base,
                             "sensitivity": _conclusion(r.estimate, r.ci_low, r.ci_high)})
    out = pd.DataFrame(rows)
    out["changed"] = (out.primary != out.sensitivity) & (out.sensitivity != "not estimable")
    return out


def sensitivity_sentence(rep: Report, window="short") -> str:
    f = sensitivity_findings(rep, window)
    changed = f[f.changed]
    n = len(f)
    if changed.empty:
        return (f"None of the {n} sensitivity results for the primary comparisons changed a conclusion (the direction "
                f"and significance of the effect at {WINDOW_LABEL[window]}).")
    items = "; ".join(
        f"with {SENSITIVITY_NAME.get(r.analysis, r.analysis.replace('leave_out:', 'leaving out '))}, "
        f"{OUTCOME_LABEL[r.outcome]} versus {COMPARISON_LABEL[r.comparison]} went from {r.primary} to {r.sensitivity}"
        for r in changed.itertuples())
    count = NUMBER_WORD.get(len(changed), str(len(changed)))
    return f"{count} of the {n} sensitivity results for the primary comparisons changed a conclusion: {items}."


def load(paths: Paths | None = None) -> Report:
    """A fresh Report for the chapter being run (results read lazily, never cached between runs)."""
    return Report(paths)
