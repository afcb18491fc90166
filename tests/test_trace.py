"""Trace format v1: schema, metadata, time base, atomic finalisation, recovery, bad files."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuwatch
from tests.helpers import H100_FIXTURE, record_sim, table_kinds, with_inferences
from gpuwatch.trace import META_KEY, SCHEMA, SCHEMA_VERSION, TABLES, table_columns


def test_metadata_says_what_the_run_was(t4_sweep):
    m = t4_sweep.meta
    assert m["schema_version"] == SCHEMA_VERSION == 4
    assert m["simulated"] is True and t4_sweep.simulated
    assert m["status"] == "complete"
    assert m["time_base"]["unit"] == "ns" and m["time_base"]["epoch"] == "unix"
    dev = m["devices"][0]
    assert dev["name"] == "Simulated Tesla T4" and dev["simulated"] is True
    assert dev["facts"]["profile"] == "t4"
    assert m["options"]["device"] == "sim:t4" and m["options"]["sample_hz"] == 1000.0
    assert set(m["versions"]) >= {"gpuwatch", "numpy", "pandas", "pyarrow"}
    assert m["host"]["hostname"]
    assert m["rows"]["inferences"] == len(t4_sweep.inferences)
    assert m["ended_ns"] > m["started_ns"]


def test_tables_have_their_columns_and_integer_times(t4_sweep):
    for name in TABLES:
        df = getattr(t4_sweep, name)
        assert list(df.columns) == table_columns(name)
    inf, s = t4_sweep.inferences, t4_sweep.samples
    for col in ("t_ns", "start_ns", "end_ns", "host_start_ns", "host_end_ns"):
        assert str(inf[col].dtype) == "Int64"
    assert str(s["t_ns"].dtype) == "Int64" and str(s["sm_clock_mhz"].dtype) == "Int32"
    assert len(inf) == 3 * 820 and (inf["kind"] == "inference").all()
    assert inf["warmup"].sum() == 60 and inf["iteration"].min() == -20


def test_one_time_base_monotonic_and_consistent(t4_sweep):
    inf = t4_sweep.inferences.sort_values("host_start_ns")
    start, end = inf["start_ns"].to_numpy(np.int64), inf["end_ns"].to_numpy(np.int64)
    assert (np.diff(start) > 0).all()  # inferences in order on the GPU
    assert (start[1:] >= end[:-1] - 20_000).all()  # no overlap (beyond anchor error)
    assert (inf["host_start_ns"] <= inf["host_enqueued_ns"]).all()
    assert (inf["host_enqueued_ns"] <= inf["host_end_ns"]).all()
    # The GPU cannot start before the host asked, nor finish after the host saw it finish.
    assert (inf["start_ns"] >= inf["host_start_ns"]).all()
    assert (inf["end_ns"] <= inf["host_end_ns"] + 50_000).all()
    dur = (inf["end_ns"] - inf["start_ns"]) / 1e6
    assert np.allclose(dur.to_numpy(float), inf["gpu_ms"].to_numpy(float), atol=1e-5)
    s = t4_sweep.samples["t_ns"].to_numpy(np.int64)
    assert (np.diff(s) > 0).all()
    assert np.median(np.diff(s)) == 1_000_000  # 1 kHz
    assert s[0] <= start[0] and s[-1] >= end[-1] - 1_000_000


def test_row_groups_hold_one_table_each_and_plain_readers_can_filter(t4_sweep):
    pf = pq.ParquetFile(t4_sweep.path)
    got = pf.schema_arrow.remove_metadata()
    assert got.names == SCHEMA.names
    for f, want in zip(got, SCHEMA):  # (pyarrow < 15 reads a dictionary's indices as int32)
        assert f.type.value_type == want.type.value_type if pa.types.is_dictionary(want.type) \
            else f.type == want.type, f.name
    for i in range(pf.num_row_groups):
        kinds = pf.read_row_group(i, columns=["table_name"])["table_name"].cast(pa.string()).unique()
        assert len(kinds) == 1
    df = pd.read_parquet(t4_sweep.path, filters=[("table_name", "==", "inferences")])
    assert len(df) == len(t4_sweep.inferences)


def test_unknown_values_are_na_not_zero(tmp_path, t4_sweep):
    inf = t4_sweep.inferences
    assert inf["error"].isna().all()
    s = t4_sweep.samples
    assert s["sm_clock_mhz"].notna().all()
    # Costly fields are read every 100th poll at 1 kHz; the polls in between leave them NA.
    assert s["gpu_util_pct"].notna().sum() == pytest.approx(len(s) / 100, abs=2)
    assert s["violation_power_ns"].isna().all()  # not modelled by sim: NA, not 0
    assert "violation_power_ns" in t4_sweep.meta["unsupported_fields"]["0"]
    # Samples carry no inference columns and vice versa, even though the file's schema is a union.
    assert "gpu_ms" not in t4_sweep.samples.columns


def _finished(tmp_path, name="x.parquet", iters=30):
    with gpuwatch.session("sim:t4", tmp_path / name) as s:
        e = s.engine()
        for _ in range(iters):
            e.infer()
            s.wait(5)
    return s


def test_close_leaves_one_file_and_no_partial(tmp_path):
    _finished(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]


def test_recovers_a_recording_killed_mid_run(tmp_path):
    out = tmp_path / "killed.parquet"
    script = textwrap.dedent(f"""
        import os, time, gpuwatch
        s = gpuwatch.session("sim:t4", {str(out)!r})
        s.start()
        e = s.engine()
        for _ in range(300):
            e.infer(); e.synchronize(); s.wait(10)
        time.sleep(2.5)   # the writer thread resolves and flushes once a second
        os.kill(os.getpid(), 9)  # kill -9: no close, no atexit
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    assert not out.exists()
    with pytest.warns(gpuwatch.RecoveredTraceWarning, match="unfinished recording"):
        tr = gpuwatch.load(out)  # finds killed.parquet.partial
    assert tr.recovered and tr.meta["status"] == "recording"
    assert len(tr.inferences) == 300
    assert len(tr.samples) > 3000


