"""gpuwatch.autoregions in-process: the hooks `gpuwatch run` installs, on a simulated GPU, with
a module shaped like torch.nn (Module.__call__ defined on the class, as torch defines it)."""

from __future__ import annotations

import math
import sys
import time
import types

import pandas as pd
import pytest

import gpuwatch
from gpuwatch import autoregions
from gpuwatch.autoregions import AutoRegions
from gpuwatch.labels import gap_condition
from tests.helpers import fake_torch


def test_outermost_module_calls_are_regions_and_the_hook_comes_off(tmp_path, impl):
    torch = fake_torch()
    original = torch.nn.Module.__dict__["__call__"]
    net = torch.Net()
    with gpuwatch.session("sim:t4", out=tmp_path / "t.parquet") as s:
        regions = AutoRegions(s, ("call",))
        regions._hook_torch_modules(torch)
        assert torch.nn.Module.__dict__["__call__"] is not original
        # where the C module was built, calls go through it (gpuwatch/regions/_autoregions.c)
        assert (regions._hook is not None) == (regions._native is not None) == (impl == "c")
        assert net(1, scale=10) == 30  # arguments and the result pass through
        assert net(2) == 4
        try:
            net(-1)
        except ValueError:
            pass
        regions.enabled = False  # the original again: nothing timed, nothing in between
        assert torch.nn.Module.__dict__["__call__"] is original
        assert net(3) == 5
        regions.enabled = True
        net(4)
        regions.uninstall()
        assert torch.nn.Module.__dict__["__call__"] is original
        net(5)
    inf = gpuwatch.load(tmp_path / "t.parquet").inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["call:Net"] * 4  # not the Layers inside, not 3 or 5
    assert inf["error"].tolist()[2].startswith("ValueError: negative input")
    assert inf["warmup"].tolist() == [True, False, False, False]
    assert regions.counts == {"call": 4}


def test_gap_conditions():
    assert gap_condition(None) == "first"
    assert gap_condition(0.2) == "gap 0-1 ms" and gap_condition(1.0) == "gap 1-5 ms"
    assert gap_condition(20) == "gap 5-50 ms" and gap_condition(9999) == "gap >= 5000 ms"
    assert gap_condition(-0.1) == "gap 0-1 ms"  # (clock noise: never a gap below zero)


def fake_nvtx() -> types.ModuleType:
    mod = types.ModuleType("nvtx")
    mod.stack = []  # type: ignore[attr-defined]
    mod.push_range = lambda message="range", **k: mod.stack.append(message)  # type: ignore
    mod.pop_range = lambda: mod.stack.pop()  # type: ignore[attr-defined]
    return mod


def test_nvtx_ranges_and_module_calls_on_the_stand_in_device(tmp_path, impl, monkeypatch):
    """On the stand-in device (its C-callable event record): on the C path (regions/_native.c),
    NVTX ranges open and close in C (begin/end) and module calls are one C call; on either
    engine, nesting, a range around a call, an error inside a range, and the slow path's
    regions in between keep their order and names."""
    import sys

    from gpuwatch import streams

    for name in ("torch", "cupy"):  # (a real torch with CUDA started: its stream, not 0)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(streams, "_torch_stream", None)
    torch, nvtx = fake_torch(), fake_nvtx()
    net = torch.Net()
    with gpuwatch.session("standin", tmp_path / "t.parquet", check_every=0,
                          sampler="off") as s:
        fast = s._timer.fast
        c = impl == "c"
        assert hasattr(fast, "begin") == c
        regions = AutoRegions(s, ("nvtx", "call"))
        regions._hook_nvtx(nvtx)
        regions._hook_torch_modules(torch)
        in_c = []
        for i in range(60):
            nvtx.push_range("step")
            in_c.append(c and fast.is_open is not None)  # (not while the pool fills, nor
            # when due)
            nvtx.push_range("inner")  # nested: counted, not timed on its own
            assert net(i) == i + 2  # inside a range: not a region of its own
            nvtx.pop_range()
            nvtx.pop_range()
            assert getattr(fast, "is_open", None) is None and s._timer.depth == 0
        for i in range(60):
            net(i)
        n_fast = fast.fast_regions if c else None
        nvtx.push_range("broken")
        regions.end(ValueError("inside"))  # what annotate's __exit__ passes on an error
        nvtx.stack.pop()
        regions.uninstall()
    if c:
        assert sum(in_c[20:]) >= 35 and n_fast is not None and n_fast >= 90
    assert nvtx.stack == []
    inf = s.trace.inferences
    assert inf["name"].tolist() == ["nvtx:step"] * 60 + ["call:Net"] * 60 + ["nvtx:broken"]
    assert inf["region_id"].tolist() == list(range(121))
    assert inf["error"].iloc[:120].isna().all() and inf["error"].iloc[120] == "ValueError: inside"
    assert (inf["gpu_ms"] >= 0).all() and set(inf["stream_source"]) == {"default"}
    assert regions.counts == {"nvtx": 61, "call": 60}


