"""gpuwatch.kernelregions: bursts of GPU work as inferences."""

from __future__ import annotations

import numpy as np
import pytest

from gpuwatch.kernelregions import KernelBursts, bursts, short_kernel_name


def test_bursts_merge_overlapping_records_and_split_at_long_idle():
    # out of order, one record running under another, two streams overlapping
    start = np.array([50, 0, 10, 30, 200, 1000], np.int64)
    end = np.array([60, 40, 15, 45, 210, 1100], np.int64)
    s, e, first, order = bursts(start, end, gap_ns=20)
    # busy 0-45 (the 10-15 record inside), idle 5 (not a split), busy 50-60; idle 140: split
    assert s.tolist() == [0, 200, 1000] and e.tolist() == [60, 210, 1100]
    assert start[order[first]].tolist() == [0, 200, 1000]
    s, e, _, _ = bursts(start, end, gap_ns=4)  # the 45 -> 50 idle now splits too
    assert s.tolist() == [0, 50, 200, 1000] and e.tolist() == [45, 60, 210, 1100]


def test_a_wait_for_the_gpu_ends_a_burst():
    start, end = np.array([0, 20, 40, 60]), np.array([10, 30, 50, 70])
    # a synchronize returned at 12 (after the first record, before the second) and at 45,
    # while the third record ran (not a boundary: the GPU was busy)
    s, e, _, _ = bursts(start, end, gap_ns=100, sync_end_ns=np.array([45, 12]))
    assert s.tolist() == [0, 20] and e.tolist() == [10, 70]
    s, _, _, _ = bursts(start, end, gap_ns=100, sync_end_ns=np.array([10]))  # at the end: yes
    assert s.tolist() == [0, 20]


def test_a_burst_ends_where_its_longest_record_ends():
    # a long record early in the burst outlasts the later short ones: no idle in between
    s, e, _, _ = bursts(np.array([0, 5, 10, 100]), np.array([90, 6, 11, 120]), gap_ns=20)
    assert s.tolist() == [0] and e.tolist() == [120]


def test_no_records_no_bursts():
    s, e, first, _ = bursts(np.zeros(0, np.int64), np.zeros(0, np.int64), 1)
    assert s.size == e.size == first.size == 0
    assert KernelBursts().rows() == {}


def test_rows_from_tapped_records():
    kb = KernelBursts()
    seen = []
    add = kb.tap(lambda table, rows: seen.append((table, len(rows))))
    ms = 1_000_000
    add("kernels", [
        {"gpu": 1, "kind": "kernel", "name": "void gemm<128>(float*)", "start_ns": 0,
         "end_ns": 2 * ms},
        {"gpu": 1, "kind": "cuda_event", "name": "start", "start_ns": 5 * ms, "end_ns": 5 * ms},
        {"gpu": 1, "kind": "memcpy", "name": None, "start_ns": 12 * ms, "end_ns": 13 * ms},
        {"gpu": 1, "kind": "kernel", "name": "relu", "start_ns": 13 * ms, "end_ns": 14 * ms},
    ])
    add("samples", [{"gpu": 1}])
    assert seen == [("kernels", 4), ("samples", 1)]  # everything still reaches the trace
    assert len(kb) == 3  # gpuwatch's own event record is not the program's work
    assert kb.used_gap_ms() == 1.0  # no waits seen: idle time alone ends a burst
    cols = kb.rows(first_region_id=7)
    assert cols["name"] == ["kernels:gemm", "kernels:memcpy"]
    assert cols["gpu_ms"] == [2.0, 2.0] and cols["gap_ms"] == [None, 10.0]
    assert cols["condition"] == ["first", "gap 5-50 ms"] and cols["warmup"] == [True, False]
    assert cols["region_id"] == [7, 8] and cols["gpu"] == [1, 1]
    assert cols["host_start_ns"] == [None, None]
    add("kernels", [{"gpu": 1, "kind": "sync", "name": "stream_synchronize",
                     "start_ns": 2 * ms, "end_ns": 3 * ms}])
    assert kb.used_gap_ms() == 10.0  # the program waits: its waits end bursts instead


@pytest.mark.parametrize("raw, short", [
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>(int)",
     "at::native::vectorized_elementwise_kernel"),
    ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x256x64",
     "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x256x64"),
    ("_Z23implicit_convolve_sgemmI6__halfS0_Li1024ELi5ELi5E", "implicit_convolve_sgemm"),
    ("_ZN5cudnn19engines_precompiled16nchwToNhwcKernelI6__halfS2_fLb0E",
     "cudnn::engines_precompiled::nchwToNhwcKernel"),
    ("_ZN2at6native29vectorized_elementwise_kernelILi8EZZZNS0_49_GLOBAL",
     "at::native::vectorized_elementwise_kernel"),
    ("_Z5", "_Z5"),  # cut short: not a name to trust
    ("", "?"), (None, "?"),
])
def test_short_kernel_names(raw, short):
    assert short_kernel_name(raw) == short


def test_a_burst_gap_must_be_positive():
    with pytest.raises(ValueError):
        KernelBursts(gap_ms=0)
