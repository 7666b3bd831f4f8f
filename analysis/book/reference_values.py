"""Reference values from established implementations, each headed by the call that made it.

Source: R 4.2.2 with metafor 3.8-1, lme4 1.1-31, lmerTest 3.1-3 and pbkrtest 0.5-2, on the
data in data/reference/ (see its README). Used by the tests and the validation appendix,
which sets them beside the project's own values (results/reference_checks.csv, written by
analysis.analyses.validation).
"""


# rma(yi, vi, data = dat, method = M)
BCG = {
    "REML": dict(
        estimate=-0.714532, se=0.179782, ci_low=-1.066898, ci_high=-0.362167, tau2=0.313243, i2=92.2214, h2=12.8558
    ),
    "DL": dict(
        estimate=-0.714117, se=0.178742, ci_low=-1.064445, ci_high=-0.363789, tau2=0.308760, i2=92.1173, h2=12.6861
    ),
    "PM": dict(
        estimate=-0.714970, se=0.180898, ci_low=-1.069524, ci_high=-0.360417, tau2=0.318094, i2=92.3309, h2=13.0393
    ),
    "ML": dict(
        estimate=-0.711199, se=0.171897, ci_low=-1.048111, ci_high=-0.374288, tau2=0.280028, i2=91.3783, h2=11.5986
    ),
}
BCG_Q = 152.2330
# rma(yi, vi, method = "REML", test = "knha")
BCG_REML_HK = dict(se=0.180792, ci_low=-1.108444, ci_high=-0.320621)
# predict(rma(yi, vi)): normal; and the t(k-2) interval of Higgins et al. 2009
BCG_PI_NORMAL = (-1.866692, 0.437628)
BCG_PI_T = (-2.008376, 0.579311)

# lmer(y ~ 0 + trial + trial:y0 + treat + (0 + treat | trial), REML = TRUE), lmerTest/pbkrtest
M1 = dict(theta=-7.37829970, se=2.03147711, df_satterthwaite=6.945890, df_kr=6.871422,
          se_kr=2.03879311, tau2=23.81818959, sigma2=178.89297736, remlcrit=5708.65289812)

# lmer(y ~ 0 + trial + trial:y0 + trial:xc + treat + treat:xc + treat:xbar + (0 + treat | trial))
M2 = dict(within=0.83702297, within_se=0.25384811, within_df=679.460671, across=3.32166926,
          across_se=2.40069170, treat=-100.71733278, tau2=19.55488747, sigma2=174.75509075)

# glmer(recovered ~ 0 + trial + y0 + treat + (0 + treat | trial), binomial, nAGQ = 15)
G15 = dict(log_or=0.78598791, se=0.26144137, tau2=0.28520928, loglik=-426.95939250, y0=-0.03221022)
# glm(recovered ~ 0 + trial + y0 + treat, binomial)
G_COMMON = dict(log_or=0.87524229, se=0.16587615, loglik=-428.42162309)

# per-trial lm(y ~ y0 + treat), then rma(yi, vi, method = M)
TWO_STAGE_YI = dict(S1=(-5.060883, 17.389881), S2=(-12.583856, 8.208963), S3=(-6.503119, 7.099232),
                    S4=(-7.747951, 8.562463), S5=(-16.746989, 6.249475), S6=(-2.451369, 5.178548),
                    S7=(-8.329600, 5.844627), S8=(1.792632, 16.479207))
TWO_STAGE = {
    "REML": dict(estimate=-7.530236, se=1.994496, tau2=23.000092, i2=74.2493),
    "DL": dict(estimate=-7.528161, se=2.002371, tau2=23.248125),
    "PM": dict(estimate=-7.528346, se=2.001669, tau2=23.225970),
}
TWO_STAGE_HK = dict(se=2.001497, ci_low=-12.263024, ci_high=-2.797448)

# boundary_reference.csv with M1: singular fit, identical to lm(y ~ 0 + trial + trial:y0 + treat)
BOUNDARY = dict(theta=-3.62980342, se=2.25267738, sigma2=251.79764177, tau2=0.0)


# The checks the validation appendix shows: check id (as in results/reference_checks.csv) ->
# (reference implementation and data, quantity, published value).
_BCG = "metafor rma(), dat.bcg"
_M1, _M2 = "lme4/lmerTest lmer(), M1", "lme4/lmerTest lmer(), M2"
_G15, _BOUNDARY = "lme4 glmer(nAGQ = 15)", "lme4 lmer(), boundary case"
CHECKS = {
    **{f"bcg.{m}.{q}": (_BCG, f"{m}: {'log risk ratio' if q == 'estimate' else 'tau²'}", BCG[m][q])
       for m in ("REML", "DL", "PM", "ML") for q in ("estimate", "tau2")},
    "bcg.REML_HK.se": ("metafor rma(test = 'knha')", "REML + Hartung-Knapp: SE", BCG_REML_HK["se"]),
    "M1.theta": (_M1, "theta", M1["theta"]),
    "M1.se": (_M1, "SE", M1["se"]),
    "M1.df": (_M1, "Satterthwaite df", M1["df_satterthwaite"]),
    "M1.tau2": (_M1, "tau²", M1["tau2"]),
    "M1.remlcrit": (_M1, "REML criterion", M1["remlcrit"]),
    "M2.within": (_M2, "within-trial interaction", M2["within"]),
    "M2.within_df": (_M2, "within-trial Satterthwaite df", M2["within_df"]),
    "M2.across": (_M2, "across-trial term", M2["across"]),
    "G15.log_or": (_G15, "log odds ratio", G15["log_or"]),
    "G15.se": (_G15, "SE", G15["se"]),
    "G15.tau2": (_G15, "tau²", G15["tau2"]),
    "G15.loglik": (_G15, "log-likelihood", G15["loglik"]),
    "boundary.theta": (_BOUNDARY, "theta (tau² = 0)", BOUNDARY["theta"]),
    "boundary.se": (_BOUNDARY, "SE", BOUNDARY["se"]),
}