@pytest.mark.parametrize("device", ["standin", "sim:t4"])
def test_ranges_are_labelled_by_the_gap_before_them(tmp_path, impl, device, monkeypatch):
    """Each range's gap is the host time since the last region ended, its condition that
    gap's bucket, its iteration counted per condition; the library's results pass through,
    a range inside a range is counted, not timed, and the message may be a keyword or
    missing. On the stand-in device the C timed path opens the ranges; on sim, Python."""
    for name in ("torch", "cupy"):  # (a real torch with CUDA started: its stream, not 0)
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch = fake_torch()
    nvtx = torch.cuda.nvtx
    sleeps = [0, 0.002, 0.012, 0, 0.002, 0.012, 0.060]
    with gpuwatch.session(device, tmp_path / "t.parquet", check_every=0,
                          sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))
        regions._hook_torch_nvtx(torch)
        assert regions._g.__class__.__name__ == ("GapRegions" if impl == "c" else "_Gaps")
        for i, pause in enumerate(sleeps):
            time.sleep(pause)
            assert nvtx.range_push("step") == 0
            assert nvtx.range_push(msg=f"inner {i}") == 1  # nested: counted, not timed
            assert nvtx.range_pop() == 1
            assert nvtx.range_pop() == 0
        nvtx.range_push(msg=None)  # no message: "range"
        nvtx.range_pop()
        kept = nvtx.range_push, nvtx.range_pop  # (as `from torch.cuda.nvtx import ...`)
        regions.uninstall()
        assert nvtx.range_push is not kept[0]
        assert kept[0]("after") == 0  # a hook the program kept: untimed once uninstalled
        assert kept[1]() == 0
    assert nvtx.stack == []
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["nvtx:step"] * 7 + ["nvtx:range"]
    gaps = inf["gap_ms"].tolist()
    assert math.isnan(gaps[0]) and inf["condition"].iloc[0] == "first"
    assert inf["warmup"].tolist() == [True] + [False] * 7
    for pause, gap in zip(sleeps[1:], gaps[1:]):
        assert pause * 1e3 <= gap < pause * 1e3 + 50  # (a busy CI host: generous above)
    assert inf["condition"].tolist()[1:] == [gap_condition(g) for g in gaps[1:]]
    by_cond: dict[str, int] = {}
    for cond, it in zip(inf["condition"], inf["iteration"]):
        assert it == by_cond.get(cond, 0)
        by_cond[cond] = it + 1
    assert regions.counts == {"nvtx": 8}


