"""Draft a trial spec from a raw file: `python -m analysis new-spec <file> --trial-id ID`.

The draft names every column with its type, values and value labels, guesses each column's
role from its name and values (identifier, arm, visit, outcomes and their instruments,
covariates, identifying data to drop) and marks every guess with ``# CONFIRM`` and every
gap with ``TODO``, which `python -m analysis check` then reports field by field.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import yaml

from analysis.errors import InputError
from analysis.ingest.readers import read_raw
from analysis.ingest.spec import code_key

__all__ = ["inspect_file", "draft_spec", "write_draft"]

SCALE_MAXIMA = (10, 23, 24, 50, 100)
FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".sav": "sav", ".dta": "dta"}
IDENTIFYING = re.compile(
    r"(^name$|first.?name|last.?name|surname|e.?mail|birth.?date|date.?of.?birth|^dob$|address|phone|postcode|zip)",
    re.I,
)
ROLE_PATTERNS = [
    ("participant_id", re.compile(r"^(pid|id|subject|subj|patient|participant|record)(_?id|_?no)?$", re.I)),
    ("arm", re.compile(r"(arm|group|grp|treat|allocation|randomi[sz]ed_to|intervention)", re.I)),
    ("time", re.compile(r"^(visit|time|timepoint|week|wk|month|occasion)", re.I)),
    ("birth_year", re.compile(r"(yob|year.?of.?birth|birth.?year)", re.I)),
    ("enrolment_date", re.compile(r"(rand|enrol|entry|baseline).*date|date.*(rand|enrol|entry)", re.I)),
    ("age", re.compile(r"^age", re.I)),
    ("female", re.compile(r"(sex|gender|female)", re.I)),
    ("bmi", re.compile(r"(bmi|body.?mass)", re.I)),
    ("height", re.compile(r"^(height|ht)", re.I)),
    ("weight", re.compile(r"^(weight|wt)", re.I)),
    ("heavy_work", re.compile(r"(heavy|manual|physical).?(work|job)|physwork", re.I)),
    ("medication", re.compile(r"(med|analges|drug|nsaid)", re.I)),
    ("employed", re.compile(r"(employ|working|in_work|job)", re.I)),
    ("education_post_secondary", re.compile(r"(educ|edu_|degree|school)", re.I)),
    ("duration", re.compile(r"(dur|duration|chronic)", re.I)),
    ("pain", re.compile(r"(pain|vas|nrs)", re.I)),
    ("function", re.compile(r"(func|disab|rmdq|roland|odi|oswestry|quebec|psfs)", re.I)),
]
FOLLOWUP = re.compile(r"(?:_|^|[a-z])(\d+(?:_\d+)?)\s*(m|mo|month|months|w|wk|week|weeks)?$", re.I)


def _sniff_csv(path: Path) -> tuple[str, str]:
    sample = path.read_text(encoding="utf-8", errors="replace")[:20000]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    decimal = "," if delimiter != "," and re.search(r"\d,\d", sample) else "."
    return delimiter, decimal


def inspect_file(path) -> tuple[dict, pd.DataFrame, dict]:
    """Source settings, the data, and one description per column."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError("unsupported file type", file=path, expected="one of " + ", ".join(FORMATS), found=path.suffix)
    source = {"file": path.name, "format": fmt}
    kw = {}
    if fmt == "csv":
        kw["delimiter"], kw["decimal"] = _sniff_csv(path)
        source.update(delimiter=kw["delimiter"], decimal=kw["decimal"])
    table = read_raw(path, fmt, **kw)
    data = table.data
    columns = {}
    for col in data.columns:
        x = data[col]
        text = x.dropna().astype(str).str.replace(",", ".", regex=False) if kw.get("decimal") == "," else x.dropna()
        num = pd.to_numeric(text, errors="coerce")
        numeric = len(num) > 0 and num.notna().mean() > 0.95
        uniq = pd.unique(x.dropna())
        columns[col] = {
            "numeric": bool(numeric), "missing": int(x.isna().sum()), "unique": int(len(uniq)),
            "values": [code_key(v) for v in uniq[:8]],
            "min": float(num.min()) if numeric else None, "max": float(num.max()) if numeric else None,
            # the smallest standard scale maximum holding 97 % of the values: robust to a few
            # out-of-range entries, which harmonisation will exclude anyway
            "scale_max": (min([m for m in SCALE_MAXIMA if (num <= m).mean() >= 0.97], default=float(num.max()))
                          if numeric else None),
            "decimals": bool(numeric and (num.dropna() % 1 != 0).any()),
            "labels": {code_key(k): v for k, v in table.value_labels.get(col, {}).items()},
        }
    return source, data, columns