def test_rejects_a_file_that_is_not_parquet(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(gpuwatch.TraceFormatError,
                       match="not a readable Parquet file: it does not begin as one"):
        gpuwatch.load(bad)


def test_an_empty_file_is_called_empty(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(gpuwatch.TraceFormatError, match=r"empty\.parquet is empty \(0 bytes\)"):
        gpuwatch.load(empty)


def test_rejects_a_truncated_trace(tmp_path):
    s = _finished(tmp_path)
    data = s.out.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(gpuwatch.TraceFormatError, match="it begins as one: was the copy cut "
                                                        "short"):
        gpuwatch.load(cut)


def test_rejects_foreign_parquet(tmp_path):
    p = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), p)
    with pytest.raises(gpuwatch.TraceFormatError, match="not a gpuwatch trace"):
        gpuwatch.load(p)


def test_rejects_a_newer_schema_version(tmp_path):
    s = _finished(tmp_path)
    t = pq.read_table(s.out)
    meta = json.loads(t.schema.metadata[META_KEY])
    meta["schema_version"] = SCHEMA_VERSION + 1
    newer = tmp_path / "newer.parquet"
    pq.write_table(t.replace_schema_metadata({META_KEY: json.dumps(meta)}), newer)
    with pytest.raises(gpuwatch.TraceFormatError, match="upgrade gpuwatch"):
        gpuwatch.load(newer)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(gpuwatch.TraceFormatError, match="no trace at"):
        gpuwatch.load(tmp_path / "nope.parquet")


def test_writer_refuses_unusable_outputs(tmp_path):
    with pytest.raises(gpuwatch.UsageError, match="is a directory"):
        gpuwatch.session("sim:t4", tmp_path).start()
    with pytest.raises(gpuwatch.UsageError, match="does not exist"):
        gpuwatch.session("sim:t4", tmp_path / "no" / "x.parquet").start()
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(gpuwatch.UsageError, match="cannot take a new file"):
            gpuwatch.session("sim:t4", ro / "x.parquet").start()
    if os.path.isdir("/proc/self"):  # (not even root's: tried, not assumed from access())
        with pytest.raises(gpuwatch.UsageError, match="cannot take a new file"):
            gpuwatch.session("sim:t4", "/proc/x.parquet").start()


