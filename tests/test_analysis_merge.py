"""merge(): telemetry joined onto inferences, checked against a hand-made trace."""

import numpy as np
import pandas as pd
import pytest

from gpuwatch.analysis.columns import writable
from gpuwatch.analysis.merge import merge
from gpuwatch.trace import TABLES, Trace, table_columns


def make_trace(inferences, samples):
    tables = {t: pd.DataFrame(columns=table_columns(t)) for t in TABLES}
    tables["inferences"] = pd.DataFrame(inferences).reindex(columns=table_columns("inferences"))
    tables["samples"] = pd.DataFrame(samples).reindex(columns=table_columns("samples"))
    return Trace(meta={"schema_version": 1}, **tables)


def inf(start, end, **kw):
    return {"gpu": 0, "kind": "inference", "name": "e", "condition": "c", "iteration": 0,
            "warmup": False, "start_ns": start, "end_ns": end, "t_ns": start,
            "gpu_ms": (end - start) / 1e6, "host_start_ns": start - 10_000,
            "host_enqueued_ns": start + 40_000, "host_end_ns": end + 15_000, **kw}


def smp(t, clk, reasons=0, power=None):
    return {"gpu": 0, "t_ns": t, "sm_clock_mhz": clk, "mem_clock_mhz": 5000,
            "clock_event_reasons": reasons, "power_w": power}


def test_window_stats_start_value_reasons_and_idle():
    tr = make_trace(
        [inf(1000, 5000), inf(9000, 9500), inf(20_000, 30_000)],
        [smp(0, 1500), smp(2000, 1400, reasons=0x4), smp(4000, 1300), smp(6000, 1200, 0x1),
         smp(25_000, 900, power=70.0)])
    m = merge(tr)
    assert list(m["sm_clock_mhz_start"]) == [1500, 1200, 1200]
    assert list(m["sm_clock_mhz_min"]) == [1300, 1200, 900]  # 2nd: no sample inside -> start
    assert list(m["sm_clock_mhz_max"]) == [1400, 1200, 900]
    assert m["sm_clock_mhz_mean"].iloc[0] == pytest.approx(1350)
    assert list(m["reasons_any"]) == [0x4, 0x1, 0x1]  # in force at start, OR over the window
    assert np.isnan(m["idle_before_ms"].iloc[0])
    assert m["idle_before_ms"].iloc[1:].tolist() == pytest.approx([0.004, 0.0105])
    assert m["enqueue_ms"].tolist() == pytest.approx([0.05] * 3)
    assert m["launch_ms"].tolist() == pytest.approx([0.01] * 3)
    assert m["wake_ms"].tolist() == pytest.approx([0.015] * 3)
    # power: read once; NA elsewhere is skipped, not taken as 0
    assert np.isnan(m["power_w_start"].iloc[0]) and m["power_w_mean"].iloc[2] == 70.0


def test_inference_before_any_sample_is_na():
    m = merge(make_trace([inf(10, 20)], [smp(100, 1500)]))
    assert np.isnan(m["sm_clock_mhz_start"].iloc[0]) and m["reasons_any"].iloc[0] == 0


def test_several_gpus_are_merged_with_their_own_samples():
    a = inf(1000, 2000)
    b = {**inf(1000, 2000), "gpu": 1}
    s = [smp(0, 1500), {**smp(0, 800), "gpu": 1}]
    m = merge(make_trace([a, b], s))
    assert sorted(zip(m["gpu"], m["sm_clock_mhz_start"])) == [(0, 1500), (1, 800)]


def test_merge_on_sim_matches_the_governor(t4_analysis):
    m = t4_analysis.merged
    g = m[(m["condition"] == "gap=20ms") & ~m["warmup"].astype(bool)]
    late = g[g["iteration"] >= 300]
    assert late["sm_clock_mhz_mean"].median() == pytest.approx(765, abs=0.01)  # in-band
    assert late["sm_clock_nvml_mhz_mean"].median() == 765
    assert (late["idle_before_ms"] > 20).all()  # 20 ms sleep + oversleep + sync wake


