"""The recording thread's run-queue wait (gpuwatch/hoststat.py): read from /proc, carried by the
sampler, turned into a per-region wait by merge, and split out of host launch delay."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import gpuwatch
from gpuwatch.analysis.attribution import attribute
from gpuwatch.analysis.hostside import states as host_states
from gpuwatch.hoststat import ThreadSchedStat

linux = pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"),
                           reason="no /proc/<pid>/task/<tid>/schedstat here")


def work(n=300_000):
    x = 0
    for i in range(n):
        x += i
    return x


@linux
def test_a_thread_that_shares_its_cpu_waits_in_the_run_queue():
    """Two busy processes pinned to this thread's CPU: it waits, and schedstat says how long."""
    got = {}

    def pinned():
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        stat = ThreadSchedStat(os.getpid(), threading.get_native_id())
        before = stat.read()
        cpu = min(os.sched_getaffinity(0))
        hogs = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, "
                                  f"{{{cpu}}})\nwhile True: pass"]) for _ in range(2)]
        try:
            time.sleep(0.3)
            t0 = time.perf_counter()
            work(3_000_000)
            got["wall"] = time.perf_counter() - t0
            got["after"] = stat.read()
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        got["before"] = before
        stat.close()

    th = threading.Thread(target=pinned)
    th.start()
    th.join()
    waited = (got["after"]["host_wait_ns"] - got["before"]["host_wait_ns"]) / 1e9
    ran = (got["after"]["host_run_ns"] - got["before"]["host_run_ns"]) / 1e9
    assert waited > 0.3 * got["wall"] and ran > 0  # sharing a CPU with two: ~2/3 waiting


def test_a_thread_that_is_gone_reads_nothing():
    assert ThreadSchedStat(os.getpid(), 2**30).read() == {}


@linux
def test_the_sampler_process_records_the_recording_threads_wait(tmp_path):
    with gpuwatch.session("standin", tmp_path / "t.parquet") as s:
        for _ in range(100):
            s.infer(work, 20_000)
    smp = s.trace.samples.dropna(subset=["host_wait_ns"])
    assert len(smp) > 20 and smp["host_run_ns"].is_monotonic_increasing
    assert "host_wait_ms" in gpuwatch.analyze(s.trace).merged


def test_each_regions_wait_is_the_counters_change_over_its_launch():
    smp = pd.DataFrame({"t_ns": [0, 1_000_000, 2_000_000, 3_000_000],
                        "host_wait_ns": [0, 0, 800_000, 800_000]})
    rows = pd.DataFrame({"host_start_ns": [0, 1_000_000, 2_500_000, 5_000_000],
                         "host_enqueued_ns": [900_000, 2_000_000, 3_000_000, 6_000_000]})
    wait = host_states(rows, smp, None, None)["host_wait_ms"]
    np.testing.assert_allclose(wait[:3], [0.0, 0.8, 0.0])
    assert np.isnan(wait[3])  # outside the readings: unknown, not 0


def test_host_launch_delay_splits_out_the_wait_for_a_cpu():
    rng = np.random.default_rng(0)

    def rows(n, enqueue, wait):
        e = enqueue + 0.01 * rng.standard_normal(n)
        return pd.DataFrame({"gpu_ms": 0.2 + e, "sm_clock_mhz_mean": np.full(n, 1980.0),
                             "mem_clock_mhz_mean": np.full(n, 2619.0), "enqueue_ms": e,
                             "reasons_any": np.zeros(n, dtype=np.int64),
                             "host_wait_ms": np.full(n, wait)})

    ref, tgt = rows(300, 1.0, 0.0), rows(300, 2.3, 0.9)  # +1.3 ms, 0.9 of it waiting
    t = attribute(pd.concat([ref, tgt]), ref, tgt).set_index("factor")
    assert t.loc["host_cpu", "contribution_ms"] == pytest.approx(0.9, abs=0.05)
    assert t.loc["host_launch", "contribution_ms"] == pytest.approx(0.4, abs=0.05)


