"""The synthetic embedded default: 27 messy raw trial files with a known truth.

Calibrated to Hayden et al. (BJSM 2020): 27 trials, 3514 participants, exercise vs no
treatment/usual care or vs other conservative treatments, pain and function on their own
instruments, inconsistently measured covariates, drop-out and dirty records.

The *design* of each trial (format, layout, instruments, column names, codings, follow-up
schedule, which covariates were measured, which dirty records are planted) is fixed, so
the committed specs in data/specs/ always describe the files; the *values* depend on the
seed. ``simulate`` returns the latent clean data that harmonisation must reproduce.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.ingest.instruments import INSTRUMENTS
from analysis.parallel import run_tasks

__all__ = ["TRUTH", "truth_table", "TrialDesign", "designs", "simulate", "write_raw", "spec_dict", "DemoData"]

# ----------------------------------------------------------------------------- the truth
# Exercise effect (exercise minus comparison, 0-100, negative = exercise better).
TRUTH = {
    # short-term overall effect by comparison and outcome
    "theta": {
        ("none_usual_care", "pain"): -10.7, ("none_usual_care", "function"): -10.2,
        ("other_conservative", "pain"): -4.0, ("other_conservative", "function"): -3.5,
    },
    # moderate- and long-term effects are these multiples of the short-term effect
    # (applied to the whole effect, effect modification included)
    "window_factor": {"short": 1.0, "moderate": 0.7, "long": 0.5},
    # between-trial SD of the exercise effect
    "tau": {"pain": 3.5, "function": 3.0},
    # effect modification, added to the exercise effect (all comparisons unless stated),
    # centred at the population mean so that the average effect is theta
    "modifiers": {"heavy_work": 6.0, "medication": -5.0},
    "bmi_modifier_none_usual_care": 0.6,  # per kg/m2, centred at BMI_CENTRE, vs none_usual_care only
    "bmi_centre": 27.0,
    "covariate_means": {"heavy_work": 0.3, "medication": 0.5},
    # all other covariates: no modification
    # At each visit a share of participants, independent of arm, baseline and covariates,
    # is in a "recovered" state with scores uniform on 0-10; the other scores follow the
    # linear model with every effect divided by (1 - share), so the mean difference
    # between arms is exactly theta (and the modifiers exactly as above).
    "recovered_share": 0.10,
}

N_TRIALS = 27
N_TOTAL = 3514

_SIZES = [30, 38, 45, 52, 58, 64, 70, 76, 82, 88, 94, 100, 106, 112, 118, 124, 130, 138,
          146, 154, 164, 176, 190, 210, 269, 280, 400]
assert sum(_SIZES) == N_TOTAL and len(_SIZES) == N_TRIALS


def truth_table() -> list[dict]:
    """The short-term quantities with a known true value, as the analyses name them:
    overall effects, and the within-trial interactions of heavy work, medication and BMI."""
    rows = [{"analysis": "overall", "comparison": c, "outcome": o, "window": "short", "term": "exercise", "truth": v}
            for (c, o), v in TRUTH["theta"].items()]
    cases = [(c, cov, TRUTH["modifiers"][cov]) for c in ("none_usual_care", "other_conservative")
             for cov in ("heavy_work", "medication")]
    cases += [("none_usual_care", "bmi", TRUTH["bmi_modifier_none_usual_care"]), ("other_conservative", "bmi", 0.0)]
    for comparison, cov, value in cases:
        for outcome in ("pain", "function"):
            rows.append({"analysis": "modifier", "comparison": comparison, "outcome": outcome, "window": "short",
                         "term": f"exercise:{cov}", "truth": value})
    return rows


@dataclass(frozen=True)
class TrialDesign:
    trial_id: str
    n: int
    arms: tuple  # of (raw label, arm name, arm type)
    fmt: str  # csv | csv_semicolon | xlsx | sav | dta | xpt
    layout: str  # wide | long
    pain: str
    function: str
    months: tuple
    style: int  # column-naming style 0..2
    sex_coding: str
    yesno_coding: str
    arm_coding: str  # text | numeric
    id_style: str
    bmi_mode: str  # direct | cm_kg | m_lb
    age_mode: str  # direct | birth_year
    duration_unit: str
    measured: frozenset
    sporadic: float
    dirty: tuple  # kinds of dirty record planted
    identifying: bool
    risk_of_bias: str
    setting: str
    # how the trial team delivered the data, as real teams do
    tables: str = "single"  # single | baseline+visits (a workbook: a readme, a baseline and a visits sheet)
    date_style: str = "iso"  # iso | dmy (day-first dates, e.g. 03/11/2009)
    codes: bool = False  # missing-value codes (-99, 999, -9) in scores and a covariate

    @property
    def extension(self) -> str:
        return "csv" if self.fmt.startswith("csv") else self.fmt


_OPTIONAL = ("bmi", "heavy_work", "medication", "employed", "education_post_secondary", "duration_months")


def _scaled_sizes(rng, n_trials: int, n_total: int) -> np.ndarray:
    """Trial sizes with the demo's spread (log-normal), at least 10, summing to n_total."""
    raw = np.exp(rng.normal(0, 0.6, n_trials))
    sizes = np.maximum(10, np.floor(raw / raw.sum() * n_total)).astype(int)
    sizes[np.argmax(sizes)] += n_total - sizes.sum()
    if sizes.min() < 10:
        # near 10 participants a trial, raising the small trials to 10 took more than the
        # largest had: give every trial 10 and share out the rest (larger averages keep the
        # sizes above, and so their data)
        sizes = 10 + np.floor(raw / raw.sum() * (n_total - 10 * n_trials)).astype(int)
        sizes[np.argmax(sizes)] += n_total - sizes.sum()
    return sizes