def _role(col: str, info: dict) -> str | None:
    if IDENTIFYING.search(col) or any("@" in v for v in info["values"]):
        return "identifying"
    for role, pattern in ROLE_PATTERNS:
        if pattern.search(col):
            return role
    return None


def _instrument(domain: str, col: str, info: dict) -> tuple[str, str]:
    """A guessed instrument with the reason for the guess."""
    top = info.get("scale_max") or 0
    name = col.lower()
    if domain == "pain":
        if top <= 10:
            return ("vas_10", "0-10 with decimals") if info.get("decimals") else ("nrs_10", "0-10 whole numbers")
        return "vas_100", "values up to 100"
    if "psfs" in name:
        return "psfs_10", "named PSFS (higher = better)"
    if "quebec" in name:
        return "quebec_100", "named Quebec"
    if top <= 10:
        return "psfs_10", "0-10: Patient-Specific Functional Scale (higher = better)?"
    if top <= 23:
        return "rmdq_23", "maximum 23 or less: Roland-Morris (check 23 or 24 items)"
    if top <= 24:
        return "rmdq_24", "maximum 24: Roland-Morris 24 items"
    if top <= 50:
        return "odi_50", "maximum 50: Oswestry raw score"
    return "odi_100", "values up to 100: Oswestry % (or Quebec)"


def _months(col: str) -> float | None:
    m = FOLLOWUP.search(col)
    if not m:
        return None
    value = float(m.group(1).replace("_", "."))
    unit = (m.group(2) or "m").lower()
    return round(value * 12 / 52, 2) if unit.startswith("w") else value


