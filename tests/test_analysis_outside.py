"""Analysis of GPU work the events did not bracket: from the stream checks, and from the
kernel timeline (kernels launched inside a region on another stream). Recorded on the
simulated GPU, whose streams and kernels are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gpuwatch
from gpuwatch.analysis.merge import merge
from gpuwatch.analysis.outside import kernels_outside, note, outside_work, stream_checks


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One engine timed three ways: on the wrong stream, the right one, the whole device."""
    out = tmp_path_factory.mktemp("outside") / "t.parquet"
    with gpuwatch.session("sim:flat", out, check_every=4, kernels=True) as s:
        e = s.engine()
        for cond, stream in (("wrong", None), ("right", e.stream), ("device", "device")):
            s.set_condition(cond)
            for _ in range(40):
                s.infer(e.raw.infer, stream=stream)
                e.synchronize()
                s.wait(2)
    return s.trace


def test_the_table_names_the_regions_with_work_outside(mixed):
    t = stream_checks(merge(mixed), mixed.kernels, 0).set_index("condition")
    assert t.loc["wrong", "outside_share"] == 1.0 and t.loc["wrong", "checked"] >= 10
    assert t.loc["wrong", "outside_ms_p50"] == pytest.approx(4.7, rel=0.1)
    assert t.loc["right", "outside"] == 0 and t.loc["right", "checked"] >= 10
    # the kernel timeline says the same of every region, checked or not
    assert t.loc["wrong", "kernel_outside"] == t.loc["wrong", "kernel_regions"] == 40
    assert t.loc["wrong", "kernel_outside_ms_p50"] == pytest.approx(4.7, rel=0.1)
    assert t.loc["right", "kernel_outside"] == 0 and t.loc["right", "kernel_regions"] == 40
    assert t.loc["device", "kernel_outside"] == 0  # brackets every stream by design


def test_analyze_reports_it_in_one_sentence(mixed):
    a = gpuwatch.analyze(mixed)
    assert "outside the timed stream" in a.stream_note and "stream='device'" in a.stream_note
    assert a.to_dict()["stream_note"] == a.stream_note
    from gpuwatch.renderers.text import TextRenderer

    assert "warning: " + a.stream_note in TextRenderer().render(a)


def test_nothing_to_report_when_the_events_bracket_the_work(t4_sweep):
    a = gpuwatch.analyze(t4_sweep)
    assert a.stream_note == "" and (a.stream_checks["outside"] == 0).all()
    assert (a.stream_checks["checked"] >= 3).all()


def test_the_tolerance_covers_wake_up_and_mapping_error():
    m = pd.DataFrame({"gpu_ms": [1.0, 1.0, 10.0, 10.0, 1.0],
                      "outside_ms": [0.06, 0.11, 0.9, 1.1, np.nan]})
    flags = outside_work(m)
    assert list(flags[:4]) == [False, True, False, True] and pd.isna(flags.iloc[4])


def test_a_real_h100_trace_with_nothing_outside_is_not_flagged():
    """A torch conv net timed by s.infer on torch's current stream (benchmarks/results/
    h100_issue13): the checks read 11-58 us after the end event, wake-up and mapping."""
    from pathlib import Path

    tr = gpuwatch.load(Path(__file__).parent.parent / "benchmarks" / "results" /
                       "h100_issue13" / "convnet_alternating_gc_off.parquet")
    assert not tr.simulated and set(tr.measured()["stream_source"]) == {"torch"}
    out = tr.measured()["outside_ms"].dropna()
    assert len(out) == 10 and out.between(0, 0.1).all()
    t = stream_checks(merge(tr), tr.kernels, 0)
    assert t["outside"].sum() == 0 and note(t) == ""


def test_one_late_wake_up_is_no_finding():
    t = pd.DataFrame([{"trace": 0, "engine": "e", "condition": "c", "regions": 2000,
                       "checked": 12, "outside": 1, "outside_share": 1 / 12,
                       "outside_ms_p50": 0.2, "kernel_regions": 0, "kernel_outside": 0,
                       "kernel_outside_ms_p50": np.nan}])
    assert note(t) == ""
    assert "1 of 2 checked" in note(t.assign(checked=2, outside_share=0.5))


def test_old_traces_without_the_columns_are_left_alone():
    m = pd.DataFrame({"name": ["e"], "condition": ["c"], "gpu_ms": [1.0], "region_id": [0]})
    t = stream_checks(m, None, 0)
    assert t.loc[0, "checked"] == 0 and note(t) == ""
    k = pd.DataFrame({"kind": ["kernel"], "correlation_id": [1], "stream_id": [7],
                      "start_ns": [0], "end_ns": [10]})
    assert kernels_outside(m, k).empty  # no api_correlation_id: a trace from before it