def test_load_reads_only_the_columns_asked_for(t4_sweep):
    tr = gpuwatch.load(t4_sweep.path, columns={"samples": ["sm_clock_mhz"]})
    assert list(tr.samples.columns) == ["gpu", "t_ns", "sm_clock_mhz"]
    assert len(tr.samples) == len(t4_sweep.samples)
    assert list(tr.inferences.columns) == table_columns("inferences")  # others untouched


@pytest.mark.parametrize("kw, says", [
    ({"columns": {"samples": ["sm_clock_mhz", "sm_clok_mhz"]}},
     "the samples table has no column 'sm_clok_mhz'"),
    ({"columns": {"sample": ["sm_clock_mhz"]}}, "columns names no table 'sample'"),
    ({"columns": {"samples": "sm_clock_mhz"}}, "takes a list of column names"),
    ({"columns": ["sm_clock_mhz"]}, "columns takes a dict"),
    ({"numpy_dtypes": ("sample",)}, "numpy_dtypes names no table 'sample'"),
    ({"numpy_dtypes": "samples"}, "not one string"),
    ({"defer": ("sample",)}, "defer names no table 'sample'"),
])
def test_load_refuses_a_table_or_column_it_does_not_know(t4_sweep, kw, says):
    # (a misspelt name read as nothing asked for: the column silently absent)
    with pytest.raises(gpuwatch.UsageError, match=says):
        gpuwatch.load(t4_sweep.path, **kw)


def test_load_splits_row_groups_holding_several_tables(tmp_path, t4_sweep):
    """A writer that mixes tables in one row group (not gpuwatch's) still loads."""
    t = pq.read_table(t4_sweep.path)
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(t, mixed, row_group_size=len(t))  # one group, all tables
    tr = gpuwatch.load(mixed)
    assert len(tr.inferences) == len(t4_sweep.inferences)
    assert len(tr.samples) == len(t4_sweep.samples)


def test_big_recordings_are_merged_by_a_helper_process(tmp_path, monkeypatch):
    """Above HELPER_MERGE_ROWS the final merge runs in a short-lived process (so the recording
    process does not keep the merge's memory); the file is the same either way."""
    import gpuwatch.trace as T
    import gpuwatch.trace.finish as F

    monkeypatch.setattr(F, "HELPER_MERGE_ROWS", 1_000)
    T.LAST_HELPER_MERGE.clear()
    small = record_sim(tmp_path / "h.parquet", gaps=(20.0,), iters=100)
    assert T.LAST_HELPER_MERGE["rows"] == small.meta["rows"]
    assert T.LAST_HELPER_MERGE["rows"]["samples"] == len(small.samples) > 1_000
    assert T.LAST_HELPER_MERGE["peak_rss_mb"] > 0
    assert small.meta["status"] == "complete" and len(small.measured()) == 100


def test_a_failed_helper_merge_falls_back_to_merging_here(tmp_path, monkeypatch):
    import subprocess

    import gpuwatch.trace.finish as F

    monkeypatch.setattr(F, "HELPER_MERGE_ROWS", 1_000)

    def broken(*a, **k):
        return subprocess.CompletedProcess(a, 1, "", "boom")

    monkeypatch.setattr(subprocess, "run", broken)
    tr = record_sim(tmp_path / "f.parquet", gaps=(20.0,), iters=100)
    assert tr.meta["status"] == "complete" and len(tr.samples) > 1_000