def draft_spec(path, trial_id: str) -> str:
    source, data, columns = inspect_file(path)
    roles = {c: _role(c, i) for c, i in columns.items()}
    lines = [f"# Draft spec for {trial_id}, written by `python -m analysis new-spec` from {source['file']}.",
             "# Confirm every line marked CONFIRM and fill every TODO, then run `python -m analysis check`.",
             "# Columns found:"]
    for c, i in columns.items():
        kind = "number" if i["numeric"] else "text"
        rng = f", {i['min']:g} to {i['max']:g}" if i["numeric"] and i["min"] is not None else ""
        lab = f", labels {i['labels']}" if i["labels"] else ""
        lines.append(
            f"#   {c}: {kind}{rng}, {i['unique']} distinct, {i['missing']} missing; e.g. {i['values'][:5]}{lab}"
            f"{'  -> ' + roles[c] if roles[c] else ''}"
        )
    ids = [c for c, r in roles.items() if r == "participant_id"]
    pid = ids[0] if ids else "TODO"
    time_cols = [c for c, r in roles.items() if r == "time"]
    long = bool(time_cols) and pid != "TODO" and data[pid].duplicated().any()
    src = dict(source, layout="long" if long else "wide")
    spec: dict = {"trial_id": trial_id, "title": "TODO: a short title", "setting": "TODO: country and setting",
                  "source": src}
    comments = {}
    if long:
        tcol = time_cols[0]
        spec["long"] = {"time_column": tcol, "time_values": {v: "TODO" for v in columns[tcol]["values"]}}
        comments["long"] = "CONFIRM: map each visit code to months since randomisation (baseline = 0)"
    spec["participant_id"] = pid
    drop = [c for c, r in roles.items() if r == "identifying"]
    if drop:
        spec["drop_identifying"] = drop
        comments["drop_identifying"] = "CONFIRM: these columns look identifying and are dropped on read"
    arms = [c for c, r in roles.items() if r == "arm"]
    if arms:
        info = columns[arms[0]]
        spec["arm"] = {"column": arms[0], "labels": {v: "TODO" for v in info["values"]}}
        if info["labels"]:
            spec["arm"]["names"] = dict(info["labels"])
        comments["arm"] = "TODO: map each arm label to exercise, none_usual_care or other_conservative"
    else:
        spec["arm"] = {"column": "TODO", "labels": {"TODO": "exercise"}}
    outcomes = {}
    for domain in ("pain", "function"):
        cols = [c for c, r in roles.items() if r == domain and columns[c]["numeric"]]
        if not cols:
            outcomes[domain] = {"instrument": "TODO", "baseline": "TODO", "followup": {}}
            continue
        base = [c for c in cols if re.search(r"(_0$|0$|_bl$|base)", c, re.I)] or cols[:1]
        inst, why = _instrument(
            domain, base[0], {**columns[base[0]], "scale_max": max(columns[c]["scale_max"] or 0 for c in cols)}
        )
        o = {"instrument": inst, "baseline": base[0]}
        if long:
            o["column"] = base[0]
        else:
            o["followup"] = {}
            for c in cols:
                if c == base[0]:
                    continue
                months = _months(c)
                o["followup"][months if months is not None else f"TODO months for {c}"] = c
        outcomes[domain] = o
        comments[f"outcomes.{domain}"] = f"CONFIRM: instrument guessed as {inst} ({why}); check follow-up months"
    spec["outcomes"] = outcomes
    cov = {}
    found = {r: c for c, r in reversed(list(roles.items())) if r}
    if "age" in found:
        cov["age"] = {"column": found["age"]}
    elif "birth_year" in found and "enrolment_date" in found:
        cov["age"] = {"birth_year": found["birth_year"], "enrolment_date": found["enrolment_date"]}
    if "female" in found:
        cov["female"] = {"column": found["female"], "codes": {v: "TODO" for v in columns[found["female"]]["values"]}}
    if "bmi" in found:
        cov["bmi"] = {"column": found["bmi"]}
    elif "height" in found and "weight" in found:
        h = columns[found["height"]]
        cov["bmi"] = {"height": found["height"], "height_unit": "m" if (h["max"] or 0) < 3 else "cm",
                      "weight": found["weight"], "weight_unit": "TODO (kg or lb)"}
    for name in ("heavy_work", "medication", "employed", "education_post_secondary"):
        if name in found:
            cov[name] = {"column": found[name], "codes": {v: "TODO" for v in columns[found[name]]["values"]}}
    if "duration" in found:
        cov["duration_months"] = {"column": found["duration"], "unit": "TODO (days, weeks, months or years)"}
    spec["covariates"] = cov
    comments["covariates"] = "CONFIRM: codes map each raw value to 1 (yes/female) or 0; unit of duration"
    spec["risk_of_bias"] = "TODO (low, some_concerns or high)"
    body = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)
    out = []
    for line in body.splitlines():
        key = line.split(":")[0].strip()
        top = line[:1] not in (" ", "-")
        if top and key in comments:
            out.append(f"# {comments[key]}")
        if top and key == "outcomes":
            out += [f"# {v}" for k, v in comments.items() if k.startswith("outcomes.")]
        out.append(line)
    return "\n".join(lines + out) + "\n"


def write_draft(path, trial_id: str, spec_dir) -> Path:
    target = Path(spec_dir) / f"{trial_id}.yaml"
    if target.exists():
        raise InputError("a spec for this trial already exists; move it away or choose another --trial-id",
                         file=target, trial=trial_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(draft_spec(path, trial_id), encoding="utf-8")
    return target
