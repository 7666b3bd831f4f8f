"""analysis.demo: the synthetic trials are what the issue and the committed specs say."""

import numpy as np

from analysis import demo
from analysis.ingest.instruments import INSTRUMENTS
from tests.conftest import SPECS


def test_totals_and_design_mix():
    ds = demo.designs()
    assert len(ds) == 27 and sum(d.n for d in ds) == 3514
    assert min(d.n for d in ds) == 30 and max(d.n for d in ds) == 400
    kinds = [tuple(sorted({a[2] for a in d.arms})) for d in ds]
    assert sum(k == ("exercise", "none_usual_care") and len(d.arms) == 2 for k, d in zip(kinds, ds)) == 15
    assert sum(k == ("exercise", "other_conservative") for k in kinds) == 10
    assert sum(len(d.arms) == 3 for d in ds) == 2
    assert {d.fmt for d in ds} == {"csv", "csv_semicolon", "xlsx", "sav", "dta", "xpt"}
    # delivered as real trial teams deliver: several tables, day-first dates, missing-value codes
    assert [d.trial_id for d in ds if d.tables == "baseline+visits"] == ["T03"]
    assert [d.trial_id for d in ds if d.date_style == "dmy"] == ["T22"]
    assert [d.trial_id for d in ds if d.codes] == ["T11"]
    assert [d.trial_id for d in ds if d.fmt == "xpt"] == ["T25"]
    assert {d.layout for d in ds} == {"wide", "long"}
    assert {d.pain for d in ds} == {"vas_100", "vas_10", "nrs_10"}
    assert {d.function for d in ds} == {"rmdq_24", "rmdq_23", "odi_100", "odi_50", "quebec_100", "psfs_10"}
    assert any(d.identifying for d in ds)
    # systematically missing covariates: some trials never measured each of these
    for cov in ("bmi", "heavy_work", "medication"):
        assert 0 < sum(cov not in d.measured for d in ds) < 27
    assert any(max(d.months) < 9 for d in ds)  # some trials without long-term follow-up


def test_committed_specs_describe_the_generator():
    """data/specs/ is what `demo-data --specs` writes: the specs cannot drift from the files."""
    for d in demo.designs():
        assert (SPECS / f"{d.trial_id}.yaml").read_text(encoding="utf-8") == demo.spec_text(d), d.trial_id


def test_deterministic_for_seed_and_different_across_seeds():
    a, b, c = demo.simulate(7), demo.simulate(7), demo.simulate(8)
    assert a.participants.equals(b.participants)
    assert not np.allclose(a.participants.pain_bl, c.participants.pain_bl)


def test_calibration_dropout_and_dirty_records():
    data = demo.simulate(2020)
    assert data.participants.dirty.sum() >= 27  # at least one dirty record per trial
    assert set(data.dirty.trial_id) == {d.trial_id for d in demo.designs()}
    # about 15 % missing by the last follow-up (drop-out depends on baseline pain)
    last = data.outcomes.groupby("trial_id").months.transform("max") == data.outcomes.months
    n_last = data.outcomes[last].groupby("trial_id").size()
    sizes = {d.trial_id: d.n for d in demo.designs()}
    share = 1 - n_last.sum() / sum(sizes[t] for t in n_last.index)
    assert 0.08 < share < 0.30


