"""Draft a trial spec from a raw file: `python -m analysis new-spec <file> --trial-id ID`.

The draft names every column (of every sheet, for a workbook) with its type, values and
value labels, guesses each column's role from its name and values (identifier, arm, visit,
outcomes and their instruments, covariates, identifying data to drop), drafts one source per
sheet that holds the participant identifier, and proposes the date formats and the
missing-value codes it sees. Every guess is marked ``# CONFIRM`` and every gap ``TODO``;
`python -m analysis check` then reports them field by field. Nothing is decided for the
analyst: an ambiguous date is proposed as a question, not an answer.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import yaml

from analysis.errors import InputError
from analysis.ingest.readers import read_raw, sheet_names
from analysis.ingest.spec import code_key

__all__ = ["inspect_file", "inspect_table", "draft_spec", "write_draft", "propose_date_format"]

SCALE_MAXIMA = (10, 23, 24, 50, 100)
FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".sav": "sav", ".dta": "dta", ".sas7bdat": "sas7bdat",
           ".xpt": "xpt"}
# values that trial teams use for "not known" in numeric columns
CANDIDATE_CODES = (-9, -99, -999, -9999, -8, -88, 99, 999, 9999, 888)
IDENTIFYING = re.compile(r"(^name$|first.?name|last.?name|surname|e.?mail|birth.?date|date.?of.?birth|^dob$|address|"
                         r"phone|postcode|zip)", re.I)
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
SLASHED_DATE = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")


def _sniff_csv(path: Path) -> tuple[str, str]:
    sample = path.read_text(encoding="utf-8", errors="replace")[:20000]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    decimal = "," if delimiter != "," and re.search(r"\d,\d", sample) else "."
    return delimiter, decimal


def propose_date_format(values) -> tuple[str | None, str]:
    """A date format for text dates, with why; None when the dates are ISO (no format needed)
    or not dates. Day-first is proposed only when a day above 12 shows it, month-first likewise;
    otherwise both are offered and the analyst must decide."""
    text = pd.Series([str(v).strip() for v in values if isinstance(v, str)])
    if text.empty or text.str.match(r"^\d{4}-\d{2}-\d{2}").mean() > 0.9:
        return None, ""
    parts = text.str.extract(SLASHED_DATE).dropna().astype(int)
    if parts.empty:
        return "TODO", f"unrecognised dates, e.g. {list(text[:3])}"
    sep = re.search(r"[/.-]", text.iloc[0]).group()
    if (parts[0] > 12).any() and not (parts[1] > 12).any():
        return f"%d{sep}%m{sep}%Y", f"day-first: a first number above 12 (e.g. {text[parts[0] > 12].iloc[0]})"
    if (parts[1] > 12).any() and not (parts[0] > 12).any():
        return f"%m{sep}%d{sep}%Y", f"month-first: a second number above 12 (e.g. {text[parts[1] > 12].iloc[0]})"
    return "TODO", (f"ambiguous: every date reads both ways (e.g. {text.iloc[0]}); write %d{sep}%m{sep}%Y "
                    f"(day-first) or %m{sep}%d{sep}%Y (month-first) from the data dictionary")


def _all_but_a_few(values: pd.Series) -> int:
    n = int(values.notna().sum())
    return n - max(1, int(0.03 * n))


def inspect_table(data: pd.DataFrame, value_labels: dict, decimal: str = ".") -> dict:
    """One description per column: type, missing, distinct values, range, scale, labels."""
    columns = {}
    for col in data.columns:
        x = data[col]
        text = x.dropna().astype(str).str.replace(",", ".", regex=False) if decimal == "," else x.dropna()
        num = pd.to_numeric(text, errors="coerce")
        numeric = len(num) > 0 and num.notna().mean() > 0.95
        uniq = pd.unique(x.dropna())
        codes = sorted(int(c) for c in CANDIDATE_CODES if numeric and (num == c).any())
        plain = num[~num.isin(CANDIDATE_CODES)] if numeric else num
        columns[col] = {
            "numeric": bool(numeric), "missing": int(x.isna().sum()), "unique": int(len(uniq)),
            "values": [code_key(v) for v in uniq[:8]], "raw": list(x.dropna()[:200]),
            "min": float(plain.min()) if numeric and len(plain.dropna()) else None,
            "max": float(plain.max()) if numeric and len(plain.dropna()) else None,
            # the smallest standard scale maximum holding all values but a few (3 %, at least
            # one): robust to out-of-range entries, which harmonisation will set missing anyway
            "scale_max": (min([m for m in SCALE_MAXIMA if (plain <= m).sum() >= _all_but_a_few(plain)],
                              default=float(plain.max())) if numeric and len(plain.dropna()) else None),
            "decimals": bool(numeric and (plain.dropna() % 1 != 0).any()),
            "labels": {code_key(k): v for k, v in value_labels.get(col, {}).items()},
            "codes": codes, "dots": bool((x.astype(str).str.strip() == ".").any()),
        }
    return columns


def inspect_file(path) -> list[tuple[dict, pd.DataFrame, dict]]:
    """For each table of the file (each sheet of a workbook): source settings, data, columns."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError("unsupported file type", file=path, expected="one of " + ", ".join(FORMATS), found=path.suffix)
    out = []
    kw = {}
    if fmt == "csv":
        kw["delimiter"], kw["decimal"] = _sniff_csv(path)
    sheets = sheet_names(path) if fmt == "xlsx" else [None]
    for sheet in sheets:
        source = {"file": path.name, "format": fmt, **({"sheet": sheet} if sheet is not None else {})}
        if fmt == "csv":
            source.update(delimiter=kw["delimiter"], decimal=kw["decimal"])
        try:
            table = read_raw(path, fmt, sheet=sheet, **kw)
        except InputError:
            if sheet is None:
                raise
            out.append((source, pd.DataFrame(), {}))  # an empty sheet
            continue
        out.append((source, table.data, inspect_table(table.data, table.value_labels, kw.get("decimal", "."))))
    return out


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