def test_rows_added_from_the_writers_own_thread_never_wait_for_it(tmp_path, monkeypatch):
    # the before-flush hook (the region timer resolving what completed) adds rows in the
    # writer's thread; with more than MAX_PENDING_ROWS waiting it must not wait for itself
    import threading

    from gpuwatch.trace import writer as tr_mod

    monkeypatch.setattr(tr_mod, "MAX_PENDING_ROWS", 10)
    w = tr_mod.ChunkWriter(tmp_path, flush_interval_s=0.01)
    done = threading.Event()

    def hook():
        w.add_columns("events", {"gpu": [0] * 50, "t_ns": list(range(50)), "kind": ["note"] * 50})
        done.set()

    w.before_flush = hook
    assert done.wait(5), "the hook never ran"
    closer = threading.Thread(target=w.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "the writer deadlocked on its own rows"


def test_column_batches_become_one_chunk_with_every_value(tmp_path):
    """Rows added as columns in many small batches (the timed path's) are one chunk: every
    value in order, null where a batch lacked the column, numpy columns as lists."""
    from gpuwatch.trace import writer as tr_mod

    w = tr_mod.ChunkWriter(tmp_path, flush_interval_s=60)
    w.add_columns("events", {"gpu": [0, 0], "t_ns": [1, 2], "kind": ["note", "note"],
                             "name": ["a", "b"]})
    w.add_columns("events", {"gpu": [1], "t_ns": [3], "kind": ["warning"]})  # (no name)
    w.add_columns("events", {"gpu": np.array([2, 2]), "t_ns": np.array([4, 5]),
                             "kind": np.array(["error", "error"]), "name": ["c", None]})
    w.close()
    [chunk] = sorted(tmp_path.glob("*-events.parquet"))
    got = pq.read_table(chunk).to_pandas()
    assert got["t_ns"].tolist() == [1, 2, 3, 4, 5] and got["gpu"].tolist() == [0, 0, 1, 2, 2]
    assert got["kind"].tolist() == ["note", "note", "warning", "error", "error"]
    assert got["name"].tolist()[:2] == ["a", "b"] and got["name"].isna().tolist()[2:] == [
        True, False, True]
    assert (got["table_name"] == "events").all()


def test_the_writer_gives_the_interpreter_lock_back_between_columns(tmp_path, monkeypatch):
    """Converting a flush's columns holds the interpreter lock; between columns the writer lets
    a waiting program thread take it (time.sleep(0)), so that the program waits for one
    column's conversion, not for the switch interval (5 ms) several times a flush
    (benchmarks/writer_stall.py)."""
    from gpuwatch.trace import writer as tr_mod
    from gpuwatch.trace.schema import TABLE_SCHEMAS

    yields = []
    real_sleep = tr_mod.time.sleep
    monkeypatch.setattr(tr_mod.time, "sleep", lambda s: (yields.append(s), real_sleep(s)))
    w = tr_mod.ChunkWriter(tmp_path, flush_interval_s=60)
    for i in range(20):
        w.add_columns("events", {"gpu": [0], "t_ns": [i], "kind": ["note"]})
    w.close()
    assert yields.count(0) == len(TABLE_SCHEMAS["events"])


def test_the_merge_helper_run_by_hand_says_what_it_is():
    """`python -m gpuwatch.trace` is the recording's own helper (a big trace's merge): run by
    hand without its arguments, one line naming the command a user wants, exit 2."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gpuwatch.trace"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "python -m gpuwatch.finish OUT.partial" in r.stderr


def test_rows_that_repeat_another_row_are_read_once_and_said(tmp_path):
    """A table holding a row many times over (a tool's copy, a chunk appended twice; a few
    hundred KB on disk for 200,000 rows) loads with each row once, in bounded memory
    (benchmarks/degenerate_rows.py); the analysis is the trace's own, and says what it left
    out. Repeats in a row, two rows in turn, and the whole table written twice all count."""
    import pyarrow.compute as pc

    whole = pq.read_table(H100_FIXTURE)
    inf = whole.filter(pc.equal(table_kinds(whole), "inferences"))
    measured = inf.filter(pc.invert(inf["warmup"]))
    original = gpuwatch.load(H100_FIXTURE)
    assert original.repeated_rows == {}
    expect = gpuwatch.analyze(H100_FIXTURE)
    cases = {"same": measured.take(np.zeros(200_000, dtype=np.int64)),
             "pairs": measured.take(np.tile([0, 1], 50_000)),
             "twice": inf}
    for name, extra in cases.items():
        path = tmp_path / f"{name}.parquet"
        with_inferences(path, whole, extra)
        tr = gpuwatch.load(path)
        assert tr.repeated_rows == {"inferences": extra.num_rows}, name
        pd.testing.assert_frame_equal(tr.inferences, original.inferences)
        a = gpuwatch.analyze(path)
        note = [n for n in a.data_notes if "repeated another row exactly" in n]
        assert note and f"{extra.num_rows:,} row(s) of its inferences table" in note[0], \
            a.data_notes
        assert a.status[0]["repeated_rows"] == {"inferences": extra.num_rows}
        assert a.verdicts["sentence"].tolist() == expect.verdicts["sentence"].tolist(), name
    # a recording's chunk copied within its .partial: read once there too
    partial = tmp_path / "copied.parquet.partial"
    partial.mkdir()
    meta = {**original.meta, "status": "recording"}
    meta.pop("writer", None)
    (partial / "meta.json").write_text(json.dumps(meta))
    for table in ("inferences", "samples"):
        rows = whole.filter(pc.equal(table_kinds(whole), table))
        pq.write_table(rows, partial / f"c0000001-{table}.parquet")
    pq.write_table(inf, partial / "c0000002-inferences.parquet")
    with pytest.warns(gpuwatch.RecoveredTraceWarning):
        tr = gpuwatch.load(partial)
    assert tr.repeated_rows == {"inferences": inf.num_rows}
    assert len(tr.inferences) == inf.num_rows


def test_rows_that_differ_in_one_column_are_both_kept(tmp_path):
    """Rows that share their time but differ anywhere else are two rows: both kept."""
    import pyarrow.compute as pc

    whole = pq.read_table(H100_FIXTURE)
    inf = whole.filter(pc.equal(table_kinds(whole), "inferences"))
    row = inf.filter(pc.invert(inf["warmup"])).slice(0, 1)
    other = row.set_column(row.schema.get_field_index("gpu_ms"), "gpu_ms",
                           pa.array([row["gpu_ms"][0].as_py() * 2]))
    path = tmp_path / "t.parquet"
    with_inferences(path, whole, pa.concat_tables([row, other]))
    tr = gpuwatch.load(path)
    assert tr.repeated_rows == {"inferences": 1}  # (`row` repeats the fixture's own row)
    assert len(tr.inferences) == inf.num_rows + 1


@pytest.mark.parametrize("fixture", ["h100_causes/steady.parquet", "standin_v3.parquet",
                                     "h100_issue28/seed_gap0_20.parquet"])
@pytest.mark.parametrize("numpy", [False, True], ids=["nullable", "numpy_dtypes"])
def test_columns_null_throughout_are_not_decoded_and_read_the_same(fixture, numpy,
                                                                   monkeypatch):
    """A column the row groups' statistics show null in every row (signals never recorded:
    26 of the samples' 37 columns in a trace without host sampling) is made NA without
    decoding it, as nullable values that take no memory until written: every table reads
    exactly as when each column was decoded (values, dtypes, order), and takes writes."""
    from pathlib import Path

    from gpuwatch.trace import TABLES, load, reader

    path = Path(__file__).parent / "data" / fixture
    kw = {"numpy_dtypes": ("inferences", "samples")} if numpy else {}
    got = load(path, **kw)
    monkeypatch.setattr(reader, "_null_throughout", lambda pf, groups, cols: set())
    want = load(path, **kw)
    skipped = 0
    for t in TABLES:
        pd.testing.assert_frame_equal(getattr(got, t), getattr(want, t), check_exact=True)
        skipped += sum(getattr(want, t)[c].isna().all() for c in getattr(want, t))
    assert skipped > 0  # (the fixture has such columns)
    s = got.samples
    col = next(c for c in s if s[c].isna().all() and str(s[c].dtype).startswith(("Int", "float")))
    s.loc[0, col] = 7
    assert s[col].iloc[0] == 7 and s[col].isna().sum() == len(s) - 1