def designs(n_trials: int = N_TRIALS, n_total: int = N_TOTAL) -> list[TrialDesign]:
    """The trial designs; independent of the data seed (fixed design generator).

    The default (27 trials, 3514 participants) is the calibrated demo whose specs are
    committed; other sizes keep the same mix of comparisons, formats, layouts, instruments,
    codings, missing covariates and dirty records, for benchmarks.
    """
    if n_trials < 3 or n_total < 10 * n_trials:
        raise ValueError("a scaled demo needs at least 3 trials and 10 participants per trial")
    rng = np.random.default_rng(27)
    default = (n_trials, n_total) == (N_TRIALS, N_TOTAL)
    sizes = rng.permutation(_SIZES) if default else _scaled_sizes(rng, n_trials, n_total)
    n_nuc, n_oc = round(n_trials * 15 / 27), round(n_trials * 10 / 27)
    width = max(2, len(str(n_trials)))
    formats = ["csv", "csv_semicolon", "xlsx", "sav", "dta"]
    schedules = [(1.5, 3, 6, 12), (3, 12), (3, 6), (1.5, 6, 12, 24), (3, 6, 12), (2, 6, 12),
                 (4, 12), (3, 6, 12, 24), (1.5, 3), (3, 9, 18)]
    settings = ["primary care", "physiotherapy outpatients", "occupational health", "hospital outpatients", "community"]
    out = []
    for i in range(n_trials):
        tid = f"T{i + 1:0{width}d}"
        j = i % 27  # position in the demo's pattern
        if i < n_nuc:
            arms = (("1", "Exercise", "exercise"), ("2", "Usual care", "none_usual_care"))
            if i % 4 == 3:
                arms = (("1", "Exercise", "exercise"), ("2", "Waiting list", "none_usual_care"))
        elif i < n_nuc + n_oc:
            other = ["Manual therapy", "Back school", "GP advice", "TENS", "Massage"][i % 5]
            arms = (("1", "Exercise", "exercise"), ("2", other, "other_conservative"))
        elif (i - n_nuc - n_oc) % 2 == 0:
            arms = (("1", "Motor control exercise", "exercise"), ("2", "Graded activity", "exercise"),
                    ("3", "Usual care", "none_usual_care"))
        else:
            arms = (("1", "Exercise", "exercise"), ("2", "Usual care", "none_usual_care"),
                    ("3", "Manual therapy", "other_conservative"))
        fmt = formats[i % 5]
        layout = "long" if j in (2, 6, 11, 14, 19, 23) else "wide"
        measured = {"age", "female", "pain_bl", "function_bl"}
        for cov, p_missing in zip(_OPTIONAL, (0.3, 0.35, 0.3, 0.2, 0.25, 0.1)):
            if rng.random() >= p_missing:
                measured.add(cov)
        # guarantee the modifier analyses have enough trials per comparison
        if j in (0, 1, 15, 16, 25, 26):
            measured |= {"bmi", "heavy_work", "medication"}
        dirty = ["missing_arm", "out_of_range", "duplicate_id", "implausible_bmi", "non_numeric"]
        kinds = tuple(sorted(str(k) for k in rng.choice(dirty, size=int(rng.integers(1, 4)), replace=False)))
        if "bmi" not in measured:
            kinds = tuple(k for k in kinds if k != "implausible_bmi") or ("missing_arm",)
        if not fmt.startswith("csv"):
            kinds = tuple(k for k in kinds if k != "non_numeric") or ("out_of_range",)
        out.append(
            TrialDesign(
                trial_id=tid,
                n=int(sizes[i]),
                arms=arms,
                fmt=fmt,
                layout=layout,
                pain=["vas_100", "vas_10", "nrs_10"][i % 3],
                function=["rmdq_24", "rmdq_23", "odi_100", "odi_50", "quebec_100", "psfs_10"][i % 6],
                months=schedules[int(rng.integers(len(schedules)))] if j not in (0, 15) else (3, 6, 12),
                style=i % 3,
                sex_coding=["MF", "12", "01", "labelled", "text"][int(rng.integers(5))]
                if fmt in ("sav", "dta")
                else ["MF", "12", "01", "text"][int(rng.integers(4))],
                yesno_coding=["yesno", "YN", "10", "12"][int(rng.integers(4))],
                arm_coding="numeric" if fmt in ("sav", "dta") or rng.random() < 0.3 else "text",
                id_style=["int", "prefixed", "random"][int(rng.integers(3))],
                bmi_mode=["direct", "cm_kg", "m_lb"][int(rng.integers(3))],
                age_mode="birth_year" if rng.random() < 0.3 else "direct",
                duration_unit=["months", "weeks", "years"][int(rng.integers(3))],
                measured=frozenset(measured),
                sporadic=float(rng.choice([0.0, 0.02, 0.05])),
                dirty=kinds,
                identifying=j in (4, 17),
                risk_of_bias=["low", "low", "some_concerns", "high"][int(rng.integers(4))],
                setting=settings[int(rng.integers(len(settings)))],
            )
        )
    return [_delivery(d, i % 27) for i, d in enumerate(out)]


def _delivery(d: TrialDesign, j: int) -> TrialDesign:
    """How some trial teams deliver their data (by position in the demo's pattern, drawing no
    random numbers, so every other design and every value stay as they were): a workbook with
    a baseline sheet and a long visits sheet, day-first dates, missing-value codes, and a SAS
    transport file."""
    if j == 2 and d.fmt == "xlsx" and d.layout == "long":
        return replace(d, tables="baseline+visits")
    if j == 21 and d.age_mode == "birth_year" and d.fmt.startswith("csv"):
        return replace(d, date_style="dmy")
    if j == 10 and d.layout == "wide":
        return replace(d, codes=True)
    if j == 24 and d.fmt == "dta":
        return replace(d, fmt="xpt")
    return d


