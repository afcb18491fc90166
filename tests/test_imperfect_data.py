"""Analysis of imperfect data (issue 16): readings no GPU can give, latencies that are stalls or
broken rows, repeated iterations, a missing core column, telemetry that does not overlap the
inferences. Each is excluded or flagged, counted in a `note:`, and cannot flip a verdict."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.errors import TraceFormatError
from tests.helpers import record_sim


@pytest.fixture(scope="module")
def t4(tmp_path_factory):
    """The simulated T4's staircase at gaps 0 and 20 ms, NVML's clock only (no probe): the
    verdict is "the SM clock explains ~100%"."""
    out = tmp_path_factory.mktemp("imperfect") / "t4.parquet"
    record_sim(out, iters=400, warmup=0, probe=False)
    return out


def _mutated(src, dst, fn):
    t = pq.read_table(src)
    pq.write_table(fn(t).replace_schema_metadata(t.schema.metadata), dst)
    return dst


def _set(t: pa.Table, col: str, mask: np.ndarray, value) -> pa.Table:
    typ = t.schema.field(col).type
    conv = int if pa.types.is_integer(typ) else float
    vals = [conv(value) if m else v for v, m in zip(t.column(col).to_pylist(), mask)]
    return t.set_column(t.schema.get_field_index(col), col, pa.array(vals, type=typ))


def _rows(t: pa.Table, table: str) -> np.ndarray:
    return np.array([x == table for x in t.column("table_name").to_pylist()])


def _gap20(a):
    v = a.verdicts
    return v[(v["condition"] == "gap=20ms") & v["episode"].isna()].iloc[0]


def test_the_reference_verdict(t4):
    v = _gap20(gpuwatch.analyze(t4))
    assert v["cause_code"] == "idle_clock_downscale" and v["share"] > 0.95


@pytest.mark.parametrize("value", [-5, 0, 10**9])
def test_impossible_clock_readings_are_missing_not_used(t4, tmp_path, value):
    bad = _mutated(t4, tmp_path / "bad.parquet",
                   lambda t: _set(t, "sm_clock_mhz", _rows(t, "samples"), value))
    a = gpuwatch.analyze(bad)
    assert any("outside what a GPU can report" in n for n in a.data_notes)
    v = _gap20(a)
    assert v["cause_code"] != "idle_clock_downscale"  # no clock was measured: none blamed
    assert "SM clock was not recorded" in v["sentence"] or v["cause"] is None


def test_a_few_stalls_cannot_flip_the_verdict(t4, tmp_path):
    """Three 10-second rows among 800 (a mean-based comparison read gap=0 as 54 ms)."""
    def three(t):
        idx = np.nonzero(_rows(t, "inferences"))[0]
        mask = np.zeros(t.num_rows, bool)
        mask[idx[[100, 300, 500]]] = True
        return _set(t, "gpu_ms", mask, 10_000.0)

    a = gpuwatch.analyze(_mutated(t4, tmp_path / "stalls.parquet", three))
    v = _gap20(a)
    assert v["cause_code"] == "idle_clock_downscale" and v["share"] > 0.95
    assert any("over 1000x" in n and "10000 ms" in n for n in a.data_notes)


def test_repeated_iteration_numbers_are_ordered_by_time(t4, tmp_path):
    bad = _mutated(t4, tmp_path / "dup.parquet",
                   lambda t: _set(t, "iteration", _rows(t, "inferences"), 7))
    a = gpuwatch.analyze(bad)
    assert any("repeat an iteration number" in n for n in a.data_notes)
    assert _gap20(a)["cause_code"] == "idle_clock_downscale"
    lay = a.details[(0, "builtin:small", "gap=20ms")]
    assert 40 <= lay.onset_iter <= 80  # the staircase where it is, not "iteration 7"


def test_a_trace_without_its_latency_column_is_refused(t4, tmp_path):
    bad = _mutated(t4, tmp_path / "nolat.parquet", lambda t: t.drop(["gpu_ms"]))
    with pytest.raises(TraceFormatError, match="gpu_ms"):
        gpuwatch.load(bad)


@pytest.mark.parametrize("shift_s", [-3600, 3600])
def test_telemetry_that_does_not_overlap_the_inferences_says_nothing(t4, tmp_path, shift_s):
    """Samples an hour before (or after) every inference: no clock is known for any region,
    so none is blamed, and the change is still reported."""
    def shift(t):
        smp = _rows(t, "samples")
        vals = t.column("t_ns").to_pylist()
        vals = [v + shift_s * 10**9 if m and v is not None else v for v, m in zip(vals, smp)]
        return t.set_column(t.schema.get_field_index("t_ns"), "t_ns",
                            pa.array(vals, type=t.schema.field("t_ns").type))

    a = gpuwatch.analyze(_mutated(t4, tmp_path / "shift.parquet", shift))
    v = _gap20(a)
    assert v["cause"] is not None and v["cause_code"] != "idle_clock_downscale"
    assert "SM clock was not recorded" in v["sentence"]


def _flip_page_bytes(src, dst, column: str) -> None:
    """A copy of trace `src` with 8 bytes inside the first row group's data of `column` that
    has values flipped (a disk or copy error: the footer still reads)."""
    import shutil

    md = pq.ParquetFile(src).metadata
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        c = next(rg.column(i) for i in range(rg.num_columns)
                 if rg.column(i).path_in_schema == column)
        if c.statistics is not None and c.statistics.null_count < rg.num_rows:
            break
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(c.data_page_offset + c.total_compressed_size // 2)
        b = f.read(8)
        f.seek(c.data_page_offset + c.total_compressed_size // 2)
        f.write(bytes(x ^ 0x5A for x in b))


@pytest.mark.skipif(not gpuwatch.trace.PAGE_CHECKSUMS, reason="page checksums need pyarrow 15")
@pytest.mark.parametrize("column", ["gpu_ms", "sm_clock_mhz"])
def test_a_page_damaged_after_writing_fails_to_load_instead_of_reading_wrong(t4, tmp_path,
                                                                              column):
    """Each data page carries a CRC: flipped bytes (the footer intact) are refused with what
    to do, never read as wrong latencies or clocks (a new user's trial read 3.9e212 ms)."""
    bad = tmp_path / "bad.parquet"
    _flip_page_bytes(t4, bad, column)
    with pytest.raises(TraceFormatError, match="changed after gpuwatch wrote them"):
        a = gpuwatch.analyze(bad)  # (samples are read a column at a time, inferences whole)
        a.verdicts  # noqa: B018
