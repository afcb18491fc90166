"""regions/_native.c and the event calls built on it, against C-callable stand-ins for the CUDA
driver's functions (ctypes callbacks): the right pointers arrive, the status comes back."""

from __future__ import annotations

import ctypes
import shutil
import sysconfig
import time
from pathlib import Path

import pytest

from gpuwatch.bindings.cuda import _EventCalls, native_module

_native = native_module()

P = ctypes.c_void_p
REC = ctypes.CFUNCTYPE(ctypes.c_int, P, P)
QUERY = ctypes.CFUNCTYPE(ctypes.c_int, P)
ELAPSED = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_float), P, P)


class FakeDriver:
    """cuEventRecord/Query/ElapsedTime as C function pointers that log their arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.status = 0

        def rec(ev, stream):
            self.calls.append(("record", ev, stream))
            return self.status

        def query(ev):
            self.calls.append(("query", ev))
            return self.status

        def elapsed(ms, a, b):
            self.calls.append(("elapsed", a, b))
            ms[0] = 1.25
            return self.status

        self._keep = (REC(rec), QUERY(query), ELAPSED(elapsed))  # alive while in use
        addr = [ctypes.cast(f, P).value for f in self._keep]
        # foreign function pointers, as ctypes.PyDLL's attributes are
        self.cuEventRecord = ctypes.CFUNCTYPE(ctypes.c_int)(addr[0])
        self.cuEventQuery = ctypes.CFUNCTYPE(ctypes.c_int)(addr[1])
        self.cuEventElapsedTime = ctypes.CFUNCTYPE(ctypes.c_int)(addr[2])
        self.addr = addr


def test_the_extension_is_built_where_a_c_compiler_is():
    """CI has a compiler: the C path is the one measured on the GPU, so it must be built."""
    have_cc = shutil.which(sysconfig.get_config_var("CC").split()[0] or "cc") is not None
    have_headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not (have_cc and have_headers):
        pytest.skip("no C compiler or Python headers here: ctypes is used")
    assert _native is not None


@pytest.mark.skipif(_native is None, reason="gpuwatch/regions/_native.c was not built")
def test_native_calls_pass_pointers_and_return_the_status():
    drv = FakeDriver()
    rec, query, el = drv.addr
    assert _native.status2(rec, 0xABC0, 0) == 0
    assert _native.status(query, 0xABC0) == 0
    assert _native.elapsed(el, 0x10, 0x20) == pytest.approx(1.25)
    drv.status = 600  # CUDA_ERROR_NOT_READY
    assert _native.status(query, 0xABC0) == 600
    assert _native.elapsed(el, 0x10, 0x20) == 600  # the status, not a float
    assert drv.calls[:3] == [("record", 0xABC0, None), ("query", 0xABC0),
                             ("elapsed", 0x10, 0x20)]  # (ctypes gives a null pointer as None)


@pytest.mark.skipif(_native is None, reason="gpuwatch/regions/_native.c was not built")
def test_native_calls_reject_bad_arguments():
    with pytest.raises(ValueError, match="null function pointer"):
        _native.status(0, 1)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        _native.status2(1, 2)
    with pytest.raises(TypeError):
        _native.status(1, "not a pointer")


@pytest.mark.parametrize("use_native", [True, False])
def test_event_calls_through_either_path(use_native):
    if use_native and _native is None:
        pytest.skip("gpuwatch/regions/_native.c was not built")
    drv = FakeDriver()
    calls = _EventCalls(drv, use_native=use_native)
    assert calls.native is use_native
    assert calls.record(0x1000, 0x2000) == 0
    assert calls.query(0x1000) == 0
    ms = calls.elapsed(0x1000, 0x3000)
    assert ms.__class__ is float and ms == pytest.approx(1.25)
    drv.status = 400  # CUDA_ERROR_INVALID_HANDLE
    assert calls.record(0x1000, 0) == 400 and calls.elapsed(1, 2) == 400
    assert drv.calls[:3] == [("record", 0x1000, 0x2000), ("query", 0x1000),
                             ("elapsed", 0x1000, 0x3000)]


def test_nested_call_sends_calls_to_outer_until_a_region_is_open():
    native = pytest.importorskip("gpuwatch.regions._native")

    class Module:
        def orig(self, *args, **kwargs):
            return ("orig", self, args, kwargs)

    def outer(fn, args, kwargs):  # the call as data: the function, (self, *args), kwargs
        return ("outer", fn, args, kwargs)

    hook = native.NestedCall(Module.orig, outer)
    Module.__call__ = hook
    m = Module()
    assert m(1, x=2) == ("outer", Module.orig, (m, 1), {"x": 2})
    assert m() == ("outer", Module.orig, (m,), {})
    hook.depth = 1
    assert m(1, x=2) == ("orig", m, (1,), {"x": 2})
    assert m.__call__(3) == ("orig", m, (3,), {})  # bound through attribute access too
    assert Module.__call__ is hook and hook.orig is Module.orig and hook.outer is outer
    with pytest.raises(TypeError):
        native.NestedCall(1, outer)
    with pytest.raises(TypeError):
        native.NestedCall(Module.orig)


def test_nested_call_errors_pass_through():
    native = pytest.importorskip("gpuwatch.regions._native")

    def boom(*args, **kwargs):
        raise KeyError("inside")

    class Module:
        __call__ = native.NestedCall(boom, boom)

    with pytest.raises(KeyError, match="inside"):
        Module()()
    Module.__call__.depth = 1
    with pytest.raises(KeyError, match="inside"):
        Module()(1, k=2)


def _gaps(native, counts=None, names=None):
    from gpuwatch.labels import GAP_EDGES_MS, GAP_LABELS

    return native.GapRegions(GAP_EDGES_MS, GAP_LABELS, {} if counts is None else counts,
                             {} if names is None else names, "inference")


def test_gap_regions_label_a_region_by_the_gap_before_it():
    """GapRegions.labels(): the gap since `last_end_ns` (the host clock, CLOCK_MONOTONIC, as
    perf_counter_ns), its bucket as gap_condition names it, and an iteration per bucket."""
    native = pytest.importorskip("gpuwatch.regions._native")
    from gpuwatch.labels import gap_condition

    g = _gaps(native)
    assert g.labels() == ("first", None, 0, True, None)
    for gap_ms, it in ((3.0, 0), (3.0, 1), (20.0, 0), (0.2, 0), (700.0, 0), (3.0, 2)):
        g.last_end_ns = time.perf_counter_ns() - int(gap_ms * 1e6)
        cond, gap, iteration, warmup, err = g.labels()
        assert gap_ms <= gap < gap_ms + 5 and not warmup and err is None
        assert cond == gap_condition(gap) == gap_condition(gap_ms) and iteration == it
    g.ended()
    assert 0 <= time.perf_counter_ns() - g.last_end_ns < 1e9


def test_gap_regions_refuse_bad_arguments():
    native = pytest.importorskip("gpuwatch.regions._native")
    with pytest.raises(ValueError, match="one label more"):
        native.GapRegions((0.0, 1.0), ("a", "b"), {}, {}, "inference")
    with pytest.raises(TypeError):
        native.GapRegions((0.0,), ("a", 2), {}, {}, "inference")
    g = _gaps(native)
    g.live = 1
    with pytest.raises(RuntimeError, match="before arm"):
        g.begin("nvtx:x", "nvtx")
    with pytest.raises(TypeError, match="pop"):
        native.RangeHook(g, print, "nvtx:", None)
    with pytest.raises(TypeError):
        native.RangeHook(object(), print, None, None)


def test_gap_regions_time_ranges_and_calls_through_the_timer_it_is_given():
    """With no FastRegion, begin/end go to open_slow/close_slow and call() to `timed`, with the
    labels; nested ranges only count depth; the counts dict is the caller's."""
    native = pytest.importorskip("gpuwatch.regions._native")
    log = []
    counts, names = {"nvtx": 0}, {}
    g = _gaps(native, counts, names)

    def timed(kind, name, labels, fn, args, kwargs, handle, source):
        log.append(("timed", name, labels[0], kwargs, handle, source))
        return fn(*args, **(kwargs or {}))

    g.arm(timed, None, lambda kind, name, labels: ("p", name, labels[2]),
          lambda p, error: log.append(("close", p, error)))
    assert g.begin("nvtx:a", "nvtx") is False  # not live yet
    g.live = 1
    assert g.begin("nvtx:a", "nvtx") is True and g.is_open and g.depth == 1
    assert g.begin("nvtx:b", "nvtx") is False and g.depth == 2  # nested
    g.end(None)
    g.end(None)
    assert not g.is_open and g.depth == 0 and log == [("close", ("p", "nvtx:a", 0), None)]
    # (the gap label is the host time since the last region ended: set just before each
    # call, so that a loaded machine cannot move it out of its bucket, as CI's did once)
    g.last_end_ns = time.perf_counter_ns()
    assert g.call("call:M", "call", lambda x, k=0: x + k, (1,), {"k": 2}) == 3
    assert log[-1] == ("timed", "call:M", "gap 0-1 ms", {"k": 2}, None, None)
    assert counts == {"nvtx": 1, "call": 1}

    class M:
        def orig(self, x):
            return ("orig", x)

    hook = native.NestedCall(M.orig, lambda fn, args, kwargs: ("outer", args[1:]), g)
    M.__call__ = hook
    assert M()(5) == ("outer", (5,))  # a class not named yet: Python names it
    names[M] = "call:M"
    g.last_end_ns = time.perf_counter_ns()
    assert M()(6) == ("orig", 6) and log[-1][:3] == ("timed", "call:M", "gap 0-1 ms")
    assert g.begin("nvtx:c", "nvtx") is True  # one depth: GapRegions'
    assert hook.depth == 1 and g.mine() and M()(7) == ("orig", 7) and len(log) == 3
    with pytest.raises(AttributeError):  # (GapRegions alone opens and closes its regions)
        hook.depth = 0
    g.end(None)
    assert hook.depth == 0 and not g.mine() and counts == {"nvtx": 2, "call": 2}
    # a stream given (TensorRT's): its handle and where it came from go to the timer
    assert g.call("call:E", "call", lambda: 4, (), None, 0x1234, "argument") == 4
    assert log[-1] == ("timed", "call:E", log[-1][2], None, 0x1234, "argument")
    with pytest.raises(TypeError):
        g.call("call:E", "call", lambda: 4, (), None, "0x1234", "argument")


