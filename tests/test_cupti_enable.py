"""bindings/cupti.py's enable(), on a stand-in of cupti-python's module (no GPU): which
collections it switches on, with either spelling of CUPTI's driver-API enum, and that a CUPTI
without the event-record calls leaves nothing half on (driver-API records cost every call)."""

from __future__ import annotations

import enum
import sys
import types

import pytest

from gpuwatch.clock import HostClock


class Kind(enum.IntEnum):
    CONCURRENT_KERNEL = 1
    MEMCPY = 2
    MEMSET = 3
    SYNCHRONIZATION = 4
    CUDA_EVENT = 5
    EXTERNAL_CORRELATION = 6
    DRIVER = 7


def fake_cupti(enum_name: str | None, calls: tuple[str, ...] = ("cuEventRecord",)):
    on: set[int] = set()
    driver_api: dict[str, int] = {}
    c = types.SimpleNamespace(
        ActivityKind=Kind, on=on, driver_api=driver_api,
        activity_register_callbacks=lambda a, b: None,
        activity_enable=on.add, activity_disable=on.discard,
        activity_enable_cuda_event_device_timestamps=lambda v: None)
    if enum_name is not None:
        cbids = enum.IntEnum("Cbid", ["INVALID", "cuLaunchKernel", *calls, "SIZE"], start=0)
        setattr(c, enum_name, cbids)

        def enable_driver_api(cbid: int, v: int) -> None:
            driver_api[cbids(cbid).name] = v
        c.activity_enable_driver_api = enable_driver_api
    mod = types.ModuleType("cupti")
    mod.cupti = c
    return mod


@pytest.mark.parametrize("enum_name", ["DriverApiTraceCbid", "driver_api_trace_cbid"])
def test_event_records_with_either_spelling_of_the_enum(monkeypatch, enum_name):
    monkeypatch.setitem(sys.modules, "cupti", fake_cupti(enum_name))
    from gpuwatch.bindings.cupti import CuptiTracer

    t = CuptiTracer(HostClock())
    t.enable()
    c = t.cupti
    assert t.events_enabled is True
    assert {Kind.CUDA_EVENT, Kind.EXTERNAL_CORRELATION, Kind.DRIVER} <= c.on
    assert c.driver_api == {"cuEventRecord": 1, "cuLaunchKernel": 0}  # only the event records


@pytest.mark.parametrize("enum_name,calls", [(None, ()), ("driver_api_trace_cbid", ("cuMemAlloc",))])
def test_a_cupti_without_the_event_calls_leaves_them_all_off(monkeypatch, enum_name, calls):
    monkeypatch.setitem(sys.modules, "cupti", fake_cupti(enum_name, calls))
    from gpuwatch.bindings.cupti import CuptiTracer

    t = CuptiTracer(HostClock())
    t.enable()
    assert isinstance(t.events_enabled, str)  # why, for the trace's metadata
    assert t.cupti.on == {Kind.CONCURRENT_KERNEL, Kind.MEMCPY, Kind.MEMSET, Kind.SYNCHRONIZATION}
