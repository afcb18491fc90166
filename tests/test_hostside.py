"""What the host did per region (gpuwatch/analysis/hostside.py): here, the clock of the CPU the
timed thread ran on, a level held between readings and averaged over each region's window."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuwatch.analysis.hostside import LEVEL_HOLD_NS, cpu_freq_text, states

MS = 1_000_000


def samples(times_ms, mhz):
    """Samples as load gives them: a reading every 1 ms, the clock on some (NA elsewhere)."""
    return pd.DataFrame({"t_ns": (np.asarray(times_ms) * MS).astype(np.int64),
                         "host_cpu_freq_mhz": pd.array(mhz, dtype="Float64")})


def windows(*pairs_ms):
    a, b = zip(*pairs_ms)
    return pd.DataFrame({"host_start_ns": pd.array([int(x * MS) for x in a], dtype="Int64"),
                         "host_enqueued_ns": pd.array([int(x * MS) for x in b], dtype="Int64")})


def test_each_regions_cpu_clock_is_the_time_weighted_mean_over_its_window():
    # readings at 0, 10, 20 ms (2000, 3000, 1000 MHz); the polls between carry none (NA)
    t = list(range(0, 31))
    mhz = [{0: 2000.0, 10: 3000.0, 20: 1000.0}.get(i, None) for i in t]
    rows = windows((2, 8), (5, 15), (8, 22), (10, 10), (12, 13), (25, 28), (-5, 1))
    got = states(rows, samples(t, mhz), None, None)["cpu_freq_mhz"]
    np.testing.assert_allclose(got[:6], [2000.0,  # inside one reading's hold
                                         2500.0,  # 5 ms of 2000, 5 ms of 3000
                                         (2 * 2000 + 10 * 3000 + 2 * 1000) / 14,
                                         3000.0,  # a window of no length: the reading then
                                         3000.0, 1000.0])  # (past the last: held)
    assert np.isnan(got[6])  # starts before the first reading: unknown


def test_the_cpu_clock_is_na_where_unknown():
    t = list(range(0, 21))
    none = states(windows((2, 8)), samples(t, [None] * 21), None, None)["cpu_freq_mhz"]
    assert np.isnan(none).all()  # (a machine without cpufreq: all NA, never 0)
    older = pd.DataFrame({"t_ns": np.arange(0, 21, dtype=np.int64) * MS})
    assert np.isnan(states(windows((2, 8)), older, None, None)["cpu_freq_mhz"]).all()
    # a reading older than LEVEL_HOLD_NS says nothing about the window
    stale = samples([0, 1], [2000.0, None])
    far = LEVEL_HOLD_NS / MS
    got = states(windows((0.5, 0.9), (far + 1, far + 2), (0.5, far + 5)), stale, None,
                 None)["cpu_freq_mhz"]
    assert got[0] == 2000.0 and np.isnan(got[1]) and np.isnan(got[2])
    # an unknown window
    rows = windows((2, 8))
    rows["host_enqueued_ns"] = pd.array([pd.NA], dtype="Int64")
    assert np.isnan(states(rows, samples(t, [2000.0] * 21), None, None)["cpu_freq_mhz"]).all()


def test_the_cpu_clock_is_said_only_where_it_moved_5_percent():
    assert cpu_freq_text(3000.0, 2000.4) == " (CPU clock 3000 -> 2000 MHz)"
    assert cpu_freq_text(2000.0, 2100.0) == " (CPU clock 2000 -> 2100 MHz)"  # (5% exactly)
    assert cpu_freq_text(2000.0, 2099.0) == ""
    assert cpu_freq_text(2000.0, 1901.0) == ""
    for ref, tgt in ((np.nan, 2000.0), (2000.0, np.nan), (None, 1000.0), (2000.0, None),
                     (0.0, 1000.0)):
        assert cpu_freq_text(ref, tgt) == "", (ref, tgt)


def test_a_single_reading_holds():
    got = states(windows((1, 4), (0, 0)), samples([0], [2400.0]), None, None)["cpu_freq_mhz"]
    np.testing.assert_allclose(got, [2400.0, 2400.0])


def test_split_on_arrays_is_split_on_each_element():
    """refine_host splits every bootstrap resample at once: arrays in give, element by element,
    what floats in give; the parts stay within 0..total and sum to it."""
    from gpuwatch.analysis.hostside import split

    rng = np.random.default_rng(7)
    cols = ("gc_ms", "host_wait_ms", "quota_ms", "host_offcpu_ms", "others_run_ms", "steal_ms")
    n = 400
    for wait_counted in (False, True):
        for total in (0.8, -0.5, 0.0):
            d = {c: rng.normal(0.1, 0.4, n) for c in cols}
            for c in cols:  # unknown measures, and exact zeros
                d[c][rng.random(n) < 0.2] = np.nan
                d[c][rng.random(n) < 0.05] = 0.0
            got = split(total, d, wait_counted=wait_counted)
            total_parts = np.zeros(n)
            for i in range(n):
                one = split(total, {c: float(d[c][i]) for c in cols}, wait_counted=wait_counted)
                assert all(isinstance(v, float) for v in one.values())
                for f, v in one.items():
                    assert got[f][i] == v, (f, i)
            for f, v in got.items():
                assert v.shape == (n,)
                assert np.all(np.sign(v) * np.sign(total) >= 0) or f == "host_launch"
                total_parts += v
            np.testing.assert_allclose(total_parts, total, atol=1e-12)


def test_the_busiest_thread_of_a_window_and_its_memo_going_with_the_table():
    """busiest_thread: the thread that ran most in the window (cumulative run_ns rows about a
    second apart: the row before the window is its baseline), by its last name; asked once
    per verdict over one table, its per-thread arrays are made once and dropped with it."""
    import gc

    from gpuwatch.analysis import hostside

    s = 1_000_000_000
    ev = pd.DataFrame({
        "kind": ["thread"] * 6 + ["gc"],
        "tid": [1, 1, 1, 2, 2, 2, np.nan],
        "t_ns": [0, 10 * s, 20 * s, 0, 10 * s, 20 * s, 5 * s],
        "run_ns": [0.0, 1e9, 9e9, 0.0, 4e9, 5e9, np.nan],
        "name": ["main", None, "main", "logger", "logger", None, None]})
    # 10..20 s: rows at 10 and 20 s, baselines at 0 s: thread 1 ran 9 s, thread 2 5 s, over
    # the 20 s between the baseline and the last row (what a sentence says it ran in)
    assert hostside.busiest_thread(ev, 10 * s, 20 * s) == {"tid": 1, "name": "main",
                                                            "run_ms": 9000.0, "over_s": 20.0}
    # 0..10 s (no row before): thread 2 ran 4 s, thread 1 1 s, from the first row to the last
    assert hostside.busiest_thread(ev, 0, 10 * s) == {"tid": 2, "name": "logger",
                                                       "run_ms": 4000.0, "over_s": 10.0}
    assert hostside.busiest_thread(ev, 12 * s, 18 * s) is None  # (no row within a second)
    assert hostside.busiest_thread(None, 0, 1) is None
    assert hostside.busiest_thread(ev[ev["kind"] == "gc"], 0, 1) is None
    key = id(ev)
    assert key in hostside._THREADS
    del ev
    gc.collect()
    assert key not in hostside._THREADS
