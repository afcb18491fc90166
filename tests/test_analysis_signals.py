"""gpuwatch.analysis.signals: each cause's own signal per call, over call -> result, and the
windows where it stays raised."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuwatch.analysis import signals


def _calls(n: int = 600, step_ms: float = 10.0) -> pd.DataFrame:
    """n calls, one every step_ms, 5 ms each, with quiet host states in both windows."""
    return pd.DataFrame({
        "host_start_ns": np.arange(n) * step_ms * 1e6,
        "wall_ms": np.full(n, 5.0),
        "host_offcpu_ms": np.full(n, 0.01), "others_run_ms": np.full(n, 0.01),
        "host_wait_ms": np.full(n, 0.02), "gc_ms": np.zeros(n), "steal_ms": np.zeros(n),
        "completion_offcpu_ms": np.full(n, 0.01), "completion_others_run_ms": np.full(n, 0.01),
        "completion_wait_ms": np.full(n, 0.03), "completion_gc_ms": np.zeros(n),
        "completion_steal_ms": np.zeros(n),
    })


def test_a_host_state_is_the_launchs_and_the_completions_together():
    rows = _calls(4)
    rows.loc[1, "completion_wait_ms"] = np.nan  # (the call did not wait for its result)
    rows.loc[2, "host_wait_ms"] = np.nan  # (the launch's unknown: the call's too)
    got = signals.SIGNALS["host_cpu"][0](rows)
    np.testing.assert_allclose(got, [0.05, 0.02, np.nan, 0.05])
    # a trace without the completion columns (recorded before them): the launch's alone
    old = rows.drop(columns=[c for c in rows if c.startswith("completion_")])
    np.testing.assert_allclose(signals.SIGNALS["host_cpu"][0](old), [0.02, 0.02, np.nan, 0.02])


def test_the_lock_counts_the_completion_only_where_the_other_threads_ran_all_the_while():
    """Off the CPU after the GPU finished is the lock where the other threads ran (nearly) all
    that time; a blocking synchronize sleeps there while they do not: not the lock."""
    rows = _calls(3)
    rows["completion_offcpu_ms"] = [2.0, 2.0, 2.0]
    rows["completion_others_run_ms"] = [2.1, 1.85, 0.3]
    got = signals.SIGNALS["interpreter_lock"][0](rows)
    np.testing.assert_allclose(got, [0.01 + 2.0, 0.01 + 1.85, 0.01])


def test_the_lock_after_the_gpu_finished_is_found_from_its_window():
    """The lock held only while calls wait for their results, from 2 s to 4 s: the window is
    found there, to within a block (250 ms), from the completion's states; the same time off
    the CPU while the other threads idle (a blocking synchronize) is no window."""
    rows = _calls()
    t_s = rows["host_start_ns"].to_numpy() / 1e9
    held = (t_s >= 2.0) & (t_s < 4.0)
    rows.loc[held, "completion_offcpu_ms"] = 3.0
    rows.loc[held, "completion_others_run_ms"] = 3.0
    rows.loc[held, "wall_ms"] = 8.0
    read = signals.SIGNALS["interpreter_lock"][0]
    [(a, b)] = signals.windows(rows, read(rows))
    assert abs(t_s[a] - 2.0) <= 0.25 and abs(t_s[b] - 3.99) <= 0.25
    rows.loc[held, "completion_others_run_ms"] = 0.2
    assert signals.windows(rows, read(rows)) == []