def test_cuda_event_device_timestamps_tighten_the_windows():
    """CUPTI's device times of a region's start/end events replace the anchor-mapped ones."""
    from gpuwatch.trace import table_columns

    a = inf(1000, 5000, region_id=0)
    b = inf(9000, 9500, region_id=1)
    tr = make_trace([a, b], [smp(0, 1500)])
    ev = [{"gpu": 0, "t_ns": t, "kind": "cuda_event", "name": n, "start_ns": t, "end_ns": t,
           "correlation_id": c} for t, n, c in ((1010, "start", 0), (4990, "end", 1),
                                                (9003, "start", 2))]  # region 1: no end event
    k = [{"gpu": 0, "t_ns": 1100, "kind": "kernel", "name": "layer", "start_ns": 1100,
          "end_ns": 4900}]
    tr.kernels = pd.DataFrame(ev + k).reindex(columns=table_columns("kernels"))
    m = merge(tr)
    assert list(m["aligned_by"]) == ["cuda_event", "anchor"]
    assert list(m["start_ns"]) == [1010, 9000] and list(m["end_ns"]) == [4990, 9500]
    assert list(m["kernel_count"]) == [1, 0]  # event rows are not kernels
    assert m["busy_ms"].iloc[0] == pytest.approx(0.0038)


def test_process_pids_from_another_namespace_are_counted_not_named():
    """In a container NVML lists host PIDs: this program's own pid is never on the list. One
    listed process per reading is then taken as its own; the others are counted, not named."""
    from gpuwatch.analysis.merge import _others

    rows = pd.DataFrame({"start_ns": [1_500, 2_500, 3_500]})
    t = [1_000, 1_000, 2_000, 2_000, 2_000, 3_000]
    procs = pd.DataFrame({"t_ns": t, "pid": [901, 902, 901, 902, 903, 901], "own": False,
                          "sm_util_pct": [20.0, 60.0, 20.0, 50.0, 10.0, 20.0]})
    o = _others(rows, procs)
    assert list(o["other_processes"]) == [1, 2, 0]
    assert np.isnan(o["other_pid"]).all() and np.isnan(o["other_sm_pct"]).all()
    procs["own"] = procs["pid"] == 901  # the same list where PIDs match: named, with SM shares
    o = _others(rows, procs)
    assert list(o["other_processes"]) == [1, 2, 0] and list(o["other_pid"][:2]) == [902, 902]
    assert list(o["other_sm_pct"][:2]) == [60.0, 60.0]


def test_the_next_process_reading_says_which_side_of_a_region_a_cotenant_came_or_went():
    """The list is read about once a second: each region gets the reading before it
    (`other_active`) and the one after it (`other_active_next`), NA where there is none as
    fresh (PROCESS_STALE_NS) or none at all; columns.others_either_side reads the two."""
    from gpuwatch.analysis.columns import others_either_side
    from gpuwatch.analysis.merge import PROCESS_STALE_NS, _others

    s = 1_000_000_000
    # readings at 1, 2, 3 and 4 s: another process (pid 7) at 2 s and 3 s only; then none
    # until 10 s (a gap longer than PROCESS_STALE_NS), where it is back
    t = [1 * s, 1 * s, 2 * s, 2 * s, 3 * s, 3 * s, 4 * s, 10 * s, 10 * s]
    procs = pd.DataFrame({"t_ns": t, "pid": [1, 1, 1, 7, 1, 7, 1, 1, 7], "own": [
        True, True, True, False, True, False, True, True, False], "sm_util_pct": [
        50.0, 50.0, 50.0, 40.0, 50.0, 40.0, 50.0, 50.0, 40.0]})
    procs = procs.drop_duplicates(["t_ns", "pid"])
    starts = [int(1.5 * s), int(2.5 * s), int(3.5 * s), int(4.5 * s), int(7.5 * s),
              int(10.5 * s)]
    o = _others(pd.DataFrame({"start_ns": starts}), procs)
    np.testing.assert_array_equal(o["other_active"], [0, 1, 1, 0, np.nan, 1])
    # (4.5 s: the next reading, at 10 s, is more than PROCESS_STALE_NS away; 10.5 s: none)
    assert 10 * s - int(4.5 * s) > PROCESS_STALE_NS
    np.testing.assert_array_equal(o["other_active_next"], [1, 1, 0, np.nan, np.nan, np.nan])
    near, stayed = others_either_side(o["other_active"], o["other_active_next"])
    assert list(near) == [True, True, True, False, False, True]  # (it came or was there)
    assert list(stayed) == [False, True, False, False, False, True]  # (there on both sides)


