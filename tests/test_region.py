"""The timed region on the simulated GPU (exact ground truth): no synchronisation the program
did not have, lazy resolution, the event pool, stream checks, the whole-device mode, errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpuwatch
from gpuwatch.bindings.cuda import native_module
from gpuwatch.labels import event_tag, region_of_tag
from tests.helpers import fake_torch


class CountingRuntime:
    """The session's real (simulated) runtime, counting what waits for the GPU."""

    def __init__(self, rt):
        self._rt = rt
        self.waits = {"synchronize": 0, "synchronize_device": 0, "stream_synchronize": 0}

    def __getattr__(self, name):
        attr = getattr(self._rt, name)
        if name in self.waits:
            def counted(*a, **k):
                self.waits[name] += 1
                return attr(*a, **k)
            return counted
        return attr


def counting(s):
    rt = CountingRuntime(s._backend.runtime)
    s._timer._rt = rt
    return rt


def test_tags_round_trip():
    assert region_of_tag(event_tag(41, False)) == (41, False)
    assert region_of_tag(event_tag(41, True)) == (41, True)
    r, end = region_of_tag(event_tag(np.arange(4), True))
    assert list(r) == [0, 1, 2, 3] and end.all()


def test_the_profiler_adds_no_synchronisation(tmp_path):
    """A pipelined program (enqueue after enqueue, no waiting) keeps it that way: regions are
    resolved from event queries, and only the session's end waits for the GPU."""
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet", check_every=0) as s:
        e = s.engine()
        rt = counting(s)
        for _ in range(200):
            e.infer()
        assert rt.waits == {"synchronize": 0, "synchronize_device": 0, "stream_synchronize": 0}
        assert s._timer.depth == 0 and s._timer.outstanding() > 0  # outstanding, not waited
    assert rt.waits["synchronize"] >= 1  # close(): drain
    inf = s.trace.inferences
    assert len(inf) == 200 and inf["gpu_ms"].notna().all()
    assert inf["iteration"].tolist() == list(range(200))
    # back to back on one stream: each region starts where the previous one ended
    start, end = inf["start_ns"].to_numpy(np.int64), inf["end_ns"].to_numpy(np.int64)
    assert (start[1:] >= end[:-1] - 10_000).all()
    assert s.trace.meta["regions"]["event_pairs"] <= 1024  # from the pool