def test_a_failing_end_event_keeps_the_row_and_still_pops(tmp_path, impl, monkeypatch):
    """The range's end event fails (a sticky GPU error): the row says why, the error reaches
    the program at its pop, and the library's pop still ran (the NVTX stack stays balanced)."""
    for name in ("torch", "cupy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch = fake_torch()
    nvtx = torch.cuda.nvtx
    with gpuwatch.session("standin", tmp_path / "t.parquet", check_every=0,
                          sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))
        regions._hook_torch_nvtx(torch)
        for _ in range(3):
            nvtx.range_push("ok")
            nvtx.range_pop()
        nvtx.range_push("broken")
        s._backend.runtime.record_status = 719
        with pytest.raises(RuntimeError, match="719"):
            nvtx.range_pop()
        assert nvtx.stack == [] and regions._g.depth == 0
        s._backend.runtime.record_status = 0
        regions.uninstall()
    inf = gpuwatch.load(tmp_path / "t.parquet").inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["nvtx:ok"] * 3 + ["nvtx:broken"]
    assert "719" in inf["error"].iloc[3] and inf["error"].iloc[:3].isna().all()


def test_module_calls_go_through_c_after_the_first(tmp_path, impl, monkeypatch):
    """A model class's first call names it (Python); later calls are regions in C (with
    GapRegions): arguments, keywords, results and exceptions pass through, submodules and a
    model called inside another are not regions of their own."""
    for name in ("torch", "cupy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch = fake_torch()
    net = torch.Net()
    with gpuwatch.session("standin", tmp_path / "t.parquet", check_every=0,
                          sampler="off") as s:
        regions = AutoRegions(s, ("call",))
        regions._hook_torch_modules(torch)
        outer = torch.Net()
        outer.forward = lambda x: net(x) * 2  # a model calling another: one region
        for i in range(40):
            assert net(i, scale=3) == (i + 2) * 3
        assert outer(1) == 6
        with pytest.raises(ValueError, match="negative"):
            net(-1)
        regions.uninstall()
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["call:Net"] * 42
    assert inf["error"].iloc[:41].isna().all() and "negative" in inf["error"].iloc[41]
    assert regions.counts == {"call": 42} and regions._g.depth == 0
    if impl == "c":  # (not the first: the event pool fills on the slow path)
        assert s.trace.meta["regions"]["c_path_regions"] >= 15


def real_nvtx_shape(enabled: bool) -> types.ModuleType:
    """The nvtx package's annotate as it really is (nvtx 0.2.x): with NVTX off, a
    contextlib.nullcontext that keeps no message and whose decorator returns the function as it
    is; with NVTX on, the message in `attributes`, and a decorator that pushes through the C
    library, not through __enter__."""
    import contextlib

    mod = types.ModuleType("nvtx")
    pushed: list[str] = []
    if not enabled:
        class annotate(contextlib.nullcontext):  # type: ignore[type-arg]
            def __init__(self, *args, **kwargs):
                super().__init__()

            def __call__(self, func):
                return func
    else:
        class annotate:  # type: ignore[no-redef]
            def __init__(self, message=None, color=None, domain=None):
                self.attributes = types.SimpleNamespace(message=message)

            def __enter__(self):
                pushed.append(self.attributes.message)
                return self

            def __exit__(self, *exc):
                pushed.pop()
                return False

            def __call__(self, func):
                if self.attributes.message is None:
                    self.attributes.message = func.__name__

                def inner(*args, **kwargs):
                    pushed.append(self.attributes.message)  # (the C library, not __enter__)
                    try:
                        return func(*args, **kwargs)
                    finally:
                        pushed.pop()
                return inner
    mod.annotate, mod.pushed = annotate, pushed  # type: ignore[attr-defined]
    mod.push_range = lambda message=None, **k: None  # type: ignore[attr-defined]
    mod.pop_range = lambda domain=None: None  # type: ignore[attr-defined]
    return mod


@pytest.mark.parametrize("enabled", [False, True])
def test_the_nvtx_packages_annotate_names_its_ranges_and_decorated_calls(tmp_path, impl,
                                                                         enabled):
    """`with nvtx.annotate("a")`, annotate(message=...), and each call of a function decorated
    with @annotate("d") or @annotate() is a range named after its message (or the function),
    whether NVTX is on or off in the program."""
    nvtx = real_nvtx_shape(enabled)
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))
        regions._hook_nvtx(nvtx)

        @nvtx.annotate("decorated")
        def work(x):
            return x * 2

        @nvtx.annotate()
        def plain(x):
            if x < 0:
                raise ValueError("negative")
            return x

        for i in range(3):
            with nvtx.annotate("ctx"):
                pass
            with nvtx.annotate(message="kw"):
                pass
            assert work(i) == 2 * i and plain(i) == i
        with pytest.raises(ValueError):
            plain(-1)
        regions.uninstall()
    names = s.trace.inferences.sort_values("region_id")["name"].tolist()
    assert names == ["nvtx:ctx", "nvtx:kw", "nvtx:decorated", "nvtx:plain"] * 3 + ["nvtx:plain"]
    assert s.trace.inferences["error"].notna().sum() == 1 and nvtx.pushed == []
    assert regions.counts == {"nvtx": 13}