def test_the_verdicts_merge_is_the_full_one_less_the_report_columns():
    """merge(full=False), what the verdicts read, is merge() without REPORT_ONLY's columns,
    on a real trace read a column at a time; the impossible readings of the fields it does
    not read still count (a negative power here)."""
    from pathlib import Path

    import gpuwatch
    from gpuwatch.analysis.merge import REPORT_ONLY, SAMPLE_FIELDS

    path = Path(__file__).resolve().parent / "data" / "h100_issue27" / "cotenant_light.parquet"
    tr = gpuwatch.load(path, columns={"samples": SAMPLE_FIELDS}, numpy_dtypes=("samples",),
                       defer=("samples",))
    full, part = merge(tr), merge(tr, full=False)
    assert set(REPORT_ONLY) <= set(full.columns) and not set(REPORT_ONLY) & set(part.columns)
    pd.testing.assert_frame_equal(part, full.drop(columns=list(REPORT_ONLY)))
    hand = make_trace([inf(1000, 5000)], [smp(0, 1500, power=-5.0), smp(2000, 1400)])
    assert merge(hand).attrs["impossible_readings"] == 1
    assert merge(hand, full=False).attrs["impossible_readings"] == 1


def test_an_analysis_reads_no_whole_table_of_samples_and_merges_fully_when_asked(tmp_path):
    """analyze() reduces the samples a column at a time: neither the verdicts, nor to_dict,
    nor the HTML report read them whole; `merged` is made when first read, equal to the full
    merge, and `regions` (what the renderers read) is it less the report's columns."""
    from pathlib import Path

    import gpuwatch
    from gpuwatch.analysis.merge import REPORT_ONLY
    from gpuwatch.lazy import pending
    from gpuwatch.renderers.html import HtmlRenderer

    path = Path(__file__).resolve().parent / "data" / "h100_causes" / "power_cap.parquet"
    a = gpuwatch.analyze(path)
    a.to_dict()
    page = HtmlRenderer().render(a)
    assert "SM clock over time" in page
    assert pending(a.traces[0], "samples") is not None and pending(a, "merged") is not None
    full = a.merged
    assert pending(a, "merged") is None
    want = merge(a.traces[0])
    want["trace"] = 0
    pd.testing.assert_frame_equal(full, want)
    pd.testing.assert_frame_equal(a.regions, full.drop(columns=list(REPORT_ONLY)))


def test_a_signal_the_trace_lacks_costs_no_memory_and_its_column_still_works():
    """A column with no value at all (no kernel timeline here, no host sampling) is one shared
    NaN (columns.share_empty), not 8 bytes per region; it reads, selects and takes writes as
    any column."""
    tr = make_trace([inf(1000 * i, 1000 * i + 500) for i in range(1, 200)],
                    [smp(100 * i, 1500) for i in range(2100)])
    m = merge(tr, shared_empty=True)  # (as the analysis merges)
    # (the merged frame keeps the shared arrays under pandas 3, whose concat does not copy;
    # pandas 2.0, the floor, copies them into ordinary columns there)
    kept = int(pd.__version__.split(".")[0]) >= 3
    for c in ("busy_ms", "idle_inside_ms", "host_run_ms", "gc_ms", "completion_wait_ms"):
        assert m[c].isna().all()
        assert m[c].to_numpy().strides == ((0,) if kept else (8,)), c  # (one value, shared)
    assert m["gpu_ms"].to_numpy().strides == (8,) and m["gpu_ms"].notna().all()
    sel = m[m["start_ns"] > 50_000]
    assert 0 < len(sel) < len(m)
    assert np.isnan(sel["busy_ms"].to_numpy()).all() and sel["busy_ms"].to_numpy().strides == (8,)
    # what a user is handed takes writes: merge() by default, and the analysis' frames
    for frame in (merge(tr), writable(m)):
        assert frame["busy_ms"].to_numpy().strides == (8,)
        frame.loc[3, "busy_ms"] = 1.5
        assert frame["busy_ms"].iloc[3] == 1.5 and frame["busy_ms"].isna().sum() == len(m) - 1