def _fast_region(native, free, slow, record):
    """A FastRegion ready to take its C path (nothing due, pairs free), with `slow` as its
    slow path and `record` (a REC callback) as cuEventRecord."""
    addr = ctypes.cast(record, P).value
    fs = native.FastRegion(addr, slow, lambda *a: None, free, [], ("torch", "cupy"))
    fs.batch, fs.next_check, fs.due_ns = 16, 10**9, 2**62
    return fs


def test_one_poll_period_for_the_c_path_and_its_python_twin():
    """gpuwatch.regions.timer.POLL_NS is the C path's own default too (it was 100 ms in C, 1 s in
    Python, which always set its own)."""
    native = pytest.importorskip("gpuwatch.regions._native")
    from gpuwatch.regions.timer import POLL_NS

    rec = REC(lambda ev, stream: 0)
    assert native.POLL_NS == POLL_NS
    assert _fast_region(native, [], lambda *a: None, rec).poll_ns == POLL_NS


def test_a_free_list_emptied_while_the_stream_is_looked_up_takes_the_slow_path():
    """The stream getter is Python: it may run anything, another thread included, and take the
    free event pairs. The C path reads the free list after it (it read the size before, then
    took an item past the end: a crash, or a pair that was not free)."""
    native = pytest.importorskip("gpuwatch.regions._native")
    free = [(1, 2)]
    slow_calls = []
    recorded = []
    rec = REC(lambda ev, stream: recorded.append((ev, stream)) or 0)

    def slow(*args):
        slow_calls.append(args[1])
        return "slow"

    fs = _fast_region(native, free, slow, rec)

    def getter(device):
        free.clear()  # (as a thread that took the last pair would)
        return 7

    fs.getter, fs.device = getter, 0
    assert fs("inference", "x", None, lambda: "fast", (), None, None, None) == "slow"
    assert slow_calls == ["x"] and not recorded
    free.append((1, 2))  # with a pair left, the C path records both events on the stream
    fs.getter = lambda device: 7
    assert fs("inference", "y", None, lambda: "fast", (), None, None, None) == "fast"
    assert recorded == [(1, 7), (2, 7)] and slow_calls == ["x"]


