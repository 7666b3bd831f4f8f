"""Read a raw trial file of any supported format into a DataFrame of its own columns.

Values are kept as the file stores them (strings for CSV, numbers or strings for Excel,
numeric codes for SPSS and Stata, whose value labels are returned separately) so that
harmonisation can report exactly which raw value it could not use.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.errors import InputError

__all__ = ["read_raw", "RawTable", "NA_STRINGS"]

NA_STRINGS = ["", "NA", "N/A", "na", "n/a", ".", "NaN", "nan", "-", "missing"]


class RawTable:
    """A raw file's rows (index = 1-based data row number) and value labels, if any."""

    def __init__(self, data: pd.DataFrame, value_labels: dict | None = None, path: Path | None = None):
        self.data = data
        self.value_labels = value_labels or {}
        self.path = path


def read_raw(path, fmt: str, *, delimiter=",", decimal=".", sheet=None, encoding="utf-8", trial=None) -> RawTable:
    path = Path(path)
    if not path.exists():
        raise InputError("raw data file not found", file=path, trial=trial,
                         hint="check source.file in the trial's spec or run `python -m analysis demo-data`")
    try:
        if fmt == "csv":
            data = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, na_values=NA_STRINGS,
                               encoding=encoding, skipinitialspace=True)
            labels = {}
        elif fmt == "xlsx":
            # calamine (Rust) reads large sheets an order of magnitude faster than openpyxl
            data = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object, engine="calamine")
            labels = {}
        elif fmt in ("sav", "dta"):
            import pyreadstat

            reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
            data, meta = reader(str(path), apply_value_formats=False, user_missing=False)
            labels = meta.variable_value_labels
        else:
            raise InputError("unsupported file format", file=path, trial=trial,
                             expected="csv, xlsx, sav or dta", found=fmt)
    except InputError:
        raise
    except Exception as exc:  # every reader has its own exception types
        raise InputError(f"cannot read the file as {fmt} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         file=path, trial=trial) from None
    if data.shape[1] == 0 or data.shape[0] == 0:
        raise InputError("the file has no data rows", file=path, trial=trial)
    data.columns = [str(c).strip() for c in data.columns]
    # blank strings are missing values in every format (Stata and SPSS strings cannot be NA)
    for col in [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]:
        values = data[col].astype(object)
        blank_values = [v for v in pd.unique(values.dropna()) if isinstance(v, str) and v.strip() == ""]
        if blank_values:
            data[col] = values.where(~values.isin(blank_values), None)
    data.index = pd.RangeIndex(1, len(data) + 1, name="source_row")
    return RawTable(data, labels, path)
