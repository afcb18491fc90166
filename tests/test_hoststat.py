"""The recording thread's run-queue wait (gpuwatch/hoststat.py): read from /proc, carried by the
sampler, turned into a per-region wait by merge, and split out of host launch delay."""

from __future__ import annotations

import mmap
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
    # 8192 fresh pages, each faulted in by its first write: an anonymous map of their own (a
    # bytearray may be given heap memory this process touched before, and fault nothing)
    buf = mmap.mmap(-1, 32 << 20)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    for _ in range(20):
        time.sleep(0.001)
    after = h.read()
    h.close()
    buf.close()
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


# The CPU clock of the CPU the recording thread last ran on (cpufreq, where exposed)

def _fake_cpufreq(root, khz_of_cpu, max_khz=None):
    """A directory laid out as /sys/devices/system/cpu with cpufreq: cpuN/cpufreq files."""
    for cpu, khz in khz_of_cpu.items():
        d = root / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
        if max_khz is not None:
            (d / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    return str(root)


def test_the_threads_cpu_is_field_39_after_the_last_parenthesis():
    from gpuwatch.hoststat import _page_faults, _processor

    # a comm with ") " in it: counted from the last ')', field 39 is the 37th after it
    after = " ".join(["S"] + [str(n) for n in range(4, 39)] + ["13", "0", "0"])  # 39: 13
    stat = b"4242 (my ) (x) worker) " + after.encode() + b"\n"
    assert _processor(stat) == 13
    assert _page_faults(stat) == (10, 12)  # (fields 10 and 12 from the same split)
    assert _processor(b"4242 (x) S 1 2 3") is None  # (a kernel too old for the field)
    assert _processor(b"") is None


@linux
def test_the_real_stat_files_processor_is_a_cpu_this_thread_may_run_on():
    from gpuwatch.hoststat import _processor

    old = os.sched_getaffinity(0)
    cpu = max(old)
    try:
        os.sched_setaffinity(0, {cpu})
        work(50_000)  # (runs there now)
        with open(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/stat", "rb") as f:
            assert _processor(f.read()) == cpu
    finally:
        os.sched_setaffinity(0, old)


@linux
def test_the_cpu_clock_is_the_clock_of_the_cpu_the_thread_ran_on(tmp_path):
    """Each CPU a different clock in a cpufreq laid out in tmp_path: the reading follows the
    thread to the CPU it is pinned on; each CPU's file is held open (re-read, not reopened)."""
    from gpuwatch.hoststat import HostStat

    cpus = sorted(os.sched_getaffinity(0))
    root = _fake_cpufreq(tmp_path, {c: 1_000_000 + 100_000 * c + 7 for c in cpus})
    h = HostStat(os.getpid(), threading.get_native_id(), slow_every=1000, mid_every=2,
                 cpufreq_root=root)
    old = set(cpus)
    try:
        for cpu in (cpus[-1], cpus[0]):
            os.sched_setaffinity(0, {cpu})
            work(50_000)
            got = [h.read().get("host_cpu_freq_mhz") for _ in range(4)]
            assert got[0] == got[2] == pytest.approx(1000 + 100 * cpu + 0.007)
            assert got[1] is None and got[3] is None  # (every mid_every-th reading only)
        # a changed clock is read through the held file
        (tmp_path / f"cpu{cpus[0]}" / "cpufreq" / "scaling_cur_freq").write_text("2500000\n")
        h._n = 0
        assert h.read()["host_cpu_freq_mhz"] == 2500.0
    finally:
        os.sched_setaffinity(0, old)
        h.close()


def test_no_cpufreq_is_na_and_costs_no_second_try(tmp_path, monkeypatch):
    """Where the machine exposes no cpufreq the clock is absent from the readings (NA in the
    trace, never 0), and after the first failed open no file is tried again."""
    from gpuwatch import hoststat

    tried = []
    real_open = os.open

    def counting_open(path, *a, **k):
        if "cpufreq" in str(path):
            tried.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(hoststat, "CPUFREQ_ROOT", str(tmp_path))  # (an empty "sysfs")
    monkeypatch.setattr(hoststat.os, "open", counting_open)
    f = hoststat.CpuFreq()
    assert [f.mhz(c) for c in (0, 1, 0, 5)] == [None] * 4
    assert f.exposed is False and len(tried) == 1
    if os.path.exists("/proc/self/task"):
        h = hoststat.HostStat(os.getpid(), threading.get_native_id(), mid_every=1)
        rows = [h.read() for _ in range(5)]
        h.close()
        assert all("host_cpu_freq_mhz" not in r for r in rows)
        assert all("host_minflt" in r for r in rows)  # (the rest of the reading is there)
        assert len(tried) == 2  # (the HostStat's one try)
    assert hoststat.cpu_max_mhz() is None


def test_a_cpufreq_file_that_is_not_a_clock_is_na(tmp_path):
    from gpuwatch.hoststat import CpuFreq, cpu_max_mhz

    root = _fake_cpufreq(tmp_path, {0: 2_450_000, 1: 0, 2: "<unknown>"}, max_khz=3_500_000)
    f = CpuFreq(root)
    assert f.mhz(0) == 2450.0 and f.exposed is True
    assert f.mhz(1) is None and f.mhz(2) is None  # (0 or text: unknown, never 0)
    assert f.mhz(3) is None and f.exposed is True  # (one CPU without the file: NA for it)
    f.close()
    assert cpu_max_mhz(root) == 3500.0


@linux
def test_the_session_records_the_cpu_clock_or_na_where_not_exposed(tmp_path):
    """The sampler process reads the clock where this machine exposes cpufreq (positive MHz,
    at the ~10 ms rate); where it does not (many VMs, the CPU test machine), the column is
    there and all NA, and the metadata's host.cpu_max_mhz is null."""
    with gpuwatch.session("standin", tmp_path / "t.parquet") as s:
        for _ in range(50):
            s.infer(work, 20_000)
            time.sleep(0.002)
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert "host_cpu_freq_mhz" in tr.samples and "cpu_max_mhz" in tr.meta["host"]
    freq = tr.samples["host_cpu_freq_mhz"].dropna()
    exposed = any(os.path.exists(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq")
                  for c in os.sched_getaffinity(0))
    if exposed:
        assert len(freq) >= 5 and (freq > 0).all() and len(freq) < len(tr.samples)
        assert tr.meta["host"]["cpu_max_mhz"] is None or tr.meta["host"]["cpu_max_mhz"] > 0
    else:
        assert len(freq) == 0 and len(tr.samples) > 20
        assert tr.meta["host"]["cpu_max_mhz"] is None
        assert tr.samples["host_minflt"].notna().sum() >= 5  # (the other host fields came)


@linux
def test_a_recording_carries_the_clock_from_cpufreq_into_trace_and_analysis(tmp_path,
                                                                            monkeypatch):
    """With a cpufreq laid out in tmp_path (every CPU at 2345.678 MHz, max 3100 MHz) and the
    thread sampler (in this process, where the layout is seen): the samples carry the clock at
    the ~10 ms rate, the metadata the maximum, and each region's mean is that clock."""
    from gpuwatch import hoststat

    root = _fake_cpufreq(tmp_path / "sys", {c: 2_345_678 for c in range(os.cpu_count() or 1)},
                         max_khz=3_100_000)
    monkeypatch.setattr(hoststat, "CPUFREQ_ROOT", root)
    with gpuwatch.session("standin", tmp_path / "t.parquet", sampler="thread") as s:
        for _ in range(60):
            s.infer(work, 20_000)
            time.sleep(0.002)
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert tr.meta["host"]["cpu_max_mhz"] == 3100.0
    freq = tr.samples["host_cpu_freq_mhz"]
    read = int(freq.notna().sum())
    assert 5 <= read < len(freq)  # (about every 10 ms, not every poll)
    assert (freq.dropna() == 2345.678).all()
    merged = gpuwatch.analyze(tr).merged
    inner = merged["cpu_freq_mhz"].dropna()
    assert len(inner) >= 0.5 * len(merged)  # (the first regions may precede the first reading)
    np.testing.assert_allclose(inner, 2345.678)