def test_the_machines_cpu_pressure_is_read_from_psi(tmp_path):
    from gpuwatch.hoststat import _psi_some_total_us

    f = tmp_path / "cpu"
    f.write_text("some avg10=1.50 avg60=0.62 avg300=0.81 total=277027481\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert _psi_some_total_us(str(f)) == 277027481
    assert _psi_some_total_us(str(tmp_path / "missing")) is None


@linux
def test_host_readings_come_at_their_own_rates():
    from gpuwatch.hoststat import HostStat

    h = HostStat(os.getpid(), threading.get_native_id(), slow_every=3)
    rows = [h.read() for _ in range(6)]
    h.close()
    assert all("host_wait_ns" in r for r in rows)
    slow = [i for i, r in enumerate(rows) if "host_load1_tasks" in r]
    assert slow == [0, 3]  # once every slow_every calls
    # ...and the ~10 ms ones every mid_every calls (default 10), and with the slow ones
    for f in ("host_involuntary_switches", "host_voluntary_switches", "host_steal_ns",
              "host_minflt", "host_majflt", "host_others_run_ns"):
        assert [i for i, r in enumerate(rows) if f in r] == [0, 3], f
        assert 0 <= rows[0][f] <= rows[3][f], f
    if os.path.exists("/proc/pressure/cpu"):
        assert rows[0]["host_cpu_pressure_us"] <= rows[3]["host_cpu_pressure_us"]


@linux
def test_involuntary_switches_count_preemption(tmp_path):
    """A thread that spins while busy processes share its one CPU is preempted: its
    nonvoluntary_ctxt_switches grow (what host_involuntary_switches records)."""
    from gpuwatch.hoststat import _nonvoluntary_switches

    path = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/status"
    before = _nonvoluntary_switches(path)
    assert before is not None
    cpu = sorted(os.sched_getaffinity(0))[0]
    old = os.sched_getaffinity(0)
    hogs = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\n"
                              "while True: pass"]) for _ in range(2)]
    try:
        os.sched_setaffinity(0, {cpu})
        t = time.monotonic()
        while time.monotonic() - t < 0.5:
            pass
    finally:
        os.sched_setaffinity(0, old)
        for h in hogs:
            h.kill()
            h.wait()
    assert _nonvoluntary_switches(path) > before
    assert _nonvoluntary_switches(str(tmp_path / "missing")) is None


@linux
def test_faults_switches_and_steal_are_the_recording_threads_and_grow(tmp_path):
    """Touching fresh memory is minor page faults, sleeping is voluntary switches: read every
    mid_every calls, non-negative, non-decreasing; steal never goes back."""
    from gpuwatch.hoststat import HostStat

    h = HostStat(os.getpid(), threading.get_native_id(), slow_every=1000, mid_every=1)
    before = h.read()
    buf = bytearray(32 << 20)  # 8192 fresh pages, each faulted in by its first write
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    for _ in range(20):
        time.sleep(0.001)
    after = h.read()
    h.close()
    del buf
    for f in ("host_minflt", "host_majflt", "host_voluntary_switches",
              "host_involuntary_switches", "host_steal_ns", "host_others_run_ns"):
        assert 0 <= before[f] <= after[f], f
    assert after["host_minflt"] - before["host_minflt"] >= 1000  # (THP may map 2 MiB at once)
    assert after["host_voluntary_switches"] - before["host_voluntary_switches"] >= 20


def test_page_faults_are_read_after_the_last_parenthesis():
    """A thread's comm may hold spaces and ')': fields are counted after the last ')'."""
    from gpuwatch.hoststat import _page_faults, _steal_ns

    stat = b"4242 (my ) (x) worker) S 1 2 3 0 -1 4194560 1234 0 56 0 7 8 0 0 20 0 1 0 9 0 0\n"
    assert _page_faults(stat) == (1234, 56)
    assert _page_faults(b"4242 (x) S 1") == (None, None)
    cpu = b"cpu  100 0 50 900 3 0 1 25 0 0\ncpu0 50 0 25 450 1 0 0 12 0 0\n"
    assert _steal_ns(cpu) == 25 * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert _steal_ns(b"intr 1 2\n") is None


@linux
def test_the_session_records_the_host_fields_on_the_standin(tmp_path):
    with gpuwatch.session("standin", tmp_path / "t.parquet") as s:
        for _ in range(50):
            s.infer(work, 20_000)
            time.sleep(0.002)
    smp = s.trace.samples
    for f in ("host_steal_ns", "host_minflt", "host_majflt", "host_voluntary_switches",
              "host_involuntary_switches", "host_others_run_ns"):
        v = smp[f].dropna().to_numpy(np.int64)
        assert len(v) >= 5 and (v >= 0).all() and (np.diff(v) >= 0).all(), f
        assert len(v) < len(smp)  # (about every 10 ms, not every poll)
    vol = smp["host_voluntary_switches"].dropna()
    assert vol.iloc[-1] - vol.iloc[0] >= 20  # (it slept 50 times)
