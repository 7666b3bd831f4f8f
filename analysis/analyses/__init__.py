"""The prespecified analyses: master data -> results rows (CONTRACT.md), fitted through
``models``.

May import: ``models``, the top-level infrastructure (``settings``, ``paths``, ``io``,
``errors``, ``timing``, ``provenance``) and other modules of this layer; never ``ingest``
(it works on the master data, whoever made it) or ``book`` (it never formats).

Public names: ``samples`` (analysis samples as CONTRACT.md defines them), ``arrays`` (the
same samples as numpy masks of each comparison's sorted participants, which the fits use),
``overall.overall_estimates`` /
``overall.trial_effects``, ``modifiers.modifier_estimates``,
``sensitivity.sensitivity_estimates``, ``summaries.export_trial_stats`` /
``summaries.fit_from_stats``, ``validation.reference_estimates`` and ``fit.fit_all`` (all
of them, written to results/).
"""

__all__ = ["samples", "arrays", "overall", "modifiers", "sensitivity", "summaries", "validation", "fit"]