def test_a_full_pool_waits_for_the_oldest_region_only(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet", check_every=0) as s:
        e = s.engine()
        s._timer._max_pending = 8
        rt = counting(s)
        for _ in range(40):
            e.infer()
        assert 0 < rt.waits["synchronize"] <= 40 and s._timer.outstanding() <= 8
    assert s.trace.meta["regions"]["forced_waits"] > 0
    assert len(s.trace.inferences) == 40


def test_rows_are_resolved_in_batches_or_when_the_program_synchronises(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet", check_every=0) as s:
        e = s.engine()
        e.infer()
        assert s.last_ms is None  # nothing waited for it yet
        e.synchronize()
        assert s.last_ms == pytest.approx(4.7, rel=0.1)  # resolved when the program knew
        written = s._timer.stats["regions"]
    tr = s.trace
    assert written == 1 and tr.inferences["host_end_ns"].notna().all()
    assert (tr.inferences["host_end_ns"] >= tr.inferences["end_ns"]).all()


def test_checked_regions_find_work_outside_the_events(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet", check_every=2) as s:
        e = s.engine()
        s.set_condition("elsewhere")
        for _ in range(10):  # events on stream 0; the engine runs on its own, non-blocking
            s.infer(e.raw.infer)
            e.synchronize()
        s.set_condition("bracketed")
        for _ in range(10):
            s.infer(e.raw.infer, stream=e.stream)
            e.synchronize()
    inf = s.trace.inferences.set_index("condition")
    out = inf.loc["elsewhere", "outside_ms"].dropna()
    assert len(out) >= 5 and (out > 4.0).all()  # ~4.7 ms of work after the end event
    assert (inf.loc["elsewhere", "gpu_ms"] < 0.5).all()  # the events saw almost nothing
    ok = inf.loc["bracketed", "outside_ms"].dropna()
    assert len(ok) >= 5 and (ok.abs() < 0.05).all()
    assert set(inf.loc["bracketed", "stream_source"]) == {"argument"}
    assert s.trace.meta["regions"]["checked"] == len(out) + len(ok)


def test_device_mode_brackets_every_stream(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet", stream="device") as s:
        e = s.engine()
        for _ in range(5):
            s.infer(e.raw.infer)  # on the engine's stream; no stream named: the session's
    inf = s.trace.inferences
    assert set(inf["stream_source"]) == {"device"} and inf["outside_ms"].isna().all()
    assert inf["gpu_ms"].between(4.5, 5.2).all()  # the whole inference, launch included
    assert s.trace.meta["options"]["stream"] == [0, "device"]


def test_spans_nest_inside_an_inference_without_housekeeping(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()
        polls = []
        real = s._timer.poll
        s._timer.poll = lambda: (polls.append(s._timer.depth), real())[1]

        def model():
            with s.span("inner", stream=e.stream):
                e.raw.infer()

        for _ in range(40):
            s.infer(model, stream=e.stream)
            e.synchronize()
    assert all(d == 0 for d in polls)  # never inside an open region
    inf = s.trace.inferences
    outer, inner = inf[inf["kind"] == "inference"], inf[inf["kind"] == "span"]
    assert len(outer) == len(inner) == 40
    assert (inner["start_ns"].to_numpy() >= outer["start_ns"].to_numpy()).all()
    assert (inner["end_ns"].to_numpy() <= outer["end_ns"].to_numpy()).all()
    assert list(inner["iteration"]) == list(outer["iteration"])


def test_an_exception_in_the_call_keeps_the_row_and_the_events_are_reused(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()
        for i in range(20):
            try:
                s.infer(lambda: (e.raw.infer(), 1 / (i % 2))[1], stream=e.stream)
            except ZeroDivisionError:
                pass
            e.synchronize()
    inf = s.trace.inferences
    assert inf["error"].notna().sum() == 10 and inf["gpu_ms"].notna().all()
    assert s.trace.meta["regions"]["event_pairs"] <= 2


def test_the_writer_thread_resolves_regions_while_the_program_is_quiet(tmp_path):
    import time

    s = gpuwatch.session("sim:flat", tmp_path / "t.parquet")
    s.start()
    try:
        e = s.engine()
        e.infer()
        e.infer()
        s.wait(20)  # (virtual time: the GPU is done)
        t0 = time.monotonic()
        while s._timer.outstanding() and time.monotonic() - t0 < 5:
            time.sleep(0.05)  # the program does nothing gpuwatch sees
        assert not s._timer.outstanding() and s._timer.stats["background_polls"] >= 1
    finally:
        s.close()
    assert len(s.trace.inferences) == 2


def test_a_pipelined_program_keeps_its_throughput(tmp_path):
    """Inference N+1 is enqueued before the host post-processes N (4 ms of host work, about
    the engine's GPU time): GPU and host overlap. Timing every inference must not serialise
    them (the profiler that synchronised each region cost this loop ~45% of its throughput)."""
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()
        rt = s._backend.runtime

        def loop(infer, n=100):
            t0, prev = s.clock.now_ns(), None
            for _ in range(n):
                infer()
                done = rt.event()
                rt.record(done, e.stream)  # the program's own marker for this result
                if prev is not None:
                    rt.synchronize(prev)  # wait for result N-1...
                    s.clock.spin_ns(4_000_000)  # ...and post-process it on the host
                prev = done
            rt.synchronize(prev)
            return n / ((s.clock.now_ns() - t0) / 1e9)

        loop(e.infer, 10)  # the first regions are checked for outside work: a full drain each
        untimed = loop(e.raw.infer)
        timed = loop(e.infer)
    assert timed / untimed > 0.995
    assert len(s.trace.inferences) == 110


# -- the timed call on the stand-in device (its C-callable event record), on both region
# engines (the `impl` fixture): gpuwatch/regions/_native.c's FastRegion and its Python reference --
def standin(tmp_path):
    return gpuwatch.session("standin", tmp_path / "t.parquet", check_every=0, sampler="off",
                            probe=False)  # (stamped regions take the slow path: test_probe.py)


class spy:
    """Counts the regions session `s` times on the engine's own path (the C call's count; on
    the Python reference, every region begun), after filling the event pool (pairs come back
    as regions resolve)."""

    def __init__(self, s):
        self.timer = s._timer
        assert self.timer._c_path == (native_module() is not None)  # (the impl fixture's)
        for _ in range(40):
            s.infer(lambda: None)
        self.n0 = self._count()

    def _count(self) -> int:
        fast = self.timer.fast
        return fast.fast_regions if hasattr(fast, "fast_regions") else self.timer.seq

    def __len__(self):
        return self._count() - self.n0


def test_the_timed_call_times_the_call_and_only_the_call(tmp_path, impl):
    with standin(tmp_path) as s:
        calls = spy(s)
        for i in range(40):
            assert s.infer(lambda k: s.clock.spin_ns(200_000) or k * 2, i) == i * 2
    assert len(calls) >= 36  # all but the regions with housekeeping due (1 in BATCH)
    inf = s.trace.inferences.iloc[40:]
    assert len(inf) == 40 and inf["error"].isna().all()
    assert inf["iteration"].tolist() == list(range(40, 80))
    # the call and only the call: at least its 0.2 ms spin, and within the host's own window
    # around it (a bound relative to the run, not a wall-clock one another process can break)
    window_ms = (inf["host_enqueued_ns"] - inf["host_start_ns"]) / 1e6
    assert (inf["gpu_ms"] >= 0.2).all() and (inf["gpu_ms"] <= window_ms + 0.1).all()
    # the host stamps bracket the events (stand-in events are host clock reads)
    assert (inf["host_start_ns"] <= inf["start_ns"] + 50_000).all()
    assert (inf["host_enqueued_ns"] >= inf["end_ns"] - 50_000).all()
    assert s.trace.meta["regions"]["event_pairs"] <= 17  # the pool, reused


def test_the_timed_call_keeps_the_callers_exception_and_the_row(tmp_path, impl):
    def boom():
        raise ValueError("boom")

    with standin(tmp_path) as s:
        calls = spy(s)
        with pytest.raises(ValueError, match="boom") as info:
            s.infer(boom)
        assert info.traceback[-1].name == "boom"  # the user's own frame, not ours
        assert len(calls) == 1 and s._timer.depth == 0
        s.infer(lambda: None)
    inf = s.trace.inferences
    assert len(inf) == 42
    assert inf["error"].iloc[40] == "ValueError: boom" and inf["gpu_ms"].iloc[40] >= 0
    assert inf["error"].drop(index=40).isna().all()


def test_a_failing_start_event_in_the_timed_call_writes_a_row_and_never_calls(tmp_path, impl):
    ran = []
    with pytest.raises(RuntimeError, match="cuEventRecord failed: stand-in status 700"):
        with standin(tmp_path) as s:
            calls = spy(s)
            s._backend.runtime.record_status = 700
            s.infer(lambda: ran.append(1))
    assert not ran and len(calls) == 1
    inf = s.trace.inferences
    assert len(inf) == 41
    assert inf["error"].iloc[-1] == "RuntimeError: cuEventRecord failed: stand-in status 700"
    assert inf["gpu_ms"].iloc[-1] != inf["gpu_ms"].iloc[-1]  # NaN: no GPU time


def test_a_failing_end_event_in_the_timed_call_writes_a_row_and_raises(tmp_path, impl):
    with pytest.raises(RuntimeError, match="stand-in status 719"):
        with standin(tmp_path) as s:
            rt = s._backend.runtime
            calls = spy(s)
            s.infer(lambda: setattr(rt, "record_status", 719))  # the end event fails
    assert len(calls) == 1
    inf = s.trace.inferences
    assert len(inf) == 41 and "status 719" in inf["error"].iloc[-1]


def test_spans_inside_a_timed_inference_are_timed_too(tmp_path, impl):
    def model():
        with s.span("inner"):
            s.clock.spin_ns(100_000)

    with standin(tmp_path) as s:
        calls = spy(s)
        for _ in range(20):
            s.infer(model)
    assert len(calls) >= 18
    inf = s.trace.inferences.iloc[40:]
    assert (inf["kind"] == "span").sum() == 20 and (inf["kind"] == "inference").sum() == 20
    spans, outer = inf[inf["kind"] == "span"], inf[inf["kind"] == "inference"]
    assert (spans["gpu_ms"].to_numpy() <= outer["gpu_ms"].to_numpy() + 1e-3).all()


# -- where the C path puts the events when no stream is given (streams.py's contract) --------
@pytest.fixture
def no_framework(monkeypatch):
    import sys

    from gpuwatch import streams

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(streams, "_torch_stream", None)
    return monkeypatch


def test_the_timed_call_follows_torchs_current_stream_through_its_getter(tmp_path, impl,
                                                                         no_framework):
    import sys

    raw = [0x99]
    t = fake_torch(lambda: raw[0], initialized=True)
    with standin(tmp_path) as s:
        calls = spy(s)  # (no framework yet: the legacy default stream, in C)
        no_framework.setitem(sys.modules, "torch", t)
        for i in range(40):
            if i == 20:
                raw[0] = 0x123  # the program switched torch's current stream
            s.infer(lambda: None)
    assert len(calls) >= 36
    assert s._timer._torch_path == ("getter" if impl == "c" else None)
    inf = s.trace.inferences
    assert (inf["stream_source"].iloc[:40] == "default").all()
    assert (inf["stream"].iloc[:40] == 0).all()
    assert (inf["stream_source"].iloc[40:] == "torch").all()
    assert inf["stream"].iloc[40:60].tolist() == [0x99] * 20
    assert inf["stream"].iloc[60:].tolist() == [0x123] * 20
    assert len(t.asked) >= 40 and set(t.asked) == {0}  # every region asked, for the device
    meta = s.trace.meta["regions"]
    if impl == "c":
        assert meta["torch_stream_read"] == "getter" and meta["c_path_regions"] >= 36 + 10
    else:  # (NA: no C path)
        assert meta["torch_stream_read"] is None and meta["c_path_regions"] is None


def test_torch_started_before_the_session_is_learnt_at_its_start(tmp_path, impl, no_framework):
    """How the C path reads torch's stream is learnt when the session starts, not in the
    program's first region (on the H100 that made its call -> result 30 ms longer)."""
    import sys

    t = fake_torch(0x77, initialized=True)
    no_framework.setitem(sys.modules, "torch", t)
    with standin(tmp_path) as s:
        learnt = s._timer._torch_path
        asked = len(t.asked)
        calls = spy(s)
        for _ in range(20):
            s.infer(lambda: None)
    assert learnt == ("getter" if impl == "c" else None)
    assert asked >= (1 if impl == "c" else 0)
    assert len(calls) >= 18
    inf = s.trace.inferences
    assert (inf["stream_source"] == "torch").all() and (inf["stream"] == 0x77).all()


def test_a_framework_the_c_path_cannot_read_is_left_to_python(tmp_path, impl, no_framework):
    """CuPy imported: its current stream is asked in Python (streams.current), every region."""
    import sys
    import types

    from tests.test_streams import CupyStream

    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(get_current_stream=lambda: CupyStream(0x77))
    with standin(tmp_path) as s:
        calls = spy(s)
        no_framework.setitem(sys.modules, "cupy", cp)
        for _ in range(10):
            s.infer(lambda: None)
    assert len(calls) == (0 if impl == "c" else 10)
    inf = s.trace.inferences.iloc[40:]
    assert set(inf["stream_source"]) == {"cupy"} and set(inf["stream"]) == {0x77}


@pytest.mark.parametrize("given", [0x2000, "device"])
def test_a_session_stream_on_the_timed_call(tmp_path, impl, no_framework, given):
    with gpuwatch.session("standin", tmp_path / "t.parquet", check_every=0, sampler="off",
                          stream=given) as s:
        c_regions = getattr(s._timer.fast, "fast_regions", None)
        assert (c_regions is not None) == (impl == "c")
        for _ in range(80):
            s.infer(lambda: None)
        s.infer(lambda: None, stream=0x3000)  # given per call: that one
    inf = s.trace.inferences
    if given == "device":  # the whole device, synchronised around: never the C path
        assert impl == "python" or s._timer.fast.fast_regions == 0
        assert set(inf["stream_source"].iloc[:80]) == {"device"}
        assert inf["stream_source"].iloc[80] == "argument"
        return
    assert impl == "python" or s._timer.fast.fast_regions >= 50  # (the first take new
    # event pairs: Python)
    assert (inf["stream"].iloc[:80] == 0x2000).all()
    assert set(inf["stream_source"].iloc[:80]) == {"session"}
    assert inf["stream"].iloc[80] == 0x3000 and inf["stream_source"].iloc[80] == "argument"


def test_the_timed_call_keeps_regions_in_order_with_the_writer_thread_resolving(tmp_path, impl):
    """The writer's thread resolves (background_poll) while the program's thread (its C call,
    or the Python reference) appends."""
    import threading

    with standin(tmp_path) as s:
        spy(s)
        stop = threading.Event()

        def resolver():
            while not stop.is_set():
                s._timer.background_poll()

        th = threading.Thread(target=resolver)
        th.start()
        try:
            for _ in range(3000):
                s.infer(lambda: None)
        finally:
            stop.set()
            th.join()
    inf = s.trace.inferences
    assert len(inf) == 3040 and inf["region_id"].is_monotonic_increasing
    assert inf["region_id"].tolist() == list(range(3040)) and inf["error"].isna().all()
    assert s.trace.meta["regions"]["event_pairs"] <= 1100


def test_open_and_close_keep_a_row_when_an_event_fails(tmp_path, impl):
    """RegionTimer.open/close (NVTX push/pop) in C: a failing start event raises with a row,
    nothing is left open; a failing end event raises with a row; an error passed to close()
    is the row's."""
    labels = ("c", None, 0, False, None)
    with pytest.raises(RuntimeError, match="status 719"):
        with standin(tmp_path) as s:
            calls, t, rt = spy(s), s._timer, s._backend.runtime
            for _ in range(5):
                t.close(t.open("inference", "ok", labels))
            t.close(t.open("inference", "err", labels), ValueError("bad"))
            rt.record_status = 700
            with pytest.raises(RuntimeError, match="status 700"):
                t.open("inference", "start fails", labels)
            assert getattr(t.fast, "is_open", None) is None and t.depth == 0
            rt.record_status = 0
            p = t.open("inference", "end fails", labels)
            rt.record_status = 719
            t.close(p)
    assert len(calls) == 8  # all on the engine's own path
    inf = s.trace.inferences.iloc[40:]
    assert inf["name"].tolist() == ["ok"] * 5 + ["err", "start fails", "end fails"]
    assert inf["error"].iloc[:5].isna().all() and inf["error"].iloc[5] == "ValueError: bad"
    assert "status 700" in inf["error"].iloc[6] and "status 719" in inf["error"].iloc[7]


def test_two_threads_timing_at_once_leave_the_timer_consistent(tmp_path, impl):
    """Two program threads in s.infer at once (an inference server's workers): every region is
    kept, with its own name, and the open-region count returns to zero (the C path counts it
    up and down; it does not set it)."""
    import threading
    import time

    with standin(tmp_path) as s:
        spy(s)
        depths = []

        def worker(name):
            def model():
                time.sleep(0.0002)  # (releases the GIL: the other thread enters meanwhile)
                depths.append(s._timer.depth)
            model.__qualname__ = name
            for _ in range(300):
                s.infer(model)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s._timer.depth == 0
    assert min(depths) >= 1 and max(depths) == 2  # (2: both threads were inside at once)
    inf = s.trace.inferences.iloc[40:]
    assert len(inf) == 600 and inf["error"].isna().all()
    assert inf["name"].value_counts().to_dict() == {"w0": 300, "w1": 300}
    assert inf["region_id"].is_unique


def test_a_ctrl_c_while_rows_move_to_the_writer_waits_until_they_have(tmp_path, impl):
    """Ctrl-C lands while the program's thread hands resolved rows to the writer: the session
    holds it until the move is done, then raises it; no row is lost."""
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    done = 0
    with pytest.raises(KeyboardInterrupt):
        with standin(tmp_path) as s:
            spy(s)
            sink, fired = s._timer._sink, []

            def interrupted_sink(table, columns):
                if not fired:
                    fired.append(1)
                    signal.raise_signal(signal.SIGINT)  # lands before the next line runs
                sink(table, columns)

            s._timer._sink = interrupted_sink
            for _ in range(200):
                s.infer(lambda: None)
                done += 1
    assert fired and 0 < done < 200
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    inf = s.trace.inferences
    assert len(inf) == 40 + done and inf["region_id"].is_unique
    assert s.trace.meta["status"] == "interrupted"


def test_torch_imported_without_cuda_keeps_the_default_stream(tmp_path, impl, no_framework):
    """A program that imports torch but runs its GPU work elsewhere (TensorRT, with torch on
    the CPU): the C path stays on the legacy default stream while torch.cuda has not started,
    and follows torch's stream once it has."""
    import sys
    t = fake_torch(0x55)
    cuda = t.cuda
    no_framework.setitem(sys.modules, "torch", t)
    with standin(tmp_path) as s:
        calls = spy(s)
        for _ in range(40):
            s.infer(lambda: None)
        before = len(calls)
        cuda._initialized = True  # the program starts CUDA in torch
        for _ in range(40):
            s.infer(lambda: None)
    assert before >= 36 and len(calls) >= before + 30
    inf = s.trace.inferences
    assert set(inf["stream_source"].iloc[:80]) == {"default"}
    assert set(inf["stream_source"].iloc[80:]) == {"torch"} and set(inf["stream"].iloc[80:]) == {0x55}


CTRL_C_PROGRAM = """
import sys
import gpuwatch
n = 0
try:
    with gpuwatch.session("standin", out=sys.argv[1], sampler="off") as s:
        print("started", s._timer._c_path, flush=True)
        while True:
            s.infer(abs, n)
            n += 1
except KeyboardInterrupt:
    print(n, flush=True)
    raise
"""


@pytest.mark.parametrize("wait_s", [0.2, 0.6])
def test_ctrl_c_on_a_tight_loop_keeps_every_completed_region(tmp_path, impl, wait_s):
    """A program timing as fast as it can, stopped by Ctrl-C (SIGINT at its default): it sees
    KeyboardInterrupt, and the trace holds every region it completed (on the stand-in
    device: on the C path, its C event record, no Python inside; and on the Python
    reference, which the child inherits through GPUWATCH_NATIVE)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "c.parquet"
    p = subprocess.Popen([sys.executable, "-c", CTRL_C_PROGRAM, str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout is not None and p.stdout.readline().split() == ["started", str(impl == "c")]
    time.sleep(wait_s)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, err
    done = int(stdout.split()[-1])
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "interrupted"
    inf = tr.inferences
    # (every completed region; one more if the interrupt landed inside a region, on the slow
    # path between its events (its row says so), or as s.infer returned: its work ran, the
    # program's count did not see it)
    assert done <= len(inf) <= done + 1
    assert inf["region_id"].tolist() == list(range(len(inf)))
    errors = inf["error"].tolist()
    assert inf["error"].iloc[:-1].isna().all(), [e for e in errors if isinstance(e, str)][:3]
    if isinstance(errors[-1], str):  # (seen on the H100 host, 1 run in 3)
        assert errors[-1].startswith("KeyboardInterrupt") and len(inf) == done + 1
