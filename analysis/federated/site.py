"""What a site computes from its own trials: the same samples as the pooled analysis,
reduced to what may leave the site.

A site harmonises its raw files with its specs (the pipeline's own code), builds every
analysis sample of its trials exactly as ``analysis.analyses`` does, and keeps:

- per-trial sufficient statistics of every continuous one-stage model;
- the arrays of every mixed logistic model (they stay here: only likelihood derivatives at
  the centre's parameters leave, see :mod:`analysis.models.distributed`);
- aggregates for the book: flow counts, trial descriptions, the harmonisation log, baseline
  sums by arm, covariate availability, per-trial two-stage estimates, covariate sums for
  the effect curves;
- the refusals of disclosure control.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.analyses.arrays import Sample
from analysis.analyses.descriptives import baseline_aggregates
from analysis.analyses.modifiers import (
    availability_matrix,
    continuous_design,
    logistic_modifier_design,
    per_trial_interaction,
    trials_varying,
)
from analysis.analyses.overall import continuous_stats, per_trial_effects, recovery_design
from analysis.analyses.samples import comparison_participants, complete_cases, window_frame
from analysis.analyses.sensitivity import improvement_recovery, window_average_outcomes
from analysis.analyses.summaries import stats_entries, stats_key
from analysis.federated.disclosure import SiteSettings, refusals
from analysis.ingest.harmonise import harmonise_all
from analysis.models.distributed import SiteModel, informative_trials
from analysis.settings import AGHQ_NODES, COMPARISONS, COVARIATES, WINDOWS

__all__ = ["Site", "build_site", "site_models", "LOGISTIC_VARIANTS", "logistic_key"]

# the mixed logistic models: (analysis, outcome table, random effect, only low risk-of-bias trials)
LOGISTIC_VARIANTS = {
    "overall": ("outcomes", True, False),
    "common_effect": ("outcomes", False, False),
    "low_risk_of_bias": ("outcomes", True, True),
    "window_average": ("window_average", True, False),
    "recovery_improvement": ("improvement", True, False),
}
CONTINUOUS_VARIANTS = {"overall": "outcomes", "window_average": "window_average"}


def logistic_key(analysis, comparison, window, covariate=None) -> str:
    return "|".join([analysis, comparison, "recovered", window] + ([covariate] if covariate else []))


@dataclass
class Site:
    """A site's analysis-ready view of its own trials. ``public()`` is what it discloses in
    the first round; ``models`` stay, to answer the centre's likelihood requests."""

    trial_ids: list
    digest: str
    tables: dict = field(default_factory=dict)  # aggregate tables (records) for the book
    continuous: dict = field(default_factory=dict)  # "variant|key" -> {trial_id: entry}
    logistic: dict = field(default_factory=dict)  # key -> description (n, trials, set aside)
    models: dict = field(default_factory=dict)  # key -> LogisticDesign of its trials (never disclosed)
    two_stage: list = field(default_factory=list)  # per-trial estimates (forest plots, two-stage)
    interactions: dict = field(default_factory=dict)  # modifier key -> per-trial logistic estimates
    curves: dict = field(default_factory=dict)  # modifier key -> covariate sums of the sample
    refused: list = field(default_factory=list)

    def public(self) -> dict:
        return {"trial_ids": self.trial_ids, "digest": self.digest, "tables": self.tables,
                "continuous": self.continuous, "logistic": self.logistic, "two_stage": self.two_stage,
                "interactions": self.interactions, "curves": self.curves, "refused": self.refused}


