"""analysis.harmonise against the generator's latent clean values and hand-computed cases."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analysis import demo
from analysis.ingest.harmonise import (
    VISIT_COLUMNS,
    _recovered,
    _stacked,
    assign_windows,
    derive_age,
    derive_bmi,
    harmonise_trial,
)
from analysis.ingest.spec import load_spec

COVS = ["female", "heavy_work", "medication", "employed", "education_post_secondary"]


def _merged(run):
    lat = run.latent.participants
    lat = lat[~lat.dirty]
    got = run.tables["participants"]
    return lat.merge(got, on=["trial_id", "participant_id"], suffixes=("_lat", ""), validate="one_to_one")


def test_every_clean_participant_is_harmonised_and_only_the_dirty_are_excluded(demo_run):
    """Intention to treat: only records whose participant or arm is unknown are excluded; a
    planted bad value is set missing for its variable, and its participant stays."""
    lat = demo_run.latent.participants
    got = demo_run.tables["participants"]
    kept = set(map(tuple, lat.loc[~lat.dirty, ["trial_id", "participant_id"]].to_numpy()))
    assert set(map(tuple, got[["trial_id", "participant_id"]].to_numpy())) == kept
    ex = demo_run.tables["exclusions"]
    dirty_keys = set(map(tuple, lat.loc[lat.dirty, ["trial_id", "participant_id"]].to_numpy()))
    assert set(map(tuple, ex[["trial_id", "participant_id"]].to_numpy())) == dirty_keys
    issues = demo_run.tables["value_issues"]
    by_kind = {"implausible_bmi": ("implausible_bmi", "implausible_height")}
    for t, pid, kind, column in demo_run.latent.dirty.itertuples(index=False):
        if isinstance(column, str):  # a bad value: in the value log, and the participant kept
            reasons = issues.loc[(issues.trial_id == t) & (issues.participant_id == pid), "reason"]
            assert reasons.isin(by_kind.get(kind, (kind,))).any(), (t, pid, kind)
            assert (t, pid) in kept
        else:
            reasons = ex.loc[(ex.trial_id == t) & (ex.participant_id == pid), "reason"]
            assert reasons.str.contains(kind).any(), (t, pid, kind)


def test_harmonised_baseline_and_covariates_equal_latent_values(demo_run):
    """Equal to floating-point precision (values are written with 10 significant digits):
    the latent values are defined on each instrument's raw grid, so rescaling is exact."""
    m = _merged(demo_run)
    for col in ("pain_bl", "function_bl", "duration_months", "bmi"):
        a, b = m[f"{col}_lat"].to_numpy(float), m[col].to_numpy(float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-8, atol=1e-7), col
    for col in COVS:
        a, b = m[f"{col}_lat"].to_numpy(float), m[col].to_numpy(float)
        assert np.array_equal(a, b, equal_nan=True), col
    assert (m.arm_lat == m.arm).all()
    assert (m.arm_type == m.comparison).all()


def test_age_exact_when_given_and_within_half_a_year_from_birth_year(demo_run):
    m = _merged(demo_run)
    by_year = {d.trial_id for d in demo.designs() if d.age_mode == "birth_year"}
    direct = ~m.trial_id.isin(by_year)
    assert np.allclose(m.age_lat[direct], m.age[direct], equal_nan=True)
    # latent age is the true age; the birth year alone fixes it to within half a year
    # (+ a day of calendar rounding); an unreadable birth year leaves it missing
    by = m[~direct]
    assert np.array_equal(by.age_lat.isna(), by.age.isna())
    assert (np.abs(by.age_lat - by.age).dropna() <= 0.5 + 1 / 365).all()
    assert (~direct).sum() > 0


