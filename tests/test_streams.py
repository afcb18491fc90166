"""The stream contract: every kind of stream handle a user has, and where events go when none
is given. Framework stream objects are matched by the attributes they really have (torch:
`cuda_stream`, CuPy: `ptr`, pycuda: `handle`); cuda-python's own objects are used for real."""

from __future__ import annotations

import sys
import types

import pytest

from gpuwatch import streams
from gpuwatch.errors import UsageError
from gpuwatch.streams import DEVICE, StreamRef, current, resolve, stream_handle
from tests.helpers import fake_torch


@pytest.fixture(autouse=True)
def no_remembered_torch(monkeypatch):
    """streams.current() remembers torch's getter once torch has started CUDA: per test."""
    monkeypatch.setattr(streams, "_torch_stream", None)


class TorchStream:  # torch.cuda.Stream / ExternalStream: the handle is `cuda_stream`
    def __init__(self, h: int):
        self.cuda_stream = h


class CupyStream:  # cupy.cuda.Stream / ExternalStream: `ptr`
    def __init__(self, h: int):
        self.ptr = h


class PycudaStream:  # pycuda.driver.Stream: `handle`
    def __init__(self, h: int):
        self.handle = h


def test_every_kind_of_handle():
    from cuda.bindings import driver, runtime

    from gpuwatch.bindings.cuda import Stream

    assert stream_handle(0) == 0 and stream_handle(0x7F00_1234_5000) == 0x7F00_1234_5000
    assert stream_handle(TorchStream(0x10)) == 0x10
    assert stream_handle(CupyStream(0x20)) == 0x20
    assert stream_handle(PycudaStream(0x30)) == 0x30
    # cuda-python's own objects: int() is the handle (getPtr() is where the object keeps it)
    assert stream_handle(driver.CUstream(0x40)) == 0x40
    assert stream_handle(runtime.cudaStream_t(0x50)) == 0x50
    assert stream_handle(Stream(driver.CUstream(0x60), 0x60)) == 0x60  # gpuwatch's


@pytest.mark.parametrize("bad", [-1, True, "stream", object(), 1.5])
def test_what_is_not_a_stream_fails_in_one_line(bad):
    with pytest.raises(UsageError) as e:
        resolve(bad)
    assert "\n" not in str(e.value)


def test_resolve():
    assert resolve(None) is None
    assert resolve(DEVICE) == StreamRef(0, "device")
    assert resolve(TorchStream(7)) == StreamRef(7, "argument")
    assert resolve(5, "session") == StreamRef(5, "session")


def test_with_no_framework_events_go_on_the_legacy_default_stream(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert current(0) == StreamRef(0, "default")


def test_torchs_current_stream_once_torch_has_started_cuda(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(0x99, initialized=False))
    assert current(0).source == "default"  # imported, but no CUDA yet: nothing runs on it
    t = fake_torch(0x99, initialized=True)
    monkeypatch.setitem(sys.modules, "torch", t)
    assert current(3) == StreamRef(0x99, "torch") and t.asked == [3]  # the session's device
    assert current(3) == StreamRef(0x99, "torch") and t.asked == [3, 3]  # (remembered)


def test_cupys_current_stream_when_cupy_is_in_use(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(get_current_stream=lambda: CupyStream(0x77))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    assert current(0) == StreamRef(0x77, "cupy")
    broken = types.ModuleType("cupy")  # imported but unusable (no GPU for it)
    broken.cuda = types.SimpleNamespace(get_current_stream=lambda: 1 / 0)
    monkeypatch.setitem(sys.modules, "cupy", broken)
    assert current(0).source == "default"


def test_the_module_imports_no_framework():
    assert "torch" not in streams.__dict__ and "cupy" not in streams.__dict__