def test_an_error_in_torchs_nvtx_range_context_is_on_its_row(tmp_path, impl):
    """torch.cuda.nvtx.range pops in a `finally`: the exception passing through is the
    region's error; a range around a handled error elsewhere is not."""
    import contextlib

    torch = fake_torch()
    nvtx = torch.cuda.nvtx

    @contextlib.contextmanager
    def nvtx_range(msg):  # torch's shape: push, yield, pop in a finally
        nvtx.range_push(msg)
        try:
            yield
        finally:
            nvtx.range_pop()

    with gpuwatch.session("sim:t4", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))
        regions._hook_torch_nvtx(torch)
        with pytest.raises(KeyError):
            with nvtx_range("boom"):
                raise KeyError("inside")
        with nvtx_range("fine"):
            pass
        regions.uninstall()
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["nvtx:boom", "nvtx:fine"]
    assert inf["error"].iloc[0].startswith("KeyError") and pd.isna(inf["error"].iloc[1])


def test_another_threads_range_neither_closes_nor_nests_in_the_open_one(tmp_path, impl,
                                                                         monkeypatch):
    """NVTX ranges belong to a thread, and one region is open at a time: while thread A's is
    open, thread B's push and pop are not timed (counted in `concurrent`) and leave A's
    region open until A's own pop."""
    import threading

    for name in ("torch", "cupy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch = fake_torch()
    nvtx = torch.cuda.nvtx
    a_open, b_done = threading.Event(), threading.Event()

    def a():
        nvtx.range_push("A")
        a_open.set()
        b_done.wait(5)
        time.sleep(0.02)
        nvtx.range_pop()

    def b():
        a_open.wait(5)
        nvtx.range_push("B")
        nvtx.range_push("B inner")
        nvtx.range_pop()
        nvtx.range_pop()  # (not A's)
        b_done.set()

    with gpuwatch.session("standin", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))  # (the stand-in: host times are real)
        regions._hook_torch_nvtx(torch)
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        nvtx.range_push("after")  # B's thread is done: any thread opens the next one
        nvtx.range_pop()
        regions.uninstall()
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["nvtx:A", "nvtx:after"]
    a_ms = (inf["host_enqueued_ns"].iloc[0] - inf["host_start_ns"].iloc[0]) / 1e6
    assert 20 <= a_ms <= elapsed_ms  # closed by A's pop, after B's
    # (B's inner range is inside B's own untimed one: one piece of untimed work)
    assert regions.concurrent == 1 and regions._g.depth == 0 and nvtx.stack == []