# ----------------------------------------------------------------------------- latent data


@dataclass
class DemoData:
    """Latent clean values (0-100 scales, as harmonisation should produce them)."""

    participants: pd.DataFrame
    outcomes: pd.DataFrame  # trial_id, participant_id, months, pain, function (observed visits)
    dirty: pd.DataFrame  # trial_id, participant_id, kind
    raw: dict = field(default_factory=dict)  # trial_id -> (DataFrame, value labels)


def _round_to(x, step):
    return np.round(np.asarray(x, float) / step) * step


def _instrument_round(scores, name):
    """Store a 0-100 score on an instrument's raw scale (rounded), and back: the clean value."""
    ins = INSTRUMENTS[name]
    raw = np.clip(_round_to(ins.from_0_100(scores), ins.resolution), ins.low, ins.high)
    raw = np.round(raw, 6)
    return raw, ins.to_0_100(raw)


def _simulate_trial(d: TrialDesign, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = d.n
    arm_idx = rng.permutation(np.arange(n) % len(d.arms))
    arm_type = np.array([d.arms[a][2] for a in arm_idx])
    arm_name = np.array([d.arms[a][1] for a in arm_idx])
    shift = rng.normal(0, 1)
    # the columns as arrays, then one frame (a column added to a frame costs a quarter of a
    # millisecond, about a fifth of the generator's time when it was built that way)
    c = {"trial_id": d.trial_id, "arm": arm_name, "arm_type": arm_type}
    c["age"] = np.clip(np.round(rng.normal(44 + 3 * shift, 11, n)), 18, 80)
    c["female"] = rng.binomial(1, 0.58, n)
    c["height_m"] = np.clip(rng.normal(np.where(c["female"] == 1, 1.65, 1.78), 0.07), 1.45, 2.05)
    c["bmi_true"] = np.clip(rng.normal(27 + 0.8 * shift, 4.5, n), 17.0, 48.0)
    c["heavy_work"] = rng.binomial(1, np.clip(0.3 + 0.1 * shift, 0.05, 0.9), n)
    c["medication"] = rng.binomial(1, 0.5, n)
    c["employed"] = rng.binomial(1, 0.7, n)
    c["education_post_secondary"] = rng.binomial(1, 0.5, n)
    c["duration_months"] = np.round(np.clip(np.exp(rng.normal(np.log(24), 0.9, n)), 3, 360), 0)
    pain_bl = np.clip(rng.normal(56 + 4 * shift, 16, n), 5, 100)
    func_bl = np.clip(rng.normal(42 + 4 * shift, 15, n), 3, 100)
    c["pain_raw_bl"], c["pain_bl"] = _instrument_round(pain_bl, d.pain)
    c["function_raw_bl"], c["function_bl"] = _instrument_round(func_bl, d.function)
    p = pd.DataFrame(c)

    # exercise effect relative to the trial's reference arm (usual care if present)
    has_nuc = any(a[2] == "none_usual_care" for a in d.arms)
    t = TRUTH
    hw, med = t["covariate_means"]["heavy_work"], t["covariate_means"]["medication"]
    common_mod = t["modifiers"]["heavy_work"] * (p.heavy_work - hw) + t["modifiers"]["medication"] * (
        p.medication - med
    )
    bmi_mod = t["bmi_modifier_none_usual_care"] * (p.bmi_true - t["bmi_centre"])
    # participant-level persistence over visits, shared by pain and function; follow-up
    # means sit well above the floor so that clipping at 0 does not attenuate the effect
    person = rng.normal(0, 8, n)
    visits = []
    # drop-out depends on baseline pain (missing at random given baseline)
    hazard = 1 / (1 + np.exp(-(-3.0 + 0.035 * (pain_bl - 56))))
    in_study = np.ones(n, bool)
    for m in d.months:
        in_study &= rng.random(n) > hazard
        window = "short" if m < 5 else "moderate" if m < 9 else "long"
        factor = t["window_factor"][window] if m <= 18 else t["window_factor"]["long"]
        row = {"months": m, "observed": in_study.copy()}
        recovered_state = rng.random(n) < t["recovered_share"]
        for outcome, bl, bl_mean, base_mean, sd in (("pain", pain_bl, 56.0, 46.0, 11.0),
                                                     ("function", func_bl, 42.0, 43.0, 8.0)):
            u = t["tau"][outcome] * rng.normal()
            if has_nuc:
                theta = t["theta"][("none_usual_care", outcome)]
                effect_ex = (theta + u) * factor + (common_mod + bmi_mod) * factor
                theta_oc = t["theta"][("other_conservative", outcome)]
                effect_oc = (theta - theta_oc) * factor + bmi_mod * factor
            else:
                theta = t["theta"][("other_conservative", outcome)]
                effect_ex = (theta + u) * factor + common_mod * factor
                effect_oc = 0.0
            effect = np.where(
                arm_type == "exercise", effect_ex, np.where(arm_type == "other_conservative", effect_oc, 0.0)
            )
            effect = effect / (1 - t["recovered_share"])
            mu = base_mean + 2.5 * shift + 0.5 * (bl - bl_mean) + effect
            score = np.clip(mu + person + rng.normal(0, sd, n), 0, 100)
            score = np.where(recovered_state, rng.uniform(0, 10, n), score)
            raw, clean = _instrument_round(score, getattr(d, outcome))
            row[f"{outcome}_raw"], row[outcome] = raw, clean
        # sporadic item non-response at a visit
        row["pain_missing"] = rng.random(n) < 0.01
        row["function_missing"] = rng.random(n) < 0.01
        visits.append(row)
    return p, visits


def _ids(d: TrialDesign, rng) -> np.ndarray:
    if d.id_style == "int":
        return np.arange(1, d.n + 1).astype(str)
    if d.id_style == "prefixed":
        return np.array([f"{d.trial_id}-{j:03d}" for j in range(1, d.n + 1)])
    return np.sort(rng.choice(np.arange(10000, 99999), size=d.n, replace=False)).astype(str)


# ----------------------------------------------------------------------------- raw layout


def _names(d: TrialDesign) -> dict:
    """Column names of a trial, in one of three house styles."""
    s = d.style
    base = [
        dict(id="pid", arm="group", time="visit", age="age", byear="birth_year", enrol="enrol_date",
             sex="sex", bmi="bmi", height="height", weight="weight", heavy_work="physical_work",
             medication="meds", employed="employed", education="educ", duration="lbp_duration",
             pain="pain", function="func"),
        dict(id="ID", arm="ARM", time="VISIT", age="AGE", byear="YOB", enrol="RANDDATE", sex="GENDER",
             bmi="BMI", height="HT", weight="WT", heavy_work="HEAVYWORK", medication="ANALGESIC",
             employed="WORKING", education="EDU_HIGH", duration="DUR", pain="VAS", function="DISAB"),
        dict(id="subject", arm="treatment", time="timepoint", age="age_years", byear="year_of_birth",
             enrol="date_randomised", sex="female", bmi="body_mass_index", height="height_m",
             weight="weight_lb", heavy_work="manual_job", medication="pain_medication",
             employed="in_work", education="higher_education", duration="duration_of_pain",
             pain="pain_score", function="disability_score"),
    ][s]
    return base


def _fu_col(d, names, outcome, m):
    label = f"{m:g}".replace(".", "_")
    return [f"{names[outcome]}_{label}m", f"{names[outcome]}{label.upper()}M", f"{names[outcome]}_month{label}"][
        d.style
    ]


def _bl_col(d, names, outcome):
    return [f"{names[outcome]}_0", f"{names[outcome]}0", f"{names[outcome]}_baseline"][d.style]


def _sex_codes(coding):
    return {"MF": {"F": 1, "M": 0}, "12": {"2": 1, "1": 0}, "01": {"1": 1, "0": 0},
            "labelled": {"2": 1, "1": 0}, "text": {"female": 1, "male": 0}}[coding]


def _yesno_codes(coding):
    return {"yesno": {"yes": 1, "no": 0}, "YN": {"Y": 1, "N": 0}, "10": {"1": 1, "0": 0},
            "12": {"1": 1, "2": 0}}[coding]


def _encode(values, codes, numeric):
    inverse = {v: k for k, v in codes.items()}
    out = np.array([inverse[int(v)] for v in values], dtype=object)
    numeric = numeric and all(k.lstrip("-").isdigit() for k in codes)
    return out.astype(float) if numeric else out


def _visit_codes(d: TrialDesign) -> dict:
    """Raw visit code -> months, for long layouts."""
    if d.style == 1:
        return {"0": 0.0, **{f"{round(m * 4.345):d}": float(m) for m in d.months}}  # weeks
    return {"baseline": 0.0, **{(f"{m:g}mo" if m >= 2 else f"{round(m * 4.345)}wk"): float(m) for m in d.months}}


def _build_raw(d: TrialDesign, p: pd.DataFrame, visits, ids, rng):
    names = _names(d)
    numeric_codes = d.fmt in ("sav", "dta", "xpt")
    # the columns, made one frame at the end (see _simulate_trial); copies of p's, as a frame's
    # new column is, since the planted problems change the raw values and not the latent ones
    w = {names["id"]: ids}
    labels = {}
    arm_lookup = {a[1]: a for a in d.arms}
    if d.arm_coding == "numeric":
        w[names["arm"]] = [float(arm_lookup[a][0]) if numeric_codes else arm_lookup[a][0] for a in p.arm]
        if numeric_codes:
            labels[names["arm"]] = {float(a[0]): a[1] for a in d.arms}
    else:
        w[names["arm"]] = p.arm.to_numpy(copy=True)
    # age
    if d.age_mode == "direct":
        w[names["age"]] = p.age.to_numpy(copy=True)
    else:
        enrol = [date(2008, 1, 1) + timedelta(days=int(x)) for x in rng.integers(0, 1500, d.n)]
        birth = [e - timedelta(days=int(a * 365.25 + rng.integers(0, 365))) for e, a in zip(enrol, p.age)]
        w[names["byear"]] = [float(b.year) for b in birth]
        w[names["enrol"]] = [e.strftime("%d/%m/%Y") if d.date_style == "dmy" else e.isoformat() for e in enrol]
        p["age"] = [(e - date(b.year, 7, 1)).days / 365.25 for e, b in zip(enrol, birth)]
    sex_codes = _sex_codes(d.sex_coding)
    w[names["sex"]] = _encode(p.female, sex_codes, numeric_codes)
    if d.sex_coding == "labelled":
        labels[names["sex"]] = {1.0: "male", 2.0: "female"}
    if "bmi" in d.measured:
        if d.bmi_mode == "direct":
            w[names["bmi"]] = np.round(p.bmi_true, 1)
            p["bmi"] = np.round(p.bmi_true, 1)
        else:
            kg = p.bmi_true * p.height_m**2
            if d.bmi_mode == "cm_kg":
                h, wt = np.round(p.height_m * 100), np.round(kg, 1)
                w[names["height"]], w[names["weight"]] = h, wt
                p["bmi"] = wt / (h / 100) ** 2
            else:
                h, lb = np.round(p.height_m, 2), np.round(kg / 0.45359237, 1)
                w[names["height"]], w[names["weight"]] = h, lb
                p["bmi"] = lb * 0.45359237 / h**2
    yn = _yesno_codes(d.yesno_coding)
    for cov in ("heavy_work", "medication", "employed", "education_post_secondary"):
        col = names["education" if cov == "education_post_secondary" else cov]
        if cov in d.measured:
            w[col] = _encode(p[cov], yn, numeric_codes)
            if numeric_codes and d.yesno_coding in ("10", "12"):
                labels[col] = {float(k): ("yes" if v else "no") for k, v in yn.items()}
    if "duration_months" in d.measured:
        factor = {"months": 1.0, "weeks": 52 / 12, "years": 1 / 12}[d.duration_unit]
        w[names["duration"]] = np.round(p.duration_months * factor, 2)
        p["duration_months"] = w[names["duration"]] / factor
    # mark what was not measured, and sporadic gaps in what was
    for cov in _OPTIONAL:
        if cov not in d.measured:
            p[cov] = np.nan
    sporadic_cols = {"heavy_work": "heavy_work", "medication": "medication", "employed": "employed",
                     "education_post_secondary": "education", "duration_months": "duration"}
    for cov, key in sporadic_cols.items():
        if cov in d.measured and d.sporadic > 0:
            gap = rng.random(d.n) < d.sporadic
            w[names[key]] = np.where(gap, np.nan, np.asarray(w[names[key]]))
            p.loc[gap, cov] = np.nan
    if "bmi" in d.measured and d.sporadic > 0:
        gap = rng.random(d.n) < d.sporadic
        col = names["bmi"] if d.bmi_mode == "direct" else names["weight"]
        w[col] = np.where(gap, np.nan, np.asarray(w[col]))
        p.loc[gap, "bmi"] = np.nan
    w[_bl_col(d, names, "pain")] = p.pain_raw_bl.to_numpy(copy=True)
    w[_bl_col(d, names, "function")] = p.function_raw_bl.to_numpy(copy=True)
    long_rows = []
    outcome_rows = []
    for v in visits:
        for outcome in ("pain", "function"):
            val = np.where(v["observed"] & ~v[f"{outcome}_missing"], v[f"{outcome}_raw"], np.nan)
            v[f"{outcome}_value"] = val
        obs_any = ~(np.isnan(v["pain_value"]) & np.isnan(v["function_value"]))
        clean = pd.DataFrame({"trial_id": d.trial_id, "participant_id": ids, "months": v["months"],
                              "pain": np.where(np.isnan(v["pain_value"]), np.nan, v["pain"]),
                              "function": np.where(np.isnan(v["function_value"]), np.nan, v["function"])})
        outcome_rows.append(clean[obs_any])
        if d.layout == "wide":
            w[_fu_col(d, names, "pain", v["months"])] = v["pain_value"]
            w[_fu_col(d, names, "function", v["months"])] = v["function_value"]
        else:
            long_rows.append((v["months"], obs_any, v["pain_value"], v["function_value"]))
    if d.identifying:
        first = ["Alex", "Sam", "Robin", "Kim", "Jo", "Chris", "Pat", "Lee"]
        last = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Thomas", "Roberts"]
        w["name"] = [f"{first[a]} {last[b]}" for a, b in zip(rng.integers(0, 8, d.n), rng.integers(0, 8, d.n))]
        w["date_of_birth"] = [(date(2010, 1, 1) - timedelta(days=int(a * 365.25))).isoformat() for a in p.age]
        w["email"] = [f"participant{j}@example.org" for j in rng.permutation(d.n)]
    return pd.DataFrame(w), labels, long_rows, pd.concat(outcome_rows, ignore_index=True), names


# Planted problems: a record whose participant or arm is unknown is excluded; a bad value is set
# missing for its variable only (intention to treat): the latent variable it affects.
VALUE_KINDS = {"out_of_range": "pain_bl", "implausible_bmi": "bmi", "non_numeric": "age"}


def _plant_dirty(d, w, p, names, rng):
    """Plant dirty records; returns the (participant_id, kind) list."""
    dirty = []
    used = set()

    def pick():
        """A row whose neighbours are clean too, or None when no such row is left (a trial
        too small for all its planted problems keeps the ones that fit). Rows are drawn until
        one fits; whether any fits at all is asked only after many misses, so that a trial
        with room draws exactly the rows it always drew."""
        if d.n < 3:
            return None
        for misses in itertools.count():
            j = int(rng.integers(1, d.n - 1))
            if not used & {j - 1, j, j + 1}:
                used.update({j - 1, j, j + 1})
                return j
            if misses == 1000 and all(used & {i - 1, i, i + 1} for i in range(1, d.n - 1)):
                return None

    idcol = names["id"]
    for kind in d.dirty:
        j = pick()
        if j is None:
            break
        if kind == "missing_arm":
            w.loc[j, names["arm"]] = np.nan
            dirty.append((w.loc[j, idcol], kind))
        elif kind == "out_of_range":
            ins = INSTRUMENTS[d.pain]
            w.loc[j, _bl_col(d, names, "pain")] = ins.high * 1.3
            dirty.append((w.loc[j, idcol], kind))
        elif kind == "duplicate_id":
            w.loc[j, idcol] = w.loc[j - 1, idcol]
            p.loc[j, "participant_id"] = w.loc[j - 1, idcol]
            dirty.append((w.loc[j, idcol], kind))
        elif kind == "implausible_bmi":
            if d.bmi_mode == "direct":
                w.loc[j, names["bmi"]] = 250.0
            else:
                w.loc[j, names["height"]] = 17.0 if d.bmi_mode == "cm_kg" else 0.17
                w.loc[j, names["weight"]] = w.loc[j, names["weight"]] if pd.notna(w.loc[j, names["weight"]]) else 70.0
            dirty.append((w.loc[j, idcol], kind))
        elif kind == "non_numeric":
            col = names["age"] if d.age_mode == "direct" else names["byear"]
            w[col] = w[col].astype(object)
            w.loc[j, col] = "unknown"
            dirty.append((w.loc[j, idcol], kind))
    return dirty


def _plant_codes(d: TrialDesign, w: pd.DataFrame, p: pd.DataFrame, outcomes: pd.DataFrame, names, rng):
    """Missing-value codes as trial teams write them: -99 for a pain score, 999 for a function
    score, -9 for a covariate. The latent values they stand for become missing."""
    ids = w[names["id"]].astype(str).to_numpy()
    month = d.months[-1]
    for outcome, code in (("pain", -99.0), ("function", 999.0)):
        col = _fu_col(d, names, outcome, month)
        present = np.flatnonzero(w[col].notna().to_numpy())
        hit = rng.choice(present, size=max(1, len(present) // 20), replace=False)
        w.loc[hit, col] = code
        lost = outcomes.participant_id.isin(ids[hit]) & (outcomes.months == month)
        outcomes.loc[lost, outcome] = np.nan
    cov = next((c for c in ("heavy_work", "medication", "employed") if c in d.measured), None)
    if cov is not None:
        col = names[cov]
        present = np.flatnonzero(w[col].notna().to_numpy())
        hit = rng.choice(present, size=max(1, len(present) // 25), replace=False)
        w[col] = w[col].astype(object)
        w.loc[hit, col] = "-9"
        p.loc[p.participant_id.isin(ids[hit]), cov] = np.nan
    return outcomes[outcomes.pain.notna() | outcomes.function.notna()]


def simulate(seed: int = 2020, n_trials: int = N_TRIALS, n_total: int = N_TOTAL) -> DemoData:
    """Latent clean data and raw tables of the trials, deterministic for ``seed``. The latent
    data are what harmonisation must give: a participant with a planted bad value keeps the
    others (that variable is missing), and a record with an unknown identity or arm is dirty."""
    trials = [_simulate_one(*task) for task in _trial_tasks(seed, n_trials, n_total)]
    participants = pd.concat([t.participants for t in trials], ignore_index=True)
    dirty = pd.DataFrame([row for t in trials for row in t.dirt], columns=["trial_id", "participant_id", "kind"])
    dirty["column"] = dirty.kind.map(VALUE_KINDS)
    keys = participants.set_index(["trial_id", "participant_id"]).index
    excluded = dirty[dirty.column.isna()].set_index(["trial_id", "participant_id"]).index
    # a duplicate ID makes both records with that ID dirty (who is who is unknown)
    participants["dirty"] = keys.isin(excluded)
    for r in dirty[dirty.column.notna()].itertuples():
        at = (participants.trial_id == r.trial_id) & (participants.participant_id == r.participant_id)
        participants.loc[at, r.column] = np.nan
        if r.column == "bmi":
            participants.loc[at, "bmi_true"] = np.nan
    return DemoData(participants, pd.concat([t.outcomes for t in trials], ignore_index=True), dirty,
                    {t.design.trial_id: t.raw for t in trials})


@dataclass
class _Trial:
    """One simulated trial: its latent participants and outcomes, the records made dirty
    ((trial, participant, kind) rows) and its raw table(s) with their value labels."""

    design: TrialDesign
    participants: pd.DataFrame
    outcomes: pd.DataFrame
    dirt: list
    raw: tuple


def _trial_tasks(seed: int, n_trials: int, n_total: int) -> list[tuple]:
    """(design, number, own seed, data seed) of each trial: every trial draws from its own
    stream, so that trials can be simulated in any order or in parallel."""
    master = np.random.default_rng(seed)
    return [(d, i, master.integers(2**63), seed) for i, d in enumerate(designs(n_trials, n_total))]


def _simulate_one(d: TrialDesign, i: int, trial_seed, seed: int) -> _Trial:
    """Trial ``i`` of the design: its latent data, then its raw table(s) as its team would
    send them, with the dirty records and missing-value codes planted."""
    rng = np.random.default_rng(trial_seed)
    p, visits = _simulate_trial(d, rng)
    ids = _ids(d, rng)
    p["participant_id"] = ids
    w, labels, long_rows, clean_out, names = _build_raw(d, p, visits, ids, rng)
    dirt = [(d.trial_id, str(pid), kind) for pid, kind in _plant_dirty(d, w, p, names, rng)]
    if d.codes:  # its own random stream: every other value stays as without codes
        clean_out = _plant_codes(d, w, p, clean_out, names, np.random.default_rng([seed, i, 99]))
    if d.tables == "baseline+visits":
        w = _workbook(d, w, names, long_rows)
    elif d.layout == "long":
        w = _to_long(d, w, names, long_rows, rng)
    if d.date_style == "dmy":  # the first rows read either way (03/11/2009): nothing to guess from
        day = pd.to_numeric(w[names["enrol"]].str[:2])
        w = w.iloc[np.argsort((day > 12).to_numpy(), kind="stable")].reset_index(drop=True)
    return _Trial(d, p, clean_out, dirt, (w, labels))


def _workbook(d, w, names, long_rows) -> dict:
    """The data as some teams send them: a readme sheet, one row per participant on a baseline
    sheet, and the follow-up visits in long layout on a visits sheet whose id column is named
    differently."""
    codes = {v: k for k, v in _visit_codes(d).items()}
    frames = []
    for months, obs, pain, func in long_rows:
        f = pd.DataFrame({f"{names['id']}_id": w[names["id"]], names["time"]: codes[float(months)],
                          names["pain"]: pain, names["function"]: func})
        frames.append(f[obs])
    visits = pd.concat(frames, ignore_index=True)
    order = pd.Categorical(visits[f"{names['id']}_id"], categories=pd.unique(w[names["id"]])).codes
    visits = visits.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    readme = pd.DataFrame({"About this workbook": [
        f"Trial {d.trial_id}: one row per randomised participant on the sheet 'baseline';",
        "follow-up visits, one row per visit, on the sheet 'visits'.",
        f"Pain: {INSTRUMENTS[d.pain].label}. Function: {INSTRUMENTS[d.function].label}."]})
    return {"readme": readme, "baseline": w, "visits": visits}


def _to_long(d, w, names, long_rows, rng):
    """Reshape to one row per participant and visit; covariates only on the baseline row."""
    codes = {v: k for k, v in _visit_codes(d).items()}
    base = w.copy()
    base.insert(1, names["time"], codes[0.0])
    base = base.rename(
        columns={_bl_col(d, names, "pain"): names["pain"], _bl_col(d, names, "function"): names["function"]}
    )
    keep = [names["id"], names["arm"], names["time"], names["pain"], names["function"]]
    frames = [base]
    for months, obs, pain, func in long_rows:
        f = pd.DataFrame({names["id"]: w[names["id"]], names["arm"]: w[names["arm"]],
                          names["time"]: codes[float(months)], names["pain"]: pain, names["function"]: func})
        frames.append(f[obs])
    out = pd.concat(frames, ignore_index=True)[list(base.columns)]
    out = out.loc[:, keep + [c for c in base.columns if c not in keep]]
    out["_order"] = out.groupby(names["id"], sort=False).cumcount()
    out["_pid_order"] = pd.Categorical(out[names["id"]], categories=pd.unique(w[names["id"]])).codes
    out = out.sort_values(["_pid_order", "_order"], kind="stable").drop(columns=["_order", "_pid_order"])
    # a duplicated ID appears here as two baseline rows under one participant ID
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- writing


def write_raw(raw_dir, seed: int = 2020, data: DemoData | None = None, n_trials: int = N_TRIALS,
              n_total: int = N_TOTAL, spec_dir=None, jobs: int = 1) -> list[Path]:
    """Write the raw files into ``raw_dir`` (and, for a scaled demo, their specs into
    ``spec_dir``); returns the raw files' paths. Without ``data`` the trials are simulated
    and written in ``jobs`` processes (each trial from its own stream: the same files)."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    if spec_dir is not None:
        Path(spec_dir).mkdir(parents=True, exist_ok=True)
        for d in designs(n_trials, n_total):
            (Path(spec_dir) / f"{d.trial_id}.yaml").write_text(spec_text(d), encoding="utf-8")
    if data is not None:
        paths = [_write_trial(d, *data.raw[d.trial_id], raw_dir) for d in designs(n_trials, n_total)]
    else:
        tasks = _trial_tasks(seed, n_trials, n_total)
        if jobs > 1:
            # the file writers load here, once, and the forked workers inherit them (each
            # worker loading its own cost 0.3 s of CPU twice, on cores the caller may be using)
            import openpyxl  # noqa: F401
            import pyreadstat  # noqa: F401
        chunks = [tasks[j::max(jobs, 1)] for j in range(max(jobs, 1))]  # every jobs-th trial: balanced sizes
        written = run_tasks([(_simulate_and_write, (chunk, raw_dir)) for chunk in chunks if chunk], jobs)
        order = {d.trial_id: j for j, d in enumerate(designs(n_trials, n_total))}
        paths = sorted((p for part in written for p in part), key=lambda p: order[p.stem])
    # provenance: these files are the synthetic demo, made with this seed and this truth
    (raw_dir / "DEMO_SEED").write_text(f"{seed}\n")
    (raw_dir / "DEMO_TRUTH.json").write_text(json.dumps(truth_table(), indent=1) + "\n")
    return paths


def _simulate_and_write(tasks, raw_dir) -> list[Path]:
    """Simulate some trials (``_trial_tasks``) and write their raw files."""
    out = []
    for task in tasks:
        trial = _simulate_one(*task)
        out.append(_write_trial(trial.design, *trial.raw, raw_dir))
    return out


def _write_trial(d: TrialDesign, w, labels, raw_dir: Path) -> Path:
    """One trial's raw file in its design's format."""
    import pyreadstat

    path = raw_dir / f"{d.trial_id}.{d.extension}"
    if d.fmt == "csv":
        w.to_csv(path, index=False)
    elif d.fmt == "csv_semicolon":
        w.to_csv(path, index=False, sep=";", decimal=",")
    elif d.fmt == "xlsx":
        _write_xlsx(path, w if isinstance(w, dict) else {"data": w})
    else:
        out = _numeric_where_possible(w)
        if d.fmt == "xpt":  # SAS transport, version 8 (long variable names)
            pyreadstat.write_xport(out, str(path), file_format_version=8, table_name=d.trial_id)
        else:
            writer = pyreadstat.write_sav if d.fmt == "sav" else pyreadstat.write_dta
            writer(out, str(path), variable_value_labels={k: v for k, v in labels.items() if k in out.columns})
    return path


def _write_xlsx(path: Path, sheets: dict) -> None:
    """The frames as the sheets of one workbook, a header row then one row per record, missing
    values as empty cells: what pandas' to_excel writes, as read back (tested), streamed row by
    row in openpyxl's write-only mode instead of a styled cell object per value (2.5 times
    faster; the demo's five workbooks were a third of the time spent generating it)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, frame in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append([str(c) for c in frame.columns])
        columns = []
        for c in frame.columns:
            values = frame[c].to_numpy(object, copy=True)
            values[frame[c].isna().to_numpy()] = None
            columns.append(values)
        for row in zip(*columns):
            sheet.append(row)
    book.save(path)


def _numeric_where_possible(w: pd.DataFrame) -> pd.DataFrame:
    """Statistical packages store columns as numbers or as text: a column whose every value
    reads as a number is written as one."""
    out = w.copy()
    for c in out.columns:
        if out[c].dtype == object:
            converted = pd.to_numeric(out[c], errors="coerce")
            if converted.notna().sum() == out[c].notna().sum():
                out[c] = converted
            else:
                out[c] = out[c].astype(str).where(out[c].notna(), "")
    return out


def spec_dict(d: TrialDesign) -> dict:
    """The spec an analyst would write for this design (committed in data/specs/)."""
    names = _names(d)
    src = {"file": f"{d.trial_id}.{d.extension}", "format": d.extension, "layout": d.layout}
    if d.fmt == "csv_semicolon":
        src.update(delimiter=";", decimal=",")
    if d.fmt == "xlsx":
        src["sheet"] = "data"
    spec = {"trial_id": d.trial_id, "title": f"Synthetic trial {d.trial_id}: {' vs '.join(a[1] for a in d.arms)}",
            "setting": d.setting}
    if d.tables == "baseline+visits":
        spec["sources"] = [dict(src, sheet="baseline", layout="wide"),
                           dict(src, sheet="visits", layout="long", participant_id=f"{names['id']}_id")]
    else:
        spec["source"] = src
    if d.layout == "long":
        visit_codes = _visit_codes(d)
        if d.tables == "baseline+visits":  # the visits sheet holds follow-ups only
            visit_codes = {k: v for k, v in visit_codes.items() if v > 0}
        spec["long"] = {"time_column": names["time"], "time_values": visit_codes}
    spec["participant_id"] = names["id"]
    if d.identifying:
        spec["drop_identifying"] = ["name", "date_of_birth", "email"]
    if d.codes:
        spec["missing_values"] = [-99, 999]
        cov_col = next((names[c] for c in ("heavy_work", "medication", "employed") if c in d.measured), None)
        if cov_col:
            spec["missing_values_by_column"] = {cov_col: [-9]}
    if d.arm_coding == "numeric":
        spec["arm"] = {
            "column": names["arm"],
            "labels": {a[0]: a[2] for a in d.arms},
            "names": {a[0]: a[1] for a in d.arms},
        }
    else:
        spec["arm"] = {"column": names["arm"], "labels": {a[1]: a[2] for a in d.arms}}
    outcomes = {}
    for outcome in ("pain", "function"):
        o = {"instrument": getattr(d, outcome), "baseline": _bl_col(d, names, outcome)}
        if d.layout == "wide":
            o["followup"] = {float(m): _fu_col(d, names, outcome, m) for m in d.months}
        elif d.tables == "baseline+visits":  # baseline on its own sheet, follow-ups in the visits sheet
            o["column"] = names[outcome]
        else:
            o["baseline"] = names[outcome]
            o["column"] = names[outcome]
        outcomes[outcome] = o
    spec["outcomes"] = outcomes
    cov = {}
    cov["age"] = (
        {"column": names["age"]}
        if d.age_mode == "direct"
        else {"birth_year": names["byear"], "enrolment_date": names["enrol"]}
    )
    if d.date_style == "dmy":
        cov["age"]["date_format"] = "%d/%m/%Y"
    cov["female"] = {"column": names["sex"], "codes": _sex_codes(d.sex_coding)}
    if "bmi" in d.measured:
        if d.bmi_mode == "direct":
            cov["bmi"] = {"column": names["bmi"]}
        elif d.bmi_mode == "cm_kg":
            cov["bmi"] = {
                "height": names["height"],
                "height_unit": "cm",
                "weight": names["weight"],
                "weight_unit": "kg",
            }
        else:
            cov["bmi"] = {"height": names["height"], "height_unit": "m", "weight": names["weight"], "weight_unit": "lb"}
    for c in ("heavy_work", "medication", "employed", "education_post_secondary"):
        if c in d.measured:
            cov[c] = {
                "column": names["education" if c == "education_post_secondary" else c],
                "codes": _yesno_codes(d.yesno_coding),
            }
    if "duration_months" in d.measured:
        cov["duration_months"] = {"column": names["duration"], "unit": d.duration_unit}
    spec["covariates"] = cov
    spec["risk_of_bias"] = d.risk_of_bias
    not_measured = sorted(set(_OPTIONAL) - set(d.measured))
    spec["notes"] = ("Not measured: " + ", ".join(not_measured) + ".") if not_measured else ""
    return spec


def spec_text(d: TrialDesign) -> str:
    """The committed YAML spec of a demo trial, with a short header for the reader."""
    import yaml

    header = (
        f"# Spec of {d.trial_id} (synthetic demo trial), written from its data dictionary.\n"
        "# Fields: source (file and format), participant_id, arm (raw label -> exercise |\n"
        "# none_usual_care | other_conservative), outcomes (instrument, baseline and follow-up\n"
        "# columns by months), covariates (columns and codings), risk_of_bias.\n"
    )
    return header + yaml.safe_dump(spec_dict(d), sort_keys=False, allow_unicode=True, width=100)