def test_share_empty_takes_only_float_columns_without_any_value():
    from gpuwatch.analysis.columns import no_values, share_empty

    cols = {"na": np.full(5, np.nan), "one": np.array([np.nan, 1, np.nan, np.nan, np.nan]),
            "ints": np.zeros(5, np.int64), "f32": np.full(5, np.nan, np.float32),
            "empty": np.array([], float)}
    out = share_empty(cols)
    assert out is cols and out["na"].strides == (0,) and np.isnan(out["na"]).all()
    assert out["one"].strides == (8,) and out["ints"].dtype == np.int64
    assert out["f32"].strides == (4,) and out["empty"].size == 0
    v = no_values(4)
    assert v.shape == (4,) and not v.flags.writeable and np.isnan(v).all()
    assert (v + 1.0).flags.writeable  # (arithmetic gives ordinary arrays)


def test_an_analysis_hands_over_frames_that_take_writes():
    """The verdict path keeps empty columns shared; Analysis.regions and .merged, which the
    user gets, are ordinary arrays."""
    from pathlib import Path

    import gpuwatch

    a = gpuwatch.analyze(Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet")
    for frame in (a.regions, a.merged):
        assert frame["busy_ms"].isna().all()
        frame.loc[frame.index[0], "busy_ms"] = 2.0
        assert frame["busy_ms"].iloc[0] == 2.0 and frame["busy_ms"].notna().sum() == 1


def test_signals_recorded_as_na_throughout_and_one_gpus_samples_cost_no_pass(tmp_path,
                                                                             monkeypatch):
    """A trace file whose GPU utilisation and host counters were never recorded (NA in every
    row group), of one GPU: merge reads neither those columns' rows nor the samples' GPU
    column (the row groups' statistics say all), and gives exactly what the whole in-memory
    table gives."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpuwatch import tablecolumns
    from gpuwatch.analysis import SAMPLE_COLUMNS
    from gpuwatch.analysis.hostside import SAMPLE_COUNTERS
    from gpuwatch.trace import load

    src = Path(__file__).resolve().parent / "data" / "h100_causes" / "steady.parquet"
    gone = ("gpu_util_pct", *SAMPLE_COUNTERS)
    pf = pq.ParquetFile(src)
    path = tmp_path / "unrecorded.parquet"
    with pq.ParquetWriter(path, pf.schema_arrow) as w:  # (row groups and metadata kept)
        for g in range(pf.metadata.num_row_groups):
            rg = pf.read_row_group(g)
            for c in gone:
                i = rg.schema.get_field_index(c)
                if i >= 0:  # (a counter added after this recording is absent: NA too)
                    f = rg.schema.field(i)
                    rg = rg.set_column(i, f, pa.nulls(rg.num_rows, f.type))
            w.write_table(rg)
    read: list[str] = []
    real = tablecolumns.read_column

    def spy(pf, groups, col, dtype, schema=None):
        read.append(col)
        return real(pf, groups, col, dtype, schema)

    monkeypatch.setattr(tablecolumns, "read_column", spy)
    deferred = load(path, columns={"samples": SAMPLE_COLUMNS}, numpy_dtypes=("samples",),
                    defer=("samples",))
    got = merge(deferred)
    assert "gpu" not in read and "t_ns" in read and "sm_clock_mhz" in read
    want = merge(load(path))  # (the samples whole, as pandas frames: every row looked at)
    pd.testing.assert_frame_equal(got, want)
    for c in ("gpu_util_pct_start", "util_excess_pct", "host_run_ms", "host_wait_ms"):
        assert got[c].isna().all(), c
    assert got["sm_clock_mhz_mean"].notna().all() and got["own_duty_pct"].notna().all()


def test_own_duty_is_the_same_whatever_the_order_of_the_regions():
    """_own_duty skips its sort where the regions come in start order (as merge gives them);
    in any other order each region still gets its own duty cycle."""
    from gpuwatch.analysis.merge import _own_duty

    rng = np.random.default_rng(3)
    start = np.cumsum(rng.integers(1, 400_000_000, 500)).astype(np.int64)
    end = start + rng.integers(0, 300_000_000, 500)
    duty = _own_duty(start, end)
    assert duty.shape == (500,) and np.all((duty >= 0) & (duty <= 100))
    perm = rng.permutation(500)
    np.testing.assert_array_equal(_own_duty(start[perm], end[perm]), duty[perm])
    # the first region has only itself: its duty is its own length over its own span
    assert duty[0] == 100.0