def test_trials_too_small_for_their_planted_problems_keep_those_that_fit():
    """A scaled demo of small trials (ten participants on average, the least it allows): each
    trial has at least 10 rows and the sizes add up (a trial of -54 rows came out before);
    each planted problem takes a row whose neighbours are clean, so a trial of n rows holds at
    most n // 3 of them, and the generator plants what fits and goes on (it used to search
    forever for a free row). Source of truth: the designs' sizes and planned problems."""
    sizes = [d.n for d in demo.designs(40, 400)]
    assert min(sizes) >= 10 and sum(sizes) == 400
    data = demo.simulate(1, n_trials=40, n_total=400)  # seed 1: trial T07 (10 rows) has room for 2 of its 3
    planted = data.dirty.groupby("trial_id").size()
    for d in demo.designs(40, 400):
        n_planted = int(planted.get(d.trial_id, 0))
        assert n_planted <= min(len(d.dirty), d.n // 3)
        if d.n >= 3 and d.dirty:
            assert n_planted >= 1
    assert any(planted.get(d.trial_id, 0) < len(d.dirty) for d in demo.designs(40, 400))  # the case is met


def test_raw_values_lie_on_the_instrument_grid():
    data = demo.simulate(2020)
    for d in demo.designs():
        ins = INSTRUMENTS[d.pain]
        raw = data.participants.loc[data.participants.trial_id == d.trial_id, "pain_raw_bl"]
        steps = raw / ins.resolution
        assert np.allclose(steps, np.round(steps), atol=1e-6)
        assert raw.between(ins.low, ins.high).all()


def test_files_are_the_same_written_by_one_process_or_two(tmp_path):
    """Each trial is simulated from its own stream, so writing the trials in two processes
    gives the files of one. Source of truth: the serial run. Text files are compared byte for
    byte; workbooks and statistical files carry their write time, so their contents are
    compared as read (every sheet, every value and label)."""
    import pandas as pd

    from analysis.ingest.readers import read_raw

    serial = demo.write_raw(tmp_path / "one", n_trials=6, n_total=600, jobs=1)
    forked = demo.write_raw(tmp_path / "two", n_trials=6, n_total=600, jobs=2)
    assert [p.name for p in serial] == [p.name for p in forked] == [f"T0{i}.{d.extension}" for i, d in
                                                                      enumerate(demo.designs(6, 600), 1)]
    for a, b in zip(serial, forked):
        fmt = a.suffix[1:]
        if fmt == "csv":
            assert a.read_bytes() == b.read_bytes(), a.name
        elif fmt == "xlsx":
            for sheet in pd.ExcelFile(a, engine="calamine").sheet_names:
                pd.testing.assert_frame_equal(pd.read_excel(a, sheet_name=sheet, engine="calamine"),
                                              pd.read_excel(b, sheet_name=sheet, engine="calamine"))
        else:
            ta, tb = read_raw(a, fmt), read_raw(b, fmt)
            pd.testing.assert_frame_equal(ta.data, tb.data)
            assert ta.value_labels == tb.value_labels, a.name


def test_workbooks_read_back_as_pandas_writes_them(tmp_path):
    """Source of truth: pandas' to_excel, which wrote the demo's workbooks before they were
    streamed row by row (``demo._write_xlsx``). Every sheet of every workbook trial of a scaled
    demo (60 trials: object columns with missing values, text, integers and decimals, and the
    two-sheet baseline + visits layout) reads back identically through the pipeline's reader
    (calamine)."""
    import pandas as pd

    tasks = [t for t in demo._trial_tasks(2020, 60, 12000) if t[0].fmt == "xlsx"]
    assert len(tasks) >= 5
    for task in tasks:
        trial = demo._simulate_one(*task)
        w = trial.raw[0]
        sheets = w if isinstance(w, dict) else {"data": w}
        ours, theirs = tmp_path / "ours.xlsx", tmp_path / "theirs.xlsx"
        demo._write_xlsx(ours, sheets)
        with pd.ExcelWriter(theirs) as xl:
            for name, sheet in sheets.items():
                sheet.to_excel(xl, index=False, sheet_name=name)
        assert pd.ExcelFile(ours, engine="calamine").sheet_names == list(sheets)
        for name in sheets:
            for dtype in (None, object):  # as inferred, and as the pipeline reads them (text)
                pd.testing.assert_frame_equal(pd.read_excel(ours, sheet_name=name, engine="calamine", dtype=dtype),
                                              pd.read_excel(theirs, sheet_name=name, engine="calamine", dtype=dtype))


def test_planted_problems_change_the_raw_values_not_the_latent_ones():
    """Source of truth: the latent data are what harmonisation must give for the clean records
    and what the records were before their problems were planted. A record whose arm was
    blanked or whose baseline was made out of range in its raw file keeps its latent arm and
    baseline (a raw column that shared its array with the latent one carried the blank over)."""
    data = demo.simulate()
    p = data.participants
    assert p.arm.notna().all() and p.arm_type.notna().all()
    for d in demo.designs():
        baseline = p.loc[p.trial_id == d.trial_id, "pain_raw_bl"]
        ins = INSTRUMENTS[d.pain]
        assert baseline.between(ins.low, ins.high).all(), d.trial_id
    blanked = data.dirty[data.dirty.kind == "missing_arm"]
    assert len(blanked) > 0
    raw_arm = {d.trial_id: demo._names(d)["arm"] for d in demo.designs()}
    for t, pid in blanked[["trial_id", "participant_id"]].itertuples(index=False):
        w = data.raw[t][0]
        w = w["baseline"] if isinstance(w, dict) else w
        id_col = w.columns[0]
        assert w.loc[w[id_col].astype(str) == pid, raw_arm[t]].isna().any(), (t, pid)
