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


# a CUPTI that gives context-switch records (13.x): Kind and two more
KindWithSwitches = enum.IntEnum(  # type: ignore[misc]
    "KindWithSwitches", [*Kind.__members__, "COMPUTE_ENGINE_CTX_SWITCH", "KERNEL"])


@pytest.mark.parametrize("kind,refuse,expect", [
    (Kind, False, "this CUPTI has no COMPUTE_ENGINE_CTX_SWITCH records"),
    (KindWithSwitches, True, "RuntimeError: ERROR_NOT_COMPATIBLE (14)"),
    (KindWithSwitches, False, True),
])
def test_context_switch_records_where_cupti_gives_them(monkeypatch, kind, refuse, expect):
    """Context-switch records are asked for; where CUPTI lacks or refuses them (the lent H100:
    ERROR_NOT_COMPATIBLE), the metadata says why and nothing else changes."""
    mod = fake_cupti("DriverApiTraceCbid")
    c = mod.cupti
    c.ActivityKind = kind
    enable = c.activity_enable

    def activity_enable(k):
        if refuse and k == getattr(kind, "COMPUTE_ENGINE_CTX_SWITCH", None):
            raise RuntimeError("ERROR_NOT_COMPATIBLE (14)")
        enable(k)
    c.activity_enable = activity_enable
    monkeypatch.setitem(sys.modules, "cupti", mod)
    from gpuwatch.bindings.cupti import CuptiTracer

    t = CuptiTracer(HostClock())
    t.enable()
    assert t.ctx_switch == expect and t.events_enabled is True
    assert (getattr(kind, "COMPUTE_ENGINE_CTX_SWITCH", None) in c.on) is (expect is True)


def test_context_switch_records_become_kernels_table_rows(monkeypatch):
    """A COMPUTE_ENGINE_CTX_SWITCH record (as cupti-python 13.4 gives it: kind, timestamp,
    operation_type, context_id) becomes a `ctx_switch` row of the kernels table on the trace's
    time base, named by CUPTI's operation ("start"/"end")."""
    mod = fake_cupti("DriverApiTraceCbid")
    c = mod.cupti
    c.ActivityKind = KindWithSwitches
    c.ComputeEngineCtxSwitchOperationType = enum.IntEnum(
        "Op", ["INVALID", "START", "END"], start=0)
    monkeypatch.setitem(sys.modules, "cupti", mod)
    from gpuwatch.bindings.cupti import CuptiTracer

    t = CuptiTracer(HostClock())
    t.enable()
    t.offset_ns = 1_000
    got: list = []
    t._sink = lambda table, rows: got.append((table, rows))
    rec = types.SimpleNamespace(kind=int(KindWithSwitches.COMPUTE_ENGINE_CTX_SWITCH),
                                timestamp=5_000, operation_type=2, context_id=7)
    t._completed([rec, types.SimpleNamespace(**{**vars(rec), "timestamp": 4_000,
                                                "operation_type": 1})])
    (table, rows), = got
    assert table == "kernels"
    assert [(r["kind"], r["name"], r["t_ns"], r["correlation_id"]) for r in rows] == [
        ("ctx_switch", "start", 5_000, 7), ("ctx_switch", "end", 6_000, 7)]
    assert t.by_kind == {"COMPUTE_ENGINE_CTX_SWITCH": 2}