FAKE_C10 = r"""
#include <stdint.h>
typedef struct { int8_t type; int8_t index; int64_t id; } stream_t;  /* c10::cuda::CUDAStream */
stream_t good_current(int8_t device) { stream_t s = {1, device, 42}; return s; }
void *good_handle(const stream_t *s) { return (void *)(intptr_t)(s->id * 1000 + s->index); }
stream_t crash_current(int8_t device) { volatile int *p = 0; *p = device; stream_t s = {0}; return s; }
stream_t stuck_current(int8_t device) { for (;;) ; }
"""


def test_the_c10_stream_path_is_first_tried_in_a_child_that_may_crash():
    """torch's current stream read through c10 calls functions found by name with an assumed
    calling convention: c10_probe makes the first call in a forked child, so that a wrong guess
    (here a function that crashes) ends the child, and the program takes torch's getter."""
    native = pytest.importorskip("gpuwatch.regions._native")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src, lib = Path(d) / "c10.c", Path(d) / "libfakec10.so"
        src.write_text(FAKE_C10)
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
        c10 = ctypes.CDLL(str(lib))
        addr = {n: ctypes.cast(getattr(c10, n), P).value
                for n in ("good_current", "good_handle", "crash_current", "stuck_current")}
        rec = REC(lambda ev, stream: 0)
        fs = _fast_region(native, [], lambda *a: None, rec)
        assert fs.c10_probe(42003) is False  # (not in use: nothing to try)
        fs.use_c10(addr["good_current"], addr["good_handle"], 3)
        assert fs.c10_probe(42003) is True and fs.c10_stream() == 42003
        assert fs.c10_probe(42004) is False  # (another stream than torch's: not used)
        fs.use_c10(addr["crash_current"], addr["good_handle"], 3)
        assert fs.c10_probe(42003) is False  # the child crashed; this process goes on
        fs.use_c10(addr["stuck_current"], addr["good_handle"], 3)
        t0 = time.monotonic()
        assert fs.c10_probe(42003) is False  # a child that never answers is killed at 2 s
        assert 1.5 < time.monotonic() - t0 < 10
        fs.use_c10(0, 0, 0)