def _column_lines(label: str, columns: dict, roles: dict) -> list[str]:
    lines = [f"# {label}:"]
    if not columns:
        return lines + ["#   (no data rows)"]
    for c, i in columns.items():
        kind = "number" if i["numeric"] else "text"
        rng = f", {i['min']:g} to {i['max']:g}" if i["numeric"] and i["min"] is not None else ""
        lab = f", labels {i['labels']}" if i["labels"] else ""
        lines.append(f"#   {c}: {kind}{rng}, {i['unique']} distinct, {i['missing']} missing; "
                     f"e.g. {i['values'][:5]}{lab}{'  -> ' + roles[c] if roles.get(c) else ''}")
    return lines


def draft_spec(path, trial_id: str) -> str:
    tables = inspect_file(path)
    header = [f"# Draft spec for {trial_id}, written by `python -m analysis new-spec` from {Path(path).name}.",
              "# Confirm every line marked CONFIRM and fill every TODO, then run `python -m analysis check`.",
              "# Columns found:" if len(tables) == 1 else f"# Sheets found ({len(tables)}), with their columns:"]
    sources, columns, roles = [], {}, {}
    for source, data, cols in tables:
        table_roles = {c: _role(c, i) for c, i in cols.items()}
        label = source.get("sheet", Path(path).name) if len(tables) > 1 else "columns"
        lines = _column_lines(f"sheet {label!r}" if len(tables) > 1 else label, cols, table_roles)
        header += lines if len(tables) > 1 else lines[1:]
        ids = [c for c, r in table_roles.items() if r == "participant_id"]
        if not ids:
            if len(tables) > 1:
                header.append("#   (no participant identifier column: not used)")
            continue
        time_cols = [c for c, r in table_roles.items() if r == "time"]
        long = bool(time_cols) and data[ids[0]].duplicated().any()
        sources.append((dict(source, layout="long" if long else "wide"), ids[0], time_cols[0] if long else None))
        for c, i in cols.items():
            if c not in columns:
                columns[c], roles[c] = i, table_roles[c]
    comments = {}
    pid = sources[0][1] if sources else "TODO"
    spec: dict = {"trial_id": trial_id, "title": "TODO: a short title", "setting": "TODO: country and setting"}
    if len(sources) <= 1:
        spec["source"] = sources[0][0] if sources else dict(tables[0][0], layout="wide")
    else:
        # the table of randomised participants first (a wide table), then the others
        ordered = sorted(sources, key=lambda s: s[0]["layout"] == "long")
        pid = ordered[0][1]
        spec["sources"] = [dict(s, **({"participant_id": i} if i != pid else {})) for s, i, _ in ordered]
        comments["sources"] = ("CONFIRM: the tables that hold the participant identifier; the first lists every "
                               "randomised participant")
    long_source = next((s for s in sources if s[2]), None)
    long = long_source is not None
    if long:
        tcol = long_source[2]
        values = columns[tcol]["values"]
        spec["long"] = {"time_column": tcol, "time_values": {v: "TODO" for v in values}}
        comments["long"] = "CONFIRM: map each visit code to months since randomisation (baseline = 0)"
    spec["participant_id"] = pid
    drop = [c for c, r in roles.items() if r == "identifying"]
    if drop:
        spec["drop_identifying"] = drop
        comments["drop_identifying"] = "CONFIRM: these columns look identifying and are dropped on read"
    codes = sorted({c for i in columns.values() for c in i["codes"]})
    if codes or any(i["dots"] for i in columns.values()):
        spec["missing_values"] = codes + (["."] if any(i["dots"] for i in columns.values()) else [])
        comments["missing_values"] = ("CONFIRM: values that look like codes for 'not known' (check the data "
                                      "dictionary; a real score of 99 must not be listed)")
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
        inst, why = _instrument(domain, base[0], {**columns[base[0]],
                                                  "scale_max": max(columns[c]["scale_max"] or 0 for c in cols)})
        o = {"instrument": inst, "baseline": base[0]}
        if long:
            value_cols = [c for c in cols if c != base[0]] if len(sources) > 1 else [base[0]]
            o["column"] = value_cols[0] if value_cols else base[0]
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
        date_format, why = propose_date_format(columns[found["enrolment_date"]]["raw"])
        if date_format:
            cov["age"]["date_format"] = date_format
            comments["covariates"] = f"CONFIRM: dates in {found['enrolment_date']}: {why}. "
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
    comments["covariates"] = (comments.get("covariates", "")
                              + "CONFIRM: codes map each raw value to 1 (yes/female) or 0; unit of duration")
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
    return "\n".join(header + out) + "\n"


def write_draft(path, trial_id: str, spec_dir) -> Path:
    target = Path(spec_dir) / f"{trial_id}.yaml"
    if target.exists():
        raise InputError("a spec for this trial already exists; move it away or choose another --trial-id",
                         file=target, trial=trial_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(draft_spec(path, trial_id), encoding="utf-8")
    return target
