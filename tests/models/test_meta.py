"""analysis.meta against metafor's dat.bcg worked example (../shared/data/README.md).

Tolerance: the reference is printed to 6 decimals, so absolute 2e-6 on estimates, SEs,
CIs and tau^2 (half a unit in the last place plus solver tolerance); I^2 and H^2 are
printed to 4 decimals, so 1e-4.
"""

import numpy as np
import pytest

from analysis.models.meta import pool
from tests import reference as ref

# metafor solves the Paule-Mandel equation with uniroot's default tolerance
# (.Machine$double.eps^0.25 = 1.2e-4 on tau^2); we solve it to 1e-14 (see
# test_paule_mandel_solves_its_equation), so PM is compared at that looser tolerance,
# propagated to the estimate and SE (d SE / d tau^2 ~ 0.25 here) and to I^2 (~ 3 %-points per unit).
TOL = {"REML": (2e-6, 1e-4), "DL": (2e-6, 1e-4), "ML": (2e-6, 1e-4), "PM": (1.5e-4, 5e-3)}


@pytest.mark.parametrize("method", ["REML", "DL", "PM", "ML"])
def test_bcg_estimators(method):
    yi, vi = ref.bcg_effects()
    r = pool(yi, vi, method=method)
    want = ref.BCG[method]
    tol, tol_i2 = TOL[method]
    for key in ("estimate", "se", "ci_low", "ci_high", "tau2"):
        assert getattr(r, key) == pytest.approx(want[key], abs=tol), key
    assert r.i2 == pytest.approx(want["i2"], abs=tol_i2)
    assert r.h2 == pytest.approx(want["h2"], abs=tol_i2 * 10)
    assert r.q == pytest.approx(ref.BCG_Q, abs=1e-4)


def test_paule_mandel_solves_its_equation():
    """Definition (Paule and Mandel 1982): sum w_i (y_i - mu)^2 = k - 1 at the estimate."""
    yi, vi = ref.bcg_effects()
    tau2 = pool(yi, vi, method="PM").tau2
    w = 1 / (vi + tau2)
    mu = np.sum(w * yi) / w.sum()
    assert np.sum(w * (yi - mu) ** 2) == pytest.approx(len(yi) - 1, abs=1e-9)


def test_bcg_hartung_knapp():
    yi, vi = ref.bcg_effects()
    r = pool(yi, vi, method="REML", hartung_knapp=True)
    assert r.se == pytest.approx(ref.BCG_REML_HK["se"], abs=2e-6)
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.BCG_REML_HK["ci_low"], ref.BCG_REML_HK["ci_high"]), abs=2e-6)
    assert r.df == 12


def test_bcg_prediction_intervals():
    yi, vi = ref.bcg_effects()
    assert (pool(yi, vi, pi_df="normal").pi_low, pool(yi, vi, pi_df="normal").pi_high) == pytest.approx(
        ref.BCG_PI_NORMAL, abs=2e-6
    )
    r = pool(yi, vi)
    assert (r.pi_low, r.pi_high) == pytest.approx(ref.BCG_PI_T, abs=2e-6)


@pytest.mark.parametrize("method", ["REML", "DL", "PM"])
def test_two_stage_reference(method):
    """Pooling of the published per-trial estimates of onestage_reference.csv."""
    yi, vi = np.array(list(ref.TWO_STAGE_YI.values())).T
    r = pool(yi, vi, method=method)
    want = ref.TWO_STAGE[method]
    tol = 2e-6 if method != "PM" else 2e-5  # PM: see TOL above
    assert r.estimate == pytest.approx(want["estimate"], abs=tol)
    assert r.se == pytest.approx(want["se"], abs=tol)
    # tau^2 ~ 23 printed to 6 decimals; per-trial inputs are themselves rounded to 6
    # decimals, which moves tau^2 by up to ~1e-5
    assert r.tau2 == pytest.approx(want["tau2"], abs=5e-5 if method != "PM" else 2e-3)


def test_two_stage_hartung_knapp_reference():
    yi, vi = np.array(list(ref.TWO_STAGE_YI.values())).T
    r = pool(yi, vi, hartung_knapp=True)
    assert r.se == pytest.approx(ref.TWO_STAGE_HK["se"], abs=2e-6)
    assert r.ci_low == pytest.approx(ref.TWO_STAGE_HK["ci_low"], abs=5e-6)


def test_homogeneous_data_give_zero_tau2_and_fixed_effect_closed_form():
    """Closed form: tau^2 = 0 gives the inverse-variance weighted mean, SE = (sum w)^-1/2."""
    yi = np.array([1.0, 1.0, 1.0])
    vi = np.array([0.5, 1.0, 2.0])
    for m in ("REML", "ML", "DL", "PM"):
        r = pool(yi, vi, method=m)
        assert r.tau2 == 0.0
        assert r.estimate == pytest.approx(1.0)
        assert r.se == pytest.approx((1 / 0.5 + 1 + 0.5) ** -0.5)


def test_single_study_and_bad_input():
    r = pool([0.3], [0.04])
    assert r.estimate == 0.3 and r.tau2 == 0 and np.isnan(r.pi_low)
    with pytest.raises(ValueError, match="positive"):
        pool([0.1, 0.2], [0.0, 0.1])


def test_committed_reference_data_equal_shared_originals():
    """data/reference/ is a copy of ../shared/data (so a clean clone validates on its own)."""
    from analysis.analyses.validation import REFERENCE_DATA

    if not ref.SHARED_DATA.exists():
        pytest.skip("../shared/data is not present beside this clone")
    for name in ("dat_bcg.csv", "onestage_reference.csv", "boundary_reference.csv"):
        assert (REFERENCE_DATA / name).read_bytes() == (ref.SHARED_DATA / name).read_bytes()
