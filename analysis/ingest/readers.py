"""Read a raw trial table of any supported format into a DataFrame of its own columns.

Values are kept as the file stores them (strings for CSV, numbers, strings or dates for Excel,
numeric codes for SPSS, Stata and SAS, whose value labels are returned separately) so that
harmonisation can report exactly which raw value it could not use. Missing values that SPSS
or Stata files declare (user-missing ranges, Stata's .a to .z) are kept visible and listed in
``declared_missing``: harmonisation sets them missing and counts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputError

__all__ = ["read_raw", "RawTable", "NA_STRINGS", "sheet_names"]

NA_STRINGS = ["", "NA", "N/A", "na", "n/a", "NaN", "nan", "missing"]


class RawTable:
    """A raw table's rows (index = 1-based data row number), value labels and declared
    missing values ({column: function value -> bool}), if any."""

    def __init__(self, data: pd.DataFrame, value_labels: dict | None = None, path: Path | None = None,
                 declared_missing: dict | None = None):
        self.data = data
        self.value_labels = value_labels or {}
        self.path = path
        self.declared_missing = declared_missing or {}


def _declared_missing_spss(meta) -> dict:
    """SPSS user-missing declarations: discrete values and ranges per column."""
    out = {}
    for col, ranges in (getattr(meta, "missing_ranges", None) or {}).items():
        spans = [(r["lo"], r["hi"]) for r in ranges]
        out[col] = lambda v, spans=spans: any(_between(v, lo, hi) for lo, hi in spans)
    return out


def _between(v, lo, hi) -> bool:
    try:
        return lo <= v <= hi
    except TypeError:
        return v == lo == hi


def _declared_missing_stata(meta) -> dict:
    """Stata's extended missing values (.a to .z) that the file uses, per column."""
    out = {}
    for col, letters in (getattr(meta, "missing_user_values", None) or {}).items():
        out[col] = lambda v, letters=frozenset(letters): isinstance(v, str) and v in letters
    return out


def _undecodable(path: Path, encoding: str) -> str:
    """Where a text file stops being ``encoding``, and how that spot reads in the usual
    alternatives, so the message can say which source.encoding to set (never guessed)."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
        return ""
    except UnicodeDecodeError as exc:
        start = exc.start
    line = raw.count(b"\n", 0, start) + 1
    snippet = raw[max(start - 20, 0):start + 20]
    readings = []
    for candidate in ("cp1252", "latin-1", "utf-16"):
        try:
            readings.append(f"as {candidate}: {snippet.decode(candidate)!r}")
        except UnicodeDecodeError:
            continue
    return f"byte {raw[start]:#04x} on line {line} is not {encoding}; " + "; ".join(readings)


def sheet_names(path) -> list[str]:
    """The sheets of a workbook, in order."""
    return list(pd.ExcelFile(path, engine="calamine").sheet_names)


def read_raw(path, fmt: str, *, delimiter=",", decimal=".", sheet=None, encoding="utf-8", trial=None) -> RawTable:
    path = Path(path)
    if not path.exists():
        raise InputError("raw data file not found", file=path, trial=trial,
                         hint="check source.file in the trial's spec or run `python -m analysis demo-data`")
    labels, declared = {}, {}
    try:
        if fmt == "csv":
            data = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, na_values=NA_STRINGS,
                               encoding=encoding, skipinitialspace=True)
        elif fmt == "xlsx":
            # calamine (Rust) reads large sheets an order of magnitude faster than openpyxl;
            # date cells arrive as datetimes
            data = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object, engine="calamine")
        elif fmt in ("sav", "dta"):
            import pyreadstat

            reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
            data, meta = reader(str(path), apply_value_formats=False, user_missing=True)
            labels = meta.variable_value_labels
            declared = _declared_missing_spss(meta) if fmt == "sav" else _declared_missing_stata(meta)
        elif fmt in ("sas7bdat", "xpt"):
            import pyreadstat

            reader = pyreadstat.read_sas7bdat if fmt == "sas7bdat" else pyreadstat.read_xport
            data, meta = reader(str(path))
            labels = getattr(meta, "variable_value_labels", {}) or {}
        else:
            raise InputError("unsupported file format", file=path, trial=trial,
                             expected="csv, xlsx, sav, dta, sas7bdat or xpt", found=fmt)
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"the file is not encoded as {encoding} ({_undecodable(path, encoding)})", file=path,
                         trial=trial, hint="set source.encoding in the spec to the file's encoding (for files "
                                           "from Windows often cp1252, else latin-1)") from None
    except ValueError as exc:
        if fmt == "xlsx" and "sheet" in str(exc).lower():
            raise InputError(f"no sheet {sheet!r} in the workbook", file=path, trial=trial,
                             expected=f"one of {sheet_names(path)}") from None
        raise InputError(f"cannot read the file as {fmt} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         file=path, trial=trial) from None
    except Exception as exc:  # every reader has its own exception types
        raise InputError(f"cannot read the file as {fmt} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         file=path, trial=trial) from None
    if data.shape[1] == 0 or data.shape[0] == 0:
        raise InputError("the file has no data rows", file=path, trial=trial)
    data.columns = [str(c).strip() for c in data.columns]
    # blank strings are missing values in every format (Stata, SPSS and SAS strings cannot be NA)
    for col in [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]:
        blank_values = [v for v in data[col].unique().tolist() if isinstance(v, str) and v.strip() == ""]
        if blank_values:
            values = data[col].astype(object)
            data[col] = values.where(~values.isin(blank_values), None)
    data.index = pd.RangeIndex(1, len(data) + 1, name="source_row")
    return RawTable(data, labels, path, {c: f for c, f in declared.items() if c in data.columns})


def is_excel_serial(values: np.ndarray) -> np.ndarray:
    """Numbers that can be Excel date serials (1900 date system, 1 = 1900-01-01, up to year 2100)."""
    return np.isfinite(values) & (values >= 1) & (values < 73051)