def _digest(folder: Path) -> str:
    """SHA-256 over the site's specs and raw files (provenance; reveals nothing)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _records(df: pd.DataFrame) -> list:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def build_site(folder: Path, settings: SiteSettings) -> Site:
    """Harmonise the site's trials (``folder/specs``, ``folder/raw``) and compute everything
    it can disclose, applying disclosure control."""
    folder = Path(folder)
    _, tables = harmonise_all(folder / "specs", folder / "raw")
    participants, outcomes, visits = tables["participants"], tables["outcomes"], tables["visits"]
    trials = tables["trials"]
    site = Site(sorted(trials.trial_id.astype(str)), _digest(folder))
    site.tables = {name: _records(tables[name]) for name in ("flow", "trials", "harmonisation_log")}
    site.tables["availability"] = _records(availability_matrix(participants))
    site.tables["baseline"] = _records(_baseline(participants, settings, site))
    low_rob = set(trials.loc[trials.risk_of_bias == "low", "trial_id"].astype(str))
    outcome_tables = {"outcomes": outcomes, "window_average": window_average_outcomes(visits),
                      "improvement": improvement_recovery(participants, outcomes)}
    # each comparison's participants at each window, selected once (sample_from_frame's first
    # step; every sample below is its second step, complete cases)
    frames = {(name, w.name): window_frame(participants, table, w.name)
              for name, table in outcome_tables.items() for w in WINDOWS}
    arms = {(*key, c): comparison_participants(frame, c) for key, frame in frames.items() for c in COMPARISONS}
    for w in WINDOWS:
        for c in COMPARISONS:
            for variant, table in CONTINUOUS_VARIANTS.items():
                for o in ("pain", "function"):
                    _continuous(site, variant, arms[table, w.name, c], c, o, w.name, settings)
            for analysis, (table, _, only_low) in LOGISTIC_VARIANTS.items():
                sample = complete_cases(arms[table, w.name, c], "recovered")
                if only_low:
                    sample = sample[sample.trial_id.astype(str).isin(low_rob)]
                _logistic(site, logistic_key(analysis, c, w.name), sample, recovery_design, settings)
            for o in ("pain", "function", "recovered"):
                _two_stage(site, arms["outcomes", w.name, c], c, o, w.name, settings)
            for cov in COVARIATES:
                for o in ("pain", "function", "recovered"):
                    _modifier(site, arms["outcomes", w.name, c], c, o, w.name, cov, settings)
    return site


def _baseline(participants, settings, site):
    """Baseline sums by trial and arm type; a trial-arm with fewer than ``min_cell``
    participants is refused."""
    agg = baseline_aggregates(participants)
    small = agg.n < settings.min_cell
    for tid, arm in agg.loc[small, ["trial_id", "arm"]].drop_duplicates().itertuples(index=False):
        site.refused.append({"trial_id": str(tid), "analysis": f"baseline|{arm}",
                             "reason": f"fewer than {settings.min_cell} participants in the arm"})
    return agg[~small]


def _disclosed(site, key, sample, settings, outcome=None):
    """The sample without the trials whose statistics are refused (logged)."""
    refused = refusals(sample, settings, outcome)
    for tid, reason in refused.items():
        site.refused.append({"trial_id": tid, "analysis": key, "reason": reason})
    return sample[~sample.trial_id.astype(str).isin(refused)] if refused else sample


def _continuous(site, variant, arms, c, o, w, settings):
    sample = complete_cases(arms, o)
    key = f"{variant}|{stats_key(c, o, w)}"
    sample = _disclosed(site, key, sample, settings)
    if sample.empty:
        return
    st = continuous_stats(sample, o)
    site.continuous[key] = stats_entries(st, pd.Series(True, index=st.trial_ids))


def _logistic(site, key, sample, design_of, settings, covariate=None, disclosed=False):
    if not disclosed:
        sample = _disclosed(site, key, sample, settings, "recovered")
    if sample.empty:
        return
    design = design_of(sample) if covariate is None else design_of(sample, covariate)
    informative = set(map(str, informative_trials(design)))
    trial_ids = sorted(map(str, pd.unique(design.trial)))
    site.logistic[key] = {"trials": trial_ids, "n": int(len(design.y)), "informative": sorted(informative),
                          "n_common": int(design.x.shape[1])}
    if informative:
        keep = np.isin(design.trial.astype(str), list(informative))
        site.models[key] = design.subset(keep)


def _two_stage(site, arms, c, o, w, settings):
    """Each trial's own estimate (forest plots, two-stage sensitivity analyses)."""
    sample = complete_cases(arms, o)
    sample = _disclosed(site, f"trial_effect|{stats_key(c, o, w)}", sample, settings,
                        "recovered" if o == "recovered" else None)
    if sample.empty:
        return
    eff = per_trial_effects(sample, o)
    arms = sample.groupby("trial_id").exercise.sum()
    for r in eff.itertuples():
        n_ex = int(arms[r.trial_id])
        site.two_stage.append({"comparison": c, "outcome": o, "window": w, "trial_id": str(r.trial_id), "n": int(r.n),
                               "n_exercise": n_ex, "n_control": int(r.n) - n_ex, "estimate": float(r.estimate),
                               "variance": float(r.variance)})


def _modifier(site, arms, c, o, w, cov, settings):
    key = stats_key(c, o, w, cov)
    logged = logistic_key("modifier", c, w, cov) if o == "recovered" else f"modifier|{key}"
    # refusals drop whole trials, so the trial means of the covariate are those of the pooled sample
    d = _disclosed(site, logged, complete_cases(arms, o, cov), settings, "recovered" if o == "recovered" else None)
    if d.empty:
        return
    d = Sample.from_frame(d, cov)
    varies = trials_varying(d)
    x = d[cov]
    site.curves[key] = {"n": int(len(x)), "total": float(x.sum()), "total_sq": float((x**2).sum())}
    if o != "recovered":
        site.continuous[f"modifier|{key}"] = stats_entries(continuous_design(d, o, cov), varies)
        return
    _logistic(site, logistic_key("modifier", c, w, cov), d, logistic_modifier_design, settings, covariate=cov,
              disclosed=True)
    desc = site.logistic.get(logistic_key("modifier", c, w, cov))
    if desc is not None:
        desc["varies"] = {str(t): bool(v) for t, v in varies.items()}
    per_trial = per_trial_interaction(d, cov)
    site.interactions[key] = _records(per_trial.assign(trial_id=per_trial.trial_id.astype(str)))


def site_models(site: Site, n_nodes: int = AGHQ_NODES) -> dict:
    """Prepare each logistic model's arrays once for the likelihood rounds."""
    return {key: SiteModel(design, n_nodes) for key, design in site.models.items()}

