"""The recording process's own host causes (gpuwatch/hostevents.py, hoststat.OtherThreads):
garbage collections and other threads' CPU time, recorded on the stand-in device (the real
host clock and the real sampler process)."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest

import gpuwatch
from gpuwatch.hostevents import GcRecorder, ThreadNames
from gpuwatch.hoststat import OtherThreads
from gpuwatch.trace import table_columns

linux = pytest.mark.skipif(not os.path.exists("/proc/self/task"),
                           reason="no /proc/<pid>/task here")


def work(n=20_000):
    x = 0
    for i in range(n):
        x += i
    return x


@linux
@pytest.mark.parametrize("sampler", ["process", "thread"])
def test_another_threads_cpu_time_is_recorded_with_its_python_name(tmp_path, sampler):
    """A Python thread spinning pure-Python work while the main thread times regions: the other
    threads' CPU time grows by at least what it spun, and it has `thread` rows by its name."""
    spun: dict[str, float] = {}

    def spin() -> None:
        t = time.monotonic()
        while time.monotonic() - t < 0.4:
            work(2_000)
        spun["cpu_s"] = time.thread_time()  # (this thread's CPU time: schedstat's source)
        spun["tid"] = threading.get_native_id()
        time.sleep(1.0)  # (the sampler process learns Python names about once a second)

    with gpuwatch.session("standin", tmp_path / "t.parquet", sampler=sampler) as s:
        time.sleep(0.05)  # (some samples before it starts)
        th = threading.Thread(target=spin, name="busy-preprocessor")
        th.start()
        while th.is_alive():
            s.infer(work, 5_000)
        th.join()
        time.sleep(0.05)
    tr = s.trace
    assert tr.schema_version == 4
    others = tr.samples["host_others_run_ns"].dropna().to_numpy(np.int64)
    assert len(others) > 10 and (np.diff(others) >= 0).all()  # monotonic: exits included
    assert spun["cpu_s"] > 0.05
    assert (others[-1] - others[0]) / 1e9 >= 0.8 * spun["cpu_s"]
    rows = tr.host_events[(tr.host_events["kind"] == "thread")
                          & (tr.host_events["tid"] == spun["tid"])]
    # (a thread id is reused once its thread ends: rows of an earlier thread of this process
    # with the same id may come first, under that thread's name; the last rows are this one's)
    assert len(rows) >= 1 and rows["name"].iloc[-1] == "busy-preprocessor", rows
    rows = rows[rows["name"] == "busy-preprocessor"]
    last_s = rows["run_ns"].max() / 1e9  # (its last value, read at most ~10 ms before it ended)
    assert 0.5 * spun["cpu_s"] <= last_s <= spun["cpu_s"] + 0.01
    threads = tr.host_events[tr.host_events["kind"] == "thread"]
    assert threading.get_native_id() not in set(threads["tid"])  # (the recording thread's
    # own time is host_run_ns)


@linux
def test_garbage_collections_are_rows_inside_the_region_that_paid_for_them(tmp_path):
    """gc.collect() in a span, and automatic collections while a span makes reference cycles:
    `gc` rows from the thread that collected, within the span's host window."""
    assert gc.isenabled()

    def cycles(n: int) -> None:
        for _ in range(n):
            a: list = []
            b = [a]
            a.append(b)

    with gpuwatch.session("standin", tmp_path / "t.parquet") as s:
        # (the counts back to 0 first: garbage an earlier test of this worker left could make
        # an automatic full collection inside the span, before the explicit one: seen once)
        gc.collect()
        with s.span("explicit"):
            cycles(200)  # (400 objects, garbage only a collection frees)
            gc.collect()
        with s.span("automatic"):
            cycles(20_000)  # (generation 0 fills every few hundred allocations)
    tr = s.trace
    spans = tr.inferences.set_index("name")
    rows = tr.host_events[tr.host_events["kind"] == "gc"]
    main = threading.main_thread()
    assert tr.meta["host_events"]["gc_dropped"] == 0
    for name in ("explicit", "automatic"):
        lo, hi = spans.loc[name, "host_start_ns"], spans.loc[name, "host_enqueued_ns"]
        inside = rows[(rows["t_ns"] >= lo) & (rows["end_ns"] <= hi)]
        assert len(inside) >= 1, name
        assert (inside["end_ns"] >= inside["t_ns"]).all()
        assert (inside["tid"] == main.native_id).all() and (inside["name"] == main.name).all()
        if name == "explicit":
            full = inside[inside["generation"] == 2]
            assert len(full) == 1 and full["collected"].iloc[0] >= 400
    assert s._gc is not None and s._gc._cb not in gc.callbacks  # removed at close