def test_another_threads_model_calls_are_counted_once_each_not_timed(tmp_path, impl,
                                                                     monkeypatch):
    """While thread A's range is open, thread B's model calls run untimed (torch's own
    __call__), each counted once, not each submodule; once A's range is closed, B's calls
    are regions again."""
    import threading

    for name in ("torch", "cupy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    tn, torch = fake_torch(), fake_torch()
    nvtx = tn.cuda.nvtx
    net = torch.Net()
    a_open, b_done = threading.Event(), threading.Event()

    def a():
        nvtx.range_push("A")
        a_open.set()
        b_done.wait(5)
        nvtx.range_pop()

    def b():
        a_open.wait(5)
        for i in range(5):
            assert net(i) == i + 2
        b_done.set()

    with gpuwatch.session("standin", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx", "call"))
        regions._hook_torch_nvtx(tn)
        regions._hook_torch_modules(torch)
        net(0)  # (names the class: later calls may go through C)
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert regions.concurrent == 5 and not regions._g.busy()
        t = threading.Thread(target=net, args=(1,))  # A's range closed: a region again
        t.start()
        t.join()
        regions.uninstall()
    assert s.trace.inferences.sort_values("region_id")["name"].tolist() == \
        ["call:Net", "nvtx:A", "call:Net"]


def test_a_generator_closed_or_sys_exit_0_inside_a_range_is_no_error(tmp_path, impl):
    """A pop in a `finally` as a generator is closed (GeneratorExit), or as sys.exit(0) passes,
    leaves no error on the row; sys.exit(2) does."""
    import contextlib

    torch = fake_torch()
    nvtx = torch.cuda.nvtx

    @contextlib.contextmanager
    def nvtx_range(msg):
        nvtx.range_push(msg)
        try:
            yield
        finally:
            nvtx.range_pop()

    def frames():
        with nvtx_range("gen"):
            yield 1
            yield 2

    with gpuwatch.session("sim:t4", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx",))
        regions._hook_torch_nvtx(torch)
        g = frames()
        next(g)
        g.close()  # abandoned inside the range
        for code in (0, None, 2):
            with pytest.raises(SystemExit):
                with nvtx_range(f"exit {code}"):
                    sys.exit(code)
        regions.uninstall()
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["nvtx:gen", "nvtx:exit 0", "nvtx:exit None", "nvtx:exit 2"]
    assert inf["error"].isna().tolist() == [True, True, True, False]
    assert inf["error"].iloc[3] == "SystemExit: 2"


def test_gap_regions_alone_own_the_open_region(tmp_path, impl, monkeypatch):
    """GapRegions alone opens and closes the hooks' regions: its depth and owner are read-only,
    mine() is true only on the thread whose region is open, a TensorRT call on its own stream
    is one region on that stream (nested in a range: not one), and close_open() ends a range
    left open however deeply, from another thread (the program ended inside it)."""
    import threading
    from pathlib import Path

    for name in ("torch", "cupy", "tensorrt"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "programs" / "standins"))
    import tensorrt as trt  # (the stand-in: TensorRT 10's call shape)

    tn = fake_torch()
    nvtx = tn.cuda.nvtx
    ctx = trt.ICudaEngine("detector.plan").create_execution_context()
    with gpuwatch.session("standin", tmp_path / "t.parquet", sampler="off") as s:
        regions = AutoRegions(s, ("nvtx", "call"))
        regions._hook_torch_nvtx(tn)
        regions._hook_tensorrt(trt)
        g = regions._g
        for field in ("depth", "owner"):
            with pytest.raises(AttributeError):
                setattr(g, field, 1)
        assert ctx.execute_async_v3(0x7000) and g.depth == 0 and not g.mine()
        nvtx.range_push("outer")
        nvtx.range_push("inner")
        seen: list[bool] = []
        t = threading.Thread(target=lambda: seen.append(g.mine()))
        t.start()
        t.join()
        assert g.mine() and seen == [False] and g.depth == 2
        assert ctx.execute_async_v3(0x7000)  # nested in the range: not a region of its own
        t = threading.Thread(target=regions.close_open, args=(KeyboardInterrupt(),))
        t.start()
        t.join()
        assert g.depth == 0 and not g.mine() and not g.is_open
        regions.uninstall()
    inf = s.trace.inferences.sort_values("region_id")
    assert inf["name"].tolist() == ["call:detector.plan", "nvtx:outer"]
    assert inf["stream"].iloc[0] == 0x7000 and inf["stream_source"].iloc[0] == "argument"
    assert inf["error"].iloc[1] == "KeyboardInterrupt" and pd.isna(inf["error"].iloc[0])
    assert regions.counts == {"nvtx": 1, "call": 1}