def test_outcomes_by_window_equal_latent_visits(demo_run):
    """Independent re-derivation of the window rule from the latent visits: the observed
    visit nearest the window's target (ties to the later), within the window."""
    lat = demo_run.latent.outcomes
    clean = demo_run.latent.participants
    clean = clean.loc[~clean.dirty, ["trial_id", "participant_id"]]
    lat = lat.merge(clean, on=["trial_id", "participant_id"])
    targets = {"short": (3, 0, 5), "moderate": (6, 5, 9), "long": (12, 9, 18.0001)}
    expected = []
    for w, (target, lo, hi) in targets.items():
        inside = lat[(lat.months > lo if lo == 0 else lat.months >= lo) & (lat.months < hi)].copy()
        inside["dist"] = (inside.months - target).abs()
        inside = inside.sort_values(["dist", "months"], ascending=[True, False])
        expected.append(inside.drop_duplicates(["trial_id", "participant_id"]).assign(window=w))
    expected = pd.concat(expected)
    got = demo_run.tables["outcomes"]
    got = got[got.pain.notna() | got.function.notna()]
    both = expected.merge(got, on=["trial_id", "participant_id", "window"], how="outer",
                          suffixes=("_lat", ""), indicator=True)
    assert (both._merge == "both").all()
    assert np.allclose(both.months_lat, both.months)
    for col in ("pain", "function"):
        assert np.allclose(both[f"{col}_lat"], both[col], equal_nan=True, rtol=1e-8, atol=1e-7)


def test_every_raw_record_is_accounted_for(demo_run):
    """Each raw row (file and row) is behind the master data, in the exclusion log, or a visit
    record in the value log that could not be used: exactly one of these."""
    for path in sorted(demo_run.paths.specs.glob("*.yaml")):
        spec = load_spec(path)
        r = harmonise_trial(spec, demo_run.paths.raw)
        excluded = set(zip(r.exclusions.source_file, r.exclusions.source_row))
        unusable = r.value_issues[r.value_issues.reason.isin(["followup_outside_windows", "duplicate_visit",
                                                              "missing_visit"])]
        unused = set(zip(unusable.source_file, unusable.source_row))
        assert not (excluded & r.used_rows) and not (unused & r.used_rows) and not (excluded & unused), spec.trial_id
        assert excluded | unused | r.used_rows == r.raw_rows, spec.trial_id
    assert any(len(load_spec(p).tables) > 1 for p in demo_run.paths.specs.glob("*.yaml"))


def test_flow_totals(demo_run):
    flow = demo_run.tables["flow"]
    assert len(flow) == 27 and flow.received.sum() == 3514
    assert (flow.received == flow.excluded + flow.analysed).all()
    reasons = flow.filter(like="excluded_").sum(axis=1)
    assert (reasons == flow.excluded).all()
    assert flow.analysed.sum() == len(demo_run.tables["participants"])


def test_identifying_columns_never_reach_derived_data(demo_run):
    raw = demo_run.latent.raw
    ids = {d.trial_id for d in demo.designs() if d.identifying}
    assert ids
    secrets = set()
    for t in ids:
        w = raw[t][0]
        secrets |= set(w["email"]) | set(w["date_of_birth"]) | set(w["name"])
    for f in demo_run.paths.derived.glob("*.csv"):
        text = f.read_text()
        assert "email" not in text.lower() or f.name == "harmonisation_log.csv"
        assert not any(s in text for s in list(secrets)[:200] if "@" in s)
        assert not any(s in text for s in secrets if "-" in s and s[:2] in ("19", "20") and s in text.split(","))
    log = demo_run.tables["harmonisation_log"]
    assert log.detail.str.contains("date_of_birth").any()  # logged by name only


# ----------------------------------------------------------------------------- hand cases


def test_window_assignment_hand_cases():
    assert assign_windows([1.5, 3, 6, 12]) == {"short": [3, 1.5], "moderate": [6], "long": [12]}
    # 1.5 and 4.5 are equally far from 3: the later one is preferred
    assert assign_windows([1.5, 4.5])["short"] == [4.5, 1.5]
    assert assign_windows([4, 9, 18]) == {"short": [4], "long": [9, 18]}  # 9 starts long, 18 is inside
    assert assign_windows([24, 0]) == {}  # baseline is not a follow-up; 24 months fits no window
    assert assign_windows([5]) == {"moderate": [5]}  # 5 starts the moderate window


