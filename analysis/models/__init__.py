"""Estimators on arrays: what the analyses fit, with no files, specs or domain names.

May import: numpy, scipy, pandas, statsmodels, the standard library and other modules of
this layer. Domain constants (which covariates are binary, plausible ranges) come in as
arguments.

Public names: ``onestage.sufficient_stats``, ``onestage.fit_reml`` (one-stage linear mixed
model by REML from per-trial statistics, Satterthwaite df), ``glmm.fit_mixed_logistic``
(adaptive Gauss-Hermite ML), ``meta.pool`` (two-stage random-effects pooling),
``pertrial.per_trial_logistic`` (a logistic regression in every trial at once) and
``imputation.ChainedImputer`` / ``imputation.impute_once`` / ``imputation.rubin`` (multiple
imputation within trials: set up once, drawn m times), and ``distributions`` (t, normal and
chi-squared quantiles and upper tails for intervals and tests).
"""

__all__ = ["onestage", "glmm", "meta", "pertrial", "imputation", "distributions"]
