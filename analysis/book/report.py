"""What the book's chapters call: results and derived data loaded once, and sentences
generated from the numbers (so prose cannot drift from the results)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from analysis.io import read_csv
from analysis.paths import Paths
from analysis.provenance import read_provenance

__all__ = [
    "Report",
    "load",
    "sensitivity_findings",
    "sensitivity_sentence",
    "fmt",
    "fmt_ci",
    "COMPARISON_LABEL",
    "OUTCOME_LABEL",
    "COVARIATE_LABEL",
]

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


def fmt(x, digits=1) -> str:
    """A number for prose: fixed decimals and a true minus sign."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "not estimable"
    return f"{x:.{digits}f}".replace("-", "−")


def fmt_ci(est, low, high, digits=1) -> str:
    return f"{fmt(est, digits)} (95% CI {fmt(low, digits)} to {fmt(high, digits)})"


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
    def participants(self):
        return self._derived("participants")

    @functools.cached_property
    def outcomes(self):
        return self._derived("outcomes")

    @functools.cached_property
    def flow(self):
        return self._derived("flow")

    @functools.cached_property
    def trials(self):
        return self._derived("trials")

    @functools.cached_property
    def exclusions(self):
        return self._derived("exclusions")

    @functools.cached_property
    def harmonisation_log(self):
        return self._derived("harmonisation_log")

    @functools.cached_property
    def instruments(self):
        return self._derived("instruments")

    @functools.cached_property
    def estimates(self):
        return self._result("estimates")

    @functools.cached_property
    def trial_effects(self):
        return self._result("trial_effects")

    @functools.cached_property
    def reference_checks(self):
        return self._result("reference_checks")

    @functools.cached_property
    def provenance(self) -> dict:
        return read_provenance(self.paths) or {}

    @property
    def demo_truth(self):
        """The truth built into synthetic data (None for real data)."""
        return self.provenance.get("demo_truth")

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

    # ------------------------------------------------------------------ numbers for prose

    def overall(self, comparison="none_usual_care", outcome="pain", window="short") -> pd.Series:
        e = self.estimates
        return e[(e.comparison == comparison) & (e.outcome == outcome) & (e.window == window)].iloc[0]

    def effect_text(self, comparison="none_usual_care", outcome="pain", window="short") -> str:
        """'-10.2 (95% CI -12.7 to -7.8)' for mean differences; OR for recovery."""
        r = self.overall(comparison, outcome, window)
        if r.scale == "log_or":
            return fmt_ci(np.exp(r.estimate), np.exp(r.ci_low), np.exp(r.ci_high), 2)
        return fmt_ci(r.estimate, r.ci_low, r.ci_high)

    def effect_sentence(self, comparison, outcome, window) -> str:
        r = self.overall(comparison, outcome, window)
        if not np.isfinite(r.estimate):
            return (f"For {OUTCOME_LABEL[outcome]} at {WINDOW_LABEL[window]} versus {COMPARISON_LABEL[comparison]}, "
                    f"no estimate was possible ({r.note}).")
        if r.scale == "log_or":
            what = f"the odds ratio for recovery was {self.effect_text(comparison, outcome, window)}"
        else:
            what = (
                f"the mean difference was {self.effect_text(comparison, outcome, window)} points on the 0-100 scale"
                f" ({_direction(r.ci_low, r.ci_high)})"
            )
        hetero = f"; tau² was {fmt(r.tau2, 2)}" + (
            f" and the 95% prediction interval ran from {fmt(r.pi_low)} to {fmt(r.pi_high)}"
            if np.isfinite(r.pi_low) and r.scale == "md"
            else ""
        )
        return (f"For {OUTCOME_LABEL[outcome]} at {WINDOW_LABEL[window]} versus {COMPARISON_LABEL[comparison]} "
                f"({int(r.n_trials)} trials, {int(r.n_participants)} participants), {what}{hetero}.")

    def n_trials(self) -> int:
        return int(len(self.flow))

    def n_received(self) -> int:
        return int(self.flow.received.sum())

    def n_analysed(self) -> int:
        return int(self.flow.analysed.sum())

    def n_excluded(self) -> int:
        return int(self.flow.excluded.sum())

    def credible_modifiers(self, comparison="none_usual_care", window="short", alpha=0.05) -> pd.DataFrame:
        """Within-trial interactions significant after Holm adjustment for pain or function."""
        m = self.modifiers
        m = m[(m.comparison == comparison) & (m.window == window) & ~m.term.str.endswith(":across")
              & m.outcome.isin(["pain", "function"])]
        return m[m.p_adjusted < alpha]

    def modifier_sentence(self, comparison="none_usual_care", window="short") -> str:
        c = self.credible_modifiers(comparison, window)
        if c.empty:
            return (f"No within-trial interaction was significant after Holm adjustment versus "
                    f"{COMPARISON_LABEL[comparison]} at {WINDOW_LABEL[window]}.")
        parts = []
        for cov, g in c.groupby(c.term.str.split(":").str[1], sort=False):
            outs = " and ".join(f"{OUTCOME_LABEL[o]} {fmt_ci(r.estimate, r.ci_low, r.ci_high, 2)}"
                                for o, r in zip(g.outcome, g.itertuples()))
            parts.append(f"{COVARIATE_LABEL[cov].lower()} ({outs}; {int(g.n_trials.max())} trials)")
        return (f"After Holm adjustment, the within-trial interactions that remained significant versus "
                f"{COMPARISON_LABEL[comparison]} at {WINDOW_LABEL[window]} were: " + "; ".join(parts) + ".")


def _direction(low, high) -> str:
    if high < 0:
        return "favouring exercise"
    return "favouring the comparison" if low > 0 else "a difference compatible with none"


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
        return (f"None of the {n} sensitivity results for the primary comparisons changed the conclusion "
                f"(the direction and the significance of the effect at {WINDOW_LABEL[window]}).")
    items = "; ".join(f"{r.analysis} for {OUTCOME_LABEL[r.outcome]} versus {COMPARISON_LABEL[r.comparison]} "
                      f"({r.primary} → {r.sensitivity})" for r in changed.itertuples())
    return f"{len(changed)} of {n} sensitivity results changed a conclusion: {items}."


@functools.lru_cache(maxsize=4)
def load(data_dir=None, results_dir=None) -> Report:
    """One Report per kernel (chapters call this in their setup cell)."""
    paths = Paths() if data_dir is None else Paths(data_dir, results_dir)
    return Report(paths)
