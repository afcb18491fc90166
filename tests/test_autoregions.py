"""gpuwatch.autoregions in-process: the hooks `gpuwatch run` installs, on a simulated GPU, with
a module shaped like torch.nn (Module.__call__ defined on the class, as torch defines it)."""

from __future__ import annotations

import types

import gpuwatch
from gpuwatch.autoregions import AutoRegions, _nested_call, gap_condition


def fake_torch() -> types.ModuleType:
    class Module:
        def _wrapped_call_impl(self, *args, **kwargs):
            return self.forward(*args, **kwargs)

        __call__ = _wrapped_call_impl

    class Layer(Module):
        def forward(self, x):
            return x + 1

    class Net(Module):
        def __init__(self):
            self.a, self.b = Layer(), Layer()

        def forward(self, x, scale=1):
            if x < 0:
                raise ValueError("negative input")
            return self.b(self.a(x)) * scale

    torch = types.ModuleType("torch")
    torch.nn = types.SimpleNamespace(Module=Module)  # type: ignore[attr-defined]
    torch.Net = Net  # type: ignore[attr-defined]
    return torch


def test_outermost_module_calls_are_regions_and_the_hook_comes_off(tmp_path):
    torch = fake_torch()
    original = torch.nn.Module.__dict__["__call__"]
    net = torch.Net()
    with gpuwatch.session("sim:t4", out=tmp_path / "t.parquet") as s:
        regions = AutoRegions(s, ("call",))
        regions._hook_torch_modules(torch)
        assert torch.nn.Module.__dict__["__call__"] is not original
        # where the C module was built, submodule calls go through it (bindings/_native.c)
        assert (regions._hook is not None) == (_nested_call() is not None)
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


def test_nvtx_ranges_and_module_calls_on_the_c_path(tmp_path, monkeypatch):
    """On the stand-in device (the C timed path, bindings/_native.c): NVTX ranges open and close
    in C (begin/end), module calls are one C call; nesting, a range around a call, an error
    inside a range, and the slow path's regions in between keep their order and names."""
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
        if not hasattr(fast, "begin"):
            import pytest

            pytest.skip("bindings/_native.c was not built")
        regions = AutoRegions(s, ("nvtx", "call"))
        regions._hook_nvtx(nvtx)
        regions._hook_torch_modules(torch)
        in_c = []
        for i in range(60):
            nvtx.push_range("step")
            in_c.append(fast.is_open is not None)  # (not while the pool fills, nor when due)
            nvtx.push_range("inner")  # nested: counted, not timed on its own
            assert net(i) == i + 2  # inside a range: not a region of its own
            nvtx.pop_range()
            nvtx.pop_range()
            assert fast.is_open is None and fast.depth == 0
        for i in range(60):
            net(i)
        n_fast = fast.fast_regions
        nvtx.push_range("broken")
        regions.end(ValueError("inside"))  # what annotate's __exit__ passes on an error
        nvtx.stack.pop()
        regions.uninstall()
    assert sum(in_c[20:]) >= 35 and n_fast >= 90 and nvtx.stack == []
    inf = s.trace.inferences
    assert inf["name"].tolist() == ["nvtx:step"] * 60 + ["call:Net"] * 60 + ["nvtx:broken"]
    assert inf["region_id"].tolist() == list(range(121))
    assert inf["error"].iloc[:120].isna().all() and inf["error"].iloc[120] == "ValueError: inside"
    assert (inf["gpu_ms"] >= 0).all() and set(inf["stream_source"]) == {"default"}
    assert regions.counts == {"nvtx": 61, "call": 60}