@pytest.mark.slow
def test_the_stub_is_the_built_module(tmp_path):
    """regions/_native.pyi (and analysis/_segment.pyi) against the built extensions (mypy's
    stubtest, on a copy laid out as installed, as .ci/typecheck does): every name, member and
    signature in both."""
    import os
    import subprocess
    import sys

    pytest.importorskip("gpuwatch.regions._native")
    pytest.importorskip("mypy.stubtest")
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "gpuwatch", tmp_path / "gpuwatch",
                    ignore=shutil.ignore_patterns("__pycache__", "bindings"))
    shutil.copytree(root / "bindings", tmp_path / "gpuwatch" / "bindings",
                    ignore=shutil.ignore_patterns("__pycache__"))
    modules = ["gpuwatch.regions._native"]
    try:
        import gpuwatch.analysis._segment  # noqa: F401  (built beside it, from setup.py)
        modules.append("gpuwatch.analysis._segment")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases",
                        *modules], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("value, off", [("0", True), (" OFF ", True), ("false", True),
                                        ("no", True), ("1", False), ("", False)])
def test_gpuwatch_native_turns_the_extension_off(monkeypatch, value, off):
    """GPUWATCH_NATIVE=0 (or false, off, no; any case) leaves the built extension unused:
    every caller then takes the Python implementation (docs/cli.md, Environment)."""
    pytest.importorskip("gpuwatch.regions._native")
    monkeypatch.setenv("GPUWATCH_NATIVE", value)
    assert (native_module() is None) == off


def test_gpuwatch_native_refuses_a_value_it_does_not_know(monkeypatch):
    # (GPUWATCH_NATIVE=disable read as "on" would leave the C path on unawares)
    from gpuwatch.errors import UsageError

    monkeypatch.setenv("GPUWATCH_NATIVE", "disable")
    with pytest.raises(UsageError, match="GPUWATCH_NATIVE takes 0 .* got 'disable'"):
        native_module()
