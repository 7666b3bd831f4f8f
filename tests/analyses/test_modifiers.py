"""analysis.modifiers: within-trial interactions, against the demo truth, a planted
ecological bias, a dense likelihood, statsmodels (MixedLM and GLM) and the two-stage path."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.analyses.modifiers import (
    MODIFIER_COLUMNS,
    availability_matrix,
    curve_frame,
    effect_curve,
    effect_curve_columns,
    fit_modifier,
    modifier_estimates,
    per_trial_interaction,
    per_trial_interactions,
    rcs_nonlinear_term,
)
from analysis.demo import TRUTH
from analysis.models.onestage import (
    fit_reml,
    reml_deviance,
    reml_deviance_dense,
    sufficient_stats,
)
from tests.simulate import continuous_ipd


@pytest.fixture(scope="module")
def short_term(demo_run):
    table, curves = modifier_estimates(demo_run.tables["participants"], demo_run.tables["outcomes"],
                                       windows=["short"], outcomes_list=("pain", "function"))
    return table, curves


CASES = [(c, o, cov, truth) for o in ("pain", "function") for c, cov, truth in [
    ("none_usual_care", "heavy_work", TRUTH["modifiers"]["heavy_work"]),
    ("none_usual_care", "medication", TRUTH["modifiers"]["medication"]),
    ("none_usual_care", "bmi", TRUTH["bmi_modifier_none_usual_care"]),
    ("other_conservative", "heavy_work", TRUTH["modifiers"]["heavy_work"]),
    ("other_conservative", "medication", TRUTH["modifiers"]["medication"]),
    ("other_conservative", "bmi", 0.0),  # BMI modifies the effect vs no treatment/usual care only
]]


@pytest.mark.parametrize("comparison, outcome, covariate, truth", CASES)
def test_demo_within_trial_ci_covers_truth(short_term, comparison, outcome, covariate, truth):
    table, _ = short_term
    term = f"exercise:{covariate}"  # noqa: F841 (read by DataFrame.query as @term)
    r = table.query("comparison == @comparison and outcome == @outcome and term == @term").iloc[0]
    assert r.ci_low <= truth <= r.ci_high


def test_null_covariates_mostly_not_significant_after_holm(short_term):
    table, _ = short_term
    real = {"exercise:heavy_work", "exercise:medication", "exercise:bmi"}
    nulls = table[
        ~table.term.str.endswith(":across") & ~table.term.isin(real) & (table.comparison != "any_non_exercise")
    ]
    assert (nulls.p_adjusted < 0.05).mean() <= 0.1
    assert (nulls.p_adjusted >= nulls.p).all()


def test_table_shape_and_evidence_base(short_term):
    table, curves = short_term
    assert list(table.columns) == MODIFIER_COLUMNS
    assert len(table) == 3 * 2 * 10 * 2  # comparisons x outcomes x covariates x (within, across)
    assert (table.analysis == "modifier").all()
    within = table[~table.term.str.endswith(":across")]
    assert (within.n_trials >= within.trials_within).all() and (within.trials_within >= 2).all()
    # BMI was not measured by every trial: the evidence base is smaller than for age
    nuc = within[(within.comparison == "none_usual_care") & (within.outcome == "pain")].set_index("term")
    assert nuc.loc["exercise:bmi", "n_trials"] < nuc.loc["exercise:age", "n_trials"]
    assert set(curves.covariate) == set(c.split(":")[1] for c in within.term)


def test_availability_matrix(demo_run):
    m = availability_matrix(demo_run.tables["participants"])
    assert set(m.status) == {"measured", "partly missing", "not measured"}
    assert len(m) == 27 * 10
    bmi = m[m.covariate == "bmi"].set_index("trial_id").status
    assert (bmi == "not measured").sum() > 0


def test_planted_ecological_bias_does_not_leak_into_within_estimate():
    """Trials whose mean covariate drives their exercise effect (across slope 1.5 per unit)
    but no within-trial interaction. With little spread within trials and much between them
    (as for BMI across populations), the within estimate stays near 0 while a naive pooled
    interaction (covariate not centred) is pulled to the ecological association."""
    rng = np.random.default_rng(99)
    d = continuous_ipd(rng, k=20, n_range=(80, 120), tau=0.5, interaction=0.0, across=1.5,
                       within_sd=1.0, between_sd=5.0)
    d = d.rename(columns={"treat": "exercise", "y": "pain", "y0": "pain_bl"}).assign(comparison="x", bmi=lambda x: x.x)
    xbar = d.groupby("trial_id").bmi.transform("mean")
    within = sufficient_stats(
        d.trial_id,
        d.pain,
        np.column_stack([d.exercise, d.exercise * (d.bmi - xbar), d.exercise * xbar]),
        np.column_stack([d.pain_bl, d.bmi - xbar]),
    )
    f = fit_reml(within)
    se = np.sqrt(np.diag(f.cov))
    assert abs(f.coef[1]) < 2.5 * se[1]  # within: no interaction
    assert f.coef[2] == pytest.approx(1.5, abs=3 * se[2])  # across: the ecological slope
    naive = sufficient_stats(d.trial_id, d.pain, np.column_stack([d.exercise, d.exercise * d.bmi]),
                             np.column_stack([d.pain_bl, d.bmi]))
    fn = fit_reml(naive)
    assert abs(fn.coef[1]) > 3 * np.sqrt(fn.cov[1, 1])  # the naive pooled interaction is biased


def test_modifier_likelihood_equals_dense_evaluation():
    rng = np.random.default_rng(4)
    d = continuous_ipd(rng, k=4, n_range=(10, 25), interaction=0.5)
    xbar = d.groupby("trial_id").x.transform("mean")
    xc = d.x - xbar
    x = np.column_stack([d.treat, d.treat * xc, d.treat * xbar])
    z = np.column_stack([d.y0, xc])
    st = sufficient_stats(d.trial_id, d.y, x, z)
    for s2, t2 in [(120.0, 4.0), (80.0, 0.0)]:
        assert reml_deviance(st, s2, t2) == pytest.approx(reml_deviance_dense(d.trial_id, d.y, x, z, s2, t2), rel=1e-9)


def test_interaction_agrees_with_statsmodels_mixedlm():
    """MixedLM on the same model; interaction estimates to 1e-4 relative (MixedLM stops early)."""
    import statsmodels.formula.api as smf

    d = continuous_ipd(np.random.default_rng(21), k=6, n_range=(60, 90), interaction=0.8)
    d["xbar"] = d.groupby("trial_id").x.transform("mean")
    d["xc"] = d.x - d.xbar
    d["y0c"] = d.y0 - d.groupby("trial_id").y0.transform("mean")
    formula = "y ~ 0 + C(trial_id) + C(trial_id):y0c + C(trial_id):xc + treat + treat:xc + treat:xbar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm(formula, d, groups="trial_id", re_formula="0 + treat")
        default = model.fit(reml=True)
        # MixedLM's default optimiser stops early here (tau^2 0.09 against 0.85); run to convergence
        m = model.fit(reml=True, method="nm", maxiter=20000)
    st = sufficient_stats(d.trial_id, d.y, np.column_stack([d.treat, d.treat * d.xc, d.treat * d.xbar]),
                          np.column_stack([d.y0, d.xc]))
    f = fit_reml(st)
    assert f.coef[1] == pytest.approx(m.params["treat:xc"], rel=1e-4)
    assert f.coef[2] == pytest.approx(m.params["treat:xbar"], rel=1e-4)
    assert f.deviance <= -2 * default.llf + 1e-8 and f.deviance <= -2 * m.llf + 1e-8


def test_one_and_two_stage_agree_on_large_trials(demo_run):
    """With large trials both approaches estimate the same within-trial interaction:
    one-stage and the 'deft' two-stage estimate differ by less than one SE."""
    rng = np.random.default_rng(5)
    d = continuous_ipd(rng, k=8, n_range=(600, 800), interaction=0.5, tau=1.0)
    d = d.rename(columns={"treat": "exercise", "y": "pain", "y0": "pain_bl", "x": "bmi"})
    d["participant_id"] = np.arange(len(d)).astype(str)
    d["comparison"] = np.where(d.exercise == 1, "exercise", "none_usual_care")
    outcomes = d[["trial_id", "participant_id", "pain"]].assign(window="short", function=np.nan, recovered=np.nan)
    rows, columns = fit_modifier(d.drop(columns="pain"), outcomes, "none_usual_care", "pain", "short", "bmi")
    curve = curve_frame([columns])
    r = rows[0]
    assert r["estimate"] == pytest.approx(0.5, abs=3 * r["se"])
    assert abs(r["two_stage_estimate"] - r["estimate"]) < r["se"] and r["two_stage_disagrees"] is False
    assert 0 <= r["nonlinearity_p"] <= 1 and (curve.kind == "curve").sum() == 25
    deciles = curve[curve.kind == "decile"].value.to_numpy()  # where the data are: nine increasing deciles
    assert len(deciles) == 9 and np.all(np.diff(deciles) > 0)
    grid = curve[curve.kind == "curve"].value
    assert grid.min() <= deciles.min() and deciles.max() <= grid.max()  # inside the 5th-95th percentile grid


def test_covariate_measured_in_one_trial_is_not_estimable(demo_run):
    p = demo_run.tables["participants"].copy()
    nuc_trials = set(p.loc[p.comparison == "none_usual_care", "trial_id"])
    measured = sorted(set(p.loc[p.employed.notna(), "trial_id"]) & nuc_trials)
    only = measured[0]
    p.loc[p.trial_id != only, "employed"] = np.nan
    rows, curve = fit_modifier(p, demo_run.tables["outcomes"], "none_usual_care", "pain", "short", "employed")
    assert curve is None
    for r in rows:
        assert np.isnan(r["estimate"]) and "not estimable" in r["note"] and f"1 trial(s) ({only})" in r["note"]
        assert r["n_trials"] == 1 and r["converged"] is False


def test_rcs_term_is_zero_below_first_knot_and_linear_beyond_last():
    knots = (0.0, 1.0, 3.0)
    x = np.array([-2.0, 0.0, 5.0, 6.0, 7.0])
    s = rcs_nonlinear_term(x, knots)
    assert s[0] == 0 and s[1] == 0
    assert s[3] - s[2] == pytest.approx(s[4] - s[3])  # linear tail (restricted)


def test_trial_specific_logistic_terms_equal_glm():
    """The mixed logistic with trial-specific slopes, tau fixed at 0, is a logistic GLM with
    trial dummies and trial x covariate terms (statsmodels as the second implementation)."""
    import statsmodels.api as sm

    from analysis.models.glmm import fit_mixed_logistic

    rng = np.random.default_rng(12)
    rows = []
    for i in range(5):
        n = 200
        t = np.arange(n) % 2
        x = rng.normal(0, 1, n)
        eta = -1 + 0.3 * i + (0.2 + 0.2 * i) * x + 0.6 * t + 0.4 * t * x
        rows.append(pd.DataFrame(dict(trial=f"L{i}", y=rng.binomial(1, 1 / (1 + np.exp(-eta))), x=x, t=t)))
    d = pd.concat(rows, ignore_index=True)
    d["xc"] = d.x - d.groupby("trial").x.transform("mean")
    f = fit_mixed_logistic(
        d.trial, d.y, d[["xc"]].to_numpy() * d[["t"]].to_numpy(), d.t, z=d[["xc"]], random_effect=False
    )
    dummies = pd.get_dummies(d.trial, dtype=float)
    design = pd.concat([dummies, dummies.mul(d.xc, axis=0).add_suffix(":xc")], axis=1).assign(t=d.t, txc=d.t * d.xc)
    g = sm.GLM(d.y, design, family=sm.families.Binomial()).fit(tol=1e-12)
    assert f.beta[0] == pytest.approx(g.params["txc"], rel=1e-7)
    assert f.theta == pytest.approx(g.params["t"], rel=1e-7)
    assert f.se_beta[0] == pytest.approx(g.bse["txc"], rel=1e-5)


def test_recovery_effect_curves_pass_through_the_overall_effect(demo_results):
    """Regression: recovery curves were drawn with an extra offset (the across-trial term
    applied twice), putting the curve at the middle of its covariate range 9 standard errors
    from the overall log odds ratio (-1.21 against 0.14 for BMI). Source of truth: with
    theta the effect at xc = 0 and xbar = 0, the curve near the covariate's centre estimates
    about the average effect of the sample, i.e. the overall estimate; 2.5 SE allows the
    skewed covariates (duration), whose range midpoint is not their mean."""
    res = demo_results.paths.results_dir
    curves = pd.read_csv(res / "modifier_effects.csv").query("outcome == 'recovered' and kind == 'curve'")
    overall = pd.read_csv(res / "estimates.csv").query("outcome == 'recovered'")
    middle = curves.groupby(["comparison", "window", "covariate"]).estimate.agg(lambda e: e.iloc[len(e) // 2])
    merged = middle.rename("middle").reset_index().merge(overall, on=["comparison", "window"])
    assert len(merged) >= 30
    assert ((merged.middle - merged.estimate).abs() < 2.5 * merged.se).all()


def test_holm_equals_statsmodels():
    """Source of truth: statsmodels' multipletests(method="holm"), on random p-values, with
    ties, with values that cap at 1, and one p-value; to 1e-15 (the same products)."""
    from statsmodels.stats.multitest import multipletests

    from analysis.analyses.modifiers import holm

    rng = np.random.default_rng(7)
    cases = [rng.uniform(size=10), rng.uniform(0, 0.05, size=7), np.array([0.01, 0.01, 0.04, 0.04, 0.5]),
             np.array([0.3, 0.6, 0.9]), np.array([0.02])]
    for p in cases:
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_holm_by_family_adjusts_each_family_as_statsmodels():
    """Source of truth: statsmodels' multipletests(method="holm") on each comparison,
    outcome and window's within-trial p-values, gathered with a pandas groupby (as the
    families were gathered before the dictionary), to 1e-15. The across-trial terms, missing
    p-values and rows without a family label keep their p_adjusted (NaN); families are
    interleaved in the table and hold ties."""
    from statsmodels.stats.multitest import multipletests

    from analysis.analyses.modifiers import holm_by_family

    rng = np.random.default_rng(11)
    n = 120
    table = pd.DataFrame({
        "comparison": rng.choice(["a", "b"], n), "outcome": rng.choice(["pain", "function"], n),
        "window": rng.choice(["short", "long"], n),
        "term": rng.choice(["exercise:age", "exercise:age:across", "exercise:bmi"], n),
        "p": np.where(rng.uniform(size=n) < 0.1, np.nan, rng.choice(np.r_[rng.uniform(size=40), 0.01], n)),
        "p_adjusted": np.nan,
    }).astype({"comparison": "str", "outcome": "str", "window": "str", "term": "str"})
    table.loc[[3, 50], "window"] = None
    made = holm_by_family(table)
    expected = np.full(n, np.nan)
    within = ~table.term.str.endswith(":across") & table.p.notna()
    for _, idx in table[within].groupby(["comparison", "outcome", "window"]).groups.items():
        expected[idx] = multipletests(table.p[idx], method="holm")[1]
    assert np.isnan(expected[[3, 50]]).all() and within.sum() > 50
    np.testing.assert_allclose(made.p_adjusted, expected, rtol=0, atol=1e-15)
    pd.testing.assert_frame_equal(made.drop(columns="p_adjusted"), table.drop(columns="p_adjusted"))


def test_curve_frame_is_the_concatenation_of_the_curves_frames():
    """Source of truth: pd.concat of one effect_curve frame per curve (what the modifier
    tables were made from before curve_frame); equal values, dtypes and order, exactly."""
    rng = np.random.default_rng(3)
    curves = []
    for j, (grid, kind) in enumerate([([0.0, 1.0], ["level"] * 2), (np.linspace(-1, 2, 25), ["curve"] * 25),
                                      (np.r_[np.linspace(0, 1, 3), [0.2, 0.5]], ["curve"] * 3 + ["decile"] * 2)]):
        a = rng.normal(size=(3, 3))
        cov = a @ a.T if j != 2 else -a @ a.T  # a degenerate fit: negative variances, no band (NaN)
        labels = dict(comparison=f"c{j}", outcome="pain", window="short", covariate=f"x{j}", scale="md")
        curves.append((grid, kind, 0.3 * j, rng.normal(size=3), cov, 10.0 + j, labels))
    made = curve_frame([effect_curve_columns(*c) for c in curves])
    expected = pd.concat([effect_curve(*c) for c in curves], ignore_index=True)
    pd.testing.assert_frame_equal(made, expected, check_exact=True)
    assert made.se.isna().any()  # the degenerate curve's band is missing, as in the frames
    assert curve_frame([]).empty


@pytest.mark.parametrize("batch_rows", [100_000, 3_000])
def test_batched_two_stage_first_stages_equal_one_call_per_sample(demo_run, monkeypatch, batch_rows):
    """per_trial_interactions fits several samples' per-trial logistic regressions in one
    call per design width (and per BATCH_ROWS rows: 3,000 makes batches of one to two).
    Source of truth: per_trial_interaction on each sample alone; the frames must be identical
    to the last bit (each trial is its own group in either call), for every covariate of the
    demo's recovery models at two windows (design widths 5 and 6, trials set aside under
    separation among them) and for a sample with no usable trial."""
    from analysis.analyses import modifiers
    from analysis.analyses.arrays import Arms
    from analysis.analyses.samples import comparison_participants, window_frame
    from analysis.settings import COVARIATES

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    columns = ["recovered", "pain_bl", "function_bl", *COVARIATES]
    samples = []
    for window in ("short", "long"):
        arms = Arms(comparison_participants(window_frame(p, o, window), "none_usual_care"), columns)
        samples += [(arms.complete("recovered", c), c) for c in COVARIATES]
    few = samples[0][0].subset(np.arange(len(samples[0][0])) < 5)  # five participants: no trial usable
    samples.append((few, COVARIATES[0]))
    monkeypatch.setattr(modifiers, "BATCH_ROWS", batch_rows)
    batched = per_trial_interactions(samples)
    for (d, covariate), frame in zip(samples, batched):
        pd.testing.assert_frame_equal(frame, per_trial_interaction(d, covariate), check_exact=True)
    assert batched[-1].empty and sum(len(f) for f in batched) > 100


@pytest.mark.parametrize("batch_rows", [100_000, 3_000, 10])
def test_two_stage_checks_equal_each_covariates_own_and_batch_within_the_row_limit(demo_run, monkeypatch,
                                                                                 batch_rows):
    """two_stage_checks gives each estimable covariate's (pooled estimate, SE) of its recovery
    model's two-stage check. Source of truth: the same check made on that covariate's sample
    alone (pool_per_trial of per_trial_interaction), equal to the bit; and the regressions it
    fits together hold at most BATCH_ROWS rows unless a call is a single sample's (10: every
    sample alone), each batch fitted before the samples after it are made (seen in the order
    of the calls), which bounds the memory held at once."""
    from analysis.analyses import modifiers
    from analysis.analyses.arrays import Arms
    from analysis.analyses.samples import comparison_participants, window_frame
    from analysis.models import pertrial
    from analysis.settings import COVARIATES

    p, o = demo_run.tables["participants"], demo_run.tables["outcomes"]
    arms = Arms(comparison_participants(window_frame(p, o, "moderate"), "any_non_exercise"),
                ["recovered", "pain_bl", "function_bl", *COVARIATES])
    events = []  # ("sample", rows) as each sample is made, ("fit", rows) as each regression call runs
    complete, regression = arms.complete, pertrial.per_trial_logistic
    monkeypatch.setattr(arms, "complete", lambda *a: (lambda d: events.append(("sample", len(d))) or d)(complete(*a)))
    monkeypatch.setattr(pertrial, "per_trial_logistic",
                        lambda trial, y, x: events.append(("fit", len(y))) or regression(trial, y, x))
    monkeypatch.setattr(modifiers, "BATCH_ROWS", batch_rows)
    checks = modifiers.two_stage_checks(arms, COVARIATES)
    fits = [rows for kind, rows in events if kind == "fit"]
    assert len(checks) >= 8
    assert batch_rows == 10 or all(rows <= batch_rows for rows in fits)
    expected_calls = {100_000: (2, 2), 3_000: (3, len(checks) - 1), 10: (len(checks), len(checks))}[batch_rows]
    assert expected_calls[0] <= len(fits) <= expected_calls[1]  # 100,000: one call per design width
    if batch_rows == 10:  # every sample's regressions are fitted before the next sample is made
        kinds = [kind for kind, _ in events]
        assert all(kinds[i + 1] == "sample" for i, kind in enumerate(kinds[:-1]) if kind == "fit")
        assert kinds.index("fit") < len(kinds) - kinds[::-1].index("sample") - 1
    for covariate, (estimate, se) in checks.items():
        alone = modifiers.pool_per_trial(per_trial_interaction(arms.complete("recovered", covariate), covariate))
        np.testing.assert_array_equal([estimate, se], alone)
