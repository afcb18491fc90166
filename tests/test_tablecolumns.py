"""tablecolumns and load(defer=): the samples read a column at a time, as load gives them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.analysis.columns import floats
from gpuwatch.analysis.merge import SAMPLE_FIELDS
from gpuwatch.errors import TraceFormatError
from gpuwatch.lazy import pending
from gpuwatch import tablecolumns
from gpuwatch.tablecolumns import FileColumns, FrameColumns

DATA = Path(__file__).resolve().parent / "data"
# A real H100 trace (schema v4) whose samples have a column recorded as NA throughout
# (host_cpu_throttled_us), integer counters with gaps (every other poll), and none of
# host_cpu_freq_mhz, which joined v4 later
REAL = DATA / "h100_issue27" / "cotenant_light.parquet"
COLS = {"samples": SAMPLE_FIELDS}


def _both(path: Path = REAL) -> tuple[gpuwatch.Trace, gpuwatch.Trace]:
    eager = gpuwatch.load(path, columns=COLS, numpy_dtypes=("samples",))
    lazy = gpuwatch.load(path, columns=COLS, numpy_dtypes=("samples",), defer=("samples",))
    return eager, lazy


def test_columns_read_one_at_a_time_equal_the_loaded_table():
    eager, lazy = _both()
    src = lazy.columns("samples")
    assert isinstance(src, FileColumns) and pending(lazy, "samples") is not None
    assert len(src) == len(eager.samples) == lazy.rows("samples") > 5000
    assert set(src.names) == set(eager.samples.columns)
    for c in eager.samples.columns:
        got, want = src[c], eager.samples[c]
        assert got.dtype == want.dtype, c
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(), err_msg=c)
    # and as the generic Arrow -> pandas path reads them (nullable dtypes: NA as NaN here)
    generic = gpuwatch.load(REAL).samples
    for c in eager.samples.columns:
        np.testing.assert_array_equal(floats(src[c]), floats(generic[c]), err_msg=c)
    # the kinds of column this trace has, read as load reads them
    assert src["host_cpu_throttled_us"].isna().all()  # recorded NA throughout
    assert src["host_cpu_freq_mhz"].isna().all()  # not in the file
    assert src["host_steal_ns"].dtype == np.float64  # an integer counter with gaps: NaN
    assert 0 < src["host_steal_ns"].notna().sum() < len(src)
    assert src["clock_event_reasons"].dtype == np.int64  # an integer without a gap stays one
    # nothing was read whole, and the repr did not read it either
    assert "samples" in repr(lazy) and pending(lazy, "samples") is not None


def test_the_attribute_reads_the_whole_table_once_as_load_does():
    eager, lazy = _both()
    src = lazy.columns("samples")
    t0 = src.raw("t_ns").copy()
    pd.testing.assert_frame_equal(lazy.samples, eager.samples)
    assert pending(lazy, "samples") is None  # made, and kept
    assert lazy.samples is lazy.samples
    assert isinstance(lazy.columns("samples"), FrameColumns)  # (now from memory)
    again = dataclasses.replace(lazy)
    pd.testing.assert_frame_equal(again.samples, eager.samples)
    # the table is the user's: every column writable (a NaN column too), none shared with
    # the reader's kept times
    lazy.samples.loc[0, ["t_ns", "host_cpu_throttled_us", "host_cpu_freq_mhz"]] = [-1, 1.0, 2.0]
    assert lazy.samples.loc[0, "t_ns"] == -1 and (src.raw("t_ns") == t0).all()


def test_take_selects_rows_and_within_reads_the_statistics():
    _, lazy = _both()
    src = lazy.columns("samples")
    rows = np.arange(10, 2000, 7)
    part = src.take(rows)
    assert len(part) == rows.size and len(src) > rows.size
    np.testing.assert_array_equal(part["sm_clock_mhz"].to_numpy(),
                                  src["sm_clock_mhz"].to_numpy()[rows])
    np.testing.assert_array_equal(part.take(np.array([0, 2]))["t_ns"].to_numpy(),
                                  src["t_ns"].to_numpy()[rows[[0, 2]]])
    clock = src["sm_clock_mhz"].to_numpy()
    assert src.within("sm_clock_mhz", 1.0, 10_000.0)  # an H100's clocks
    assert not src.within("sm_clock_mhz", float(clock.min()) + 1, 10_000.0)
    assert src.within("host_cpu_throttled_us", 0, 1)  # nothing but nulls
    assert src.within("host_cpu_freq_mhz", 0, 1)  # not in the file: NA
    assert src.constant("gpu") == 0 and src.constant("t_ns") is None
    assert src.constant("host_cpu_throttled_us") is None  # (nulls: no one value)
    frame = FrameColumns(lazy.samples)
    assert not frame.within("sm_clock_mhz", 1.0, 10_000.0)  # (in memory: read it to tell)
    assert frame.constant("gpu") is None


def test_a_column_of_nulls_costs_no_memory_and_cannot_be_written():
    _, lazy = _both()
    v = lazy.columns("samples").raw("host_cpu_throttled_us")
    assert v.strides == (0,) and not v.flags.writeable and np.isnan(v).all()


def test_a_trace_out_of_time_order_is_read_whole_and_sorted(tmp_path):
    """load sorts samples that are not in time order (a recovered, concatenated recording):
    that needs the whole table, so such a trace is not deferred, and reads the same."""
    t = pq.read_table(REAL)
    is_sample = np.asarray(t.column("table_name").cast("string").to_pylist()) == "samples"
    idx = np.flatnonzero(is_sample)
    order = np.concatenate([np.flatnonzero(~is_sample), idx[::-1]])  # samples backwards
    path = tmp_path / "reversed.parquet"
    pq.write_table(t.take(order), path, row_group_size=4096)
    eager, lazy = _both(path)
    assert pending(lazy, "samples") is None
    assert lazy.samples["t_ns"].is_monotonic_increasing
    pd.testing.assert_frame_equal(lazy.samples, eager.samples)


def test_damage_found_when_a_column_is_read_is_one_line(tmp_path):
    """A file whose footer reads but one of whose sample columns does not (cut or
    overwritten in place after loading began): a TraceFormatError naming the column."""
    path = tmp_path / "damaged.parquet"
    shutil.copy(REAL, path)
    md = pq.ParquetFile(path).metadata
    j = pq.ParquetFile(path).schema_arrow.get_field_index("sm_clock_mhz")
    for g in range(md.num_row_groups):
        col = md.row_group(g).column(j)
        if col.statistics is not None and col.statistics.null_count < col.num_values:
            off, size = col.data_page_offset, col.total_compressed_size
            break
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * size)
    lazy = gpuwatch.load(path, columns=COLS, numpy_dtypes=("samples",), defer=("samples",))
    with pytest.raises(TraceFormatError, match=r"damaged.parquet: corrupt Parquet data in "
                                               r"column 'sm_clock_mhz'"):
        lazy.columns("samples")["sm_clock_mhz"]


def test_chunks_give_every_row_in_order_as_the_columns_do(monkeypatch, tmp_path):
    """chunks(): the columns a few row groups at a time (kept ones sliced, not read again),
    the same values as whole; a table in memory as one chunk, in time order."""
    path = tmp_path / "small_groups.parquet"  # (REAL with its samples in row groups of 4096)
    t = pq.read_table(REAL)
    names = np.asarray(t.column("table_name").cast("string").to_pylist())
    with pq.ParquetWriter(path, t.schema) as w:  # (one table per row group, as gpuwatch's)
        for name in dict.fromkeys(names):
            w.write_table(t.filter(pa.array(names == name)), row_group_size=2048)
    eager, lazy = _both(path)
    src = lazy.columns("samples")
    cols = ["t_ns", "sm_clock_mhz", "host_steal_ns", "host_cpu_freq_mhz"]
    src.raw("t_ns")  # (kept: sliced from)
    monkeypatch.setattr(tablecolumns, "BATCH_GROUPS", 1)  # (a chunk per row group)
    parts = list(src.chunks(cols))
    assert len(parts) == len(src._groups) > 1 and all(set(p) == set(cols) for p in parts)
    for c in cols:
        got = np.concatenate([p[c] for p in parts])
        np.testing.assert_array_equal(got, src.array(c), err_msg=c)
        assert got.dtype == src.array(c).dtype, c
    with pytest.raises(ValueError, match="not a selection"):
        next(src.take(np.arange(3)).chunks(cols))
    backwards = eager.samples.iloc[::-1]
    (whole,) = FrameColumns(backwards).chunks(cols)
    for c in cols:
        np.testing.assert_array_equal(whole[c], floats(eager.samples[c])
                                      if whole[c].dtype.kind == "f"
                                      else eager.samples[c].to_numpy(), err_msg=c)
