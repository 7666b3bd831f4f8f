"""analysis.ingest.readers: what every format reads as (source of truth: the values written
with each format's own writer)."""

import pandas as pd
import pyreadstat
import pytest

from analysis.ingest.readers import read_raw

WRITERS = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "xlsx": lambda frame, path: frame.to_excel(path, index=False),
    "sav": lambda frame, path: pyreadstat.write_sav(frame, str(path)),
    "dta": lambda frame, path: pyreadstat.write_dta(frame, str(path)),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_blank_text_is_missing_in_every_format_and_other_text_is_kept(tmp_path, fmt):
    """Empty and whitespace-only text are missing values in every format (SPSS and Stata text
    cannot be missing, so files from them hold blanks); any other text is read as written,
    and the rows are numbered from 1 as in the file."""
    frame = pd.DataFrame({"pid": ["1", "2", "3", "4", "5"], "arm": ["Exercise", "", "   ", "Usual care", "x y"],
                          "pain": [1.0, 2.0, 3.0, 4.0, 5.0]})
    path = tmp_path / f"trial.{fmt}"
    WRITERS[fmt](frame, path)
    data = read_raw(path, fmt).data
    assert list(data.index) == [1, 2, 3, 4, 5]
    assert data["arm"].isna().tolist() == [False, True, True, False, False]
    assert [data["arm"][i] for i in (1, 4, 5)] == ["Exercise", "Usual care", "x y"]
    assert data["pain"].astype(float).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