def test_the_gc_callback_stores_and_hands_over_rows():
    """Without a session: start/stop phases become one row on the given time base, from the
    thread that collected; removing it stops recording."""
    rec = GcRecorder(time.perf_counter_ns, 1_000)
    rec.install()
    try:
        gc.collect(0)
        done = threading.Event()

        def other() -> None:
            gc.collect(1)
            done.set()

        th = threading.Thread(target=other, name="collector")
        th.start()
        th.join()
    finally:
        rec.remove()
    gc.collect(0)  # (not recorded: removed)
    rows = rec.take(gpu=3)
    assert [r["generation"] for r in rows] == [0, 1]
    assert [r["name"] for r in rows] == [threading.current_thread().name, "collector"]
    assert rows[0]["tid"] == threading.get_native_id() and rows[1]["tid"] != rows[0]["tid"]
    assert all(r["gpu"] == 3 and r["kind"] == "gc" and 0 < r["t_ns"] <= r["end_ns"]
               for r in rows)
    assert set(rows[0]) <= set(table_columns("host_events"))
    assert rec.take(gpu=3) == [] and rec.summary() == {"gc_collections": 2, "gc_dropped": 0}


@linux
def test_other_threads_keep_an_exited_threads_time_and_report_it_once():
    me = threading.get_native_id()
    others = OtherThreads(os.getpid(), me)
    first = others.scan()
    assert first is not None and first >= 0
    got: dict[str, int] = {}

    def burn() -> None:
        work(300_000)
        got["tid"] = threading.get_native_id()
        got["cpu_ns"] = time.thread_time_ns()
        time.sleep(0.05)  # (scanned while alive)

    th = threading.Thread(target=burn, name="burner")
    th.start()
    time.sleep(0.03)
    while "tid" not in got:
        time.sleep(0.005)
    during = others.scan()
    th.join()
    after = others.scan()
    assert during is not None and after is not None and first <= during <= after
    assert during - first >= 0.5 * got["cpu_ns"]  # (other threads ran too: at least)
    rows = others.thread_rows({got["tid"]: "burner"})
    mine = [r for r in rows if r["tid"] == got["tid"]]
    assert len(mine) == 1 and mine[0]["name"] == "burner"
    assert mine[0]["run_ns"] >= got["cpu_ns"] * 0.99
    assert all(r["tid"] != me for r in rows)
    assert not [r for r in others.thread_rows({}) if r["tid"] == got["tid"]]  # reported once
    others.close()


class _ParkedThread:
    """A thread named `name` that ran a little, then waits (`release()` ends it), and an
    OtherThreads that has scanned it: its tid in `tid`."""

    def __init__(self, name: str):
        self.others = OtherThreads(os.getpid(), threading.get_native_id())
        self.others.scan()
        done, self._go = threading.Event(), threading.Event()
        got: dict[str, int] = {}

        def burn() -> None:
            work(100_000)
            got["tid"] = threading.get_native_id()
            done.set()
            self._go.wait(5)

        self._th = threading.Thread(target=burn, name=name)
        self._th.start()
        done.wait(5)
        self.tid = got["tid"]
        self.others.scan()

    def rows(self, names: dict[int, str]) -> list[dict]:
        return [r for r in self.others.thread_rows(names) if r["tid"] == self.tid]

    def release(self) -> None:
        self._go.set()
        self._th.join()

    def close(self) -> None:
        self.release()
        self.others.close()


@linux
@pytest.mark.parametrize("exits", [False, True])
def test_a_python_name_learned_after_a_threads_last_row_gets_a_row_of_its_own(exits):
    """A thread whose only row carried the kernel's name (its Python name not yet published
    to the sampler) and that runs no more: once the name is known it gets one row more, with
    the same run time, so its last row names it (CI saw 'python')."""
    p = _ParkedThread("late-name")
    first = p.rows({})
    assert len(first) == 1 and first[0]["name"] != "late-name"  # (the kernel's comm)
    if exits:
        p.release()
    p.others.scan()
    again = p.rows({p.tid: "late-name"})
    assert [r["name"] for r in again] == ["late-name"]
    assert again[0]["run_ns"] >= first[0]["run_ns"]  # (the same, or its exit's few us more)
    p.others.scan()
    assert not p.rows({p.tid: "late-name"})  # (once)
    p.close()


@linux
def test_a_thread_first_seen_before_python_listed_it_keeps_its_python_name_after_it_exits():
    """A scan that finds a thread before `threading` lists it (or before its name reached the
    sampler process) learns the kernel's name; it asks again while the thread lives, so the
    row made after the thread ended carries its Python name (CI saw 'python')."""
    p = _ParkedThread("named-late")
    assert p.others.names_wanted
    p.others.learn_names({})  # (not listed yet: the kernel's name)
    assert p.others.names_wanted  # (asked again)
    p.others.learn_names({p.tid: "named-late"})
    assert p.tid not in p.others._unnamed  # (asked no more: other, native threads may be)
    p.release()
    p.others.scan()  # (it is gone: its row comes from what was learned)
    assert [r["name"] for r in p.rows({})] == ["named-late"]
    p.close()


def test_thread_names_travel_through_their_file(tmp_path):
    f = tmp_path / "threads.json"
    reader, writer = ThreadNames(f), ThreadNames(f)
    assert reader.read() == {}
    writer.publish()
    assert reader.read()[threading.get_native_id()] == threading.current_thread().name
    writer.publish({1: "a", 2: "b c"})
    os.utime(f, ns=(1, 1))  # (a file system with coarse times: still seen as changed)
    assert reader.read() == {1: "a", 2: "b c"}