def test_recovery_hand_cases():
    pain = np.array([10, 10.01, 0, np.nan, 5])
    func = np.array([10, 0, 10.5, 3, np.nan])
    assert np.array_equal(_recovered(pain, func), [1, 0, 0, np.nan, np.nan], equal_nan=True)


def test_bmi_hand_cases():
    assert derive_bmi([180], [81], "cm", "kg")[0] == pytest.approx(25.0)
    assert derive_bmi([1.8], [81 / 0.45359237], "m", "lb")[0] == pytest.approx(25.0)


def test_age_hand_cases():
    # born 1960 -> 1 July 1960; enrolled 1 July 2000 -> 40 years; 1 Jan 2001 -> 40.5 years
    ages = derive_age([1960, 1960, np.nan], [date(2000, 7, 1).isoformat(), "2001-01-01", "2000-01-01"])
    assert ages[0] == pytest.approx(14610 / 365.25)
    assert ages[1] == pytest.approx((date(2001, 1, 1) - date(1960, 7, 1)).days / 365.25)
    assert np.isnan(ages[2])


def test_as_types_equals_astype_and_converts_only_what_is_not_of_its_type():
    """Source of truth: pandas' own astype on every column; a column already of its type is
    handed back as it is (no copy), and a frame with nothing to convert is the same frame."""
    from analysis.ingest.harmonise import _as_types

    frame = pd.DataFrame({"trial_id": pd.Series(["T1", "T1"], dtype="str"),
                          "participant_id": pd.Series(["7", None], dtype=object),
                          "source_row": pd.Series([3, 4], dtype=object),
                          "pain": [1.5, np.nan]})
    dtypes = {"trial_id": str, "participant_id": str, "source_row": "int64", "pain": float}
    pd.testing.assert_frame_equal(_as_types(frame, dtypes), frame.astype(dtypes), check_exact=True)
    empty = pd.DataFrame(columns=["source_row", "reason"])
    pd.testing.assert_frame_equal(_as_types(empty, {"source_row": "int64"}), empty.astype({"source_row": "int64"}))
    done = frame.astype(dtypes)
    assert _as_types(done, dtypes) is done


def test_stacked_visits_are_in_the_order_pandas_sorts_them():
    """_stacked's by-participant order against the truth it replaces, pandas'
    sort_values(["participant_id", "months"], kind="stable") on the concatenated frame: ids
    whose text order is not their numeric order ("P10" before "P9"), ties in both keys (kept
    in the order of the parts), one part empty."""
    pid = np.array(["P9", "P10", "P2", "P10", "P9", "P1"], dtype=object)
    months = np.array([3.0, 3.0, 2.0, 1.0, 3.0, 12.0])
    short, long = np.full(4, "short", dtype=object), np.full(2, "long", dtype=object)
    parts = [(pid[:4], short, months[:4], np.arange(4.0), np.arange(4.0)),
             (pid[:0], np.zeros(0, dtype=object), np.zeros(0), np.zeros(0), np.zeros(0)),
             (pid[4:], long, months[4:], np.arange(4.0, 6), np.arange(4.0, 6))]
    got = _stacked("T1", VISIT_COLUMNS, parts, by_participant=True)
    frames = [pd.DataFrame({"trial_id": "T1", **dict(zip(VISIT_COLUMNS[1:], part))}) for part in parts]
    expected = pd.concat(frames, ignore_index=True).sort_values(["participant_id", "months"], kind="stable")
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)
    assert list(got.pain) == [5.0, 3.0, 1.0, 2.0, 0.0, 4.0]  # P1; P10 at 1 then 3; P2; P9 (3.0 twice: part order)
    assert list(_stacked("T1", VISIT_COLUMNS, []).columns) == VISIT_COLUMNS
