"""Trace schema v3: an SQL-friendly discriminator, units in the schema, compact times, the
readers people use; and every older trace (and unfinished recording) still loading."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.trace import (KIND, LEGACY_KIND, SCHEMA, SCHEMA_VERSION, TIME_COLUMNS,
                            finish_partial, table_columns)

ROOT = Path(__file__).resolve().parents[1]
V1_TRACE = ROOT / "tests" / "data" / "h100_small_gap0_20_fixture.parquet"
# recorded on the stand-in by gpuwatch at schema v3 (before the host's own causes)
V3_TRACE = ROOT / "tests" / "data" / "standin_v3.parquet"
# recorded on the H100 at v4 before samples.host_cpu_freq_mhz
V4_TRACE = ROOT / "tests" / "data" / "h100_issue27" / "busy_host.parquet"
V4_SAMPLES = ("host_others_run_ns", "host_steal_ns", "host_minflt", "host_majflt",
              "host_voluntary_switches", "host_cpu_freq_mhz")


def test_units_and_time_base_are_in_each_fields_metadata(t4_sweep):
    schema = pq.read_schema(t4_sweep.path)
    assert KIND in schema.names and LEGACY_KIND not in schema.names
    unit = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in schema}
    assert unit["sm_clock_mhz"] == "MHz" and unit["power_w"] == "W" and unit["gpu_ms"] == "ms"
    assert unit["temperature_c"] == "degC"
    assert unit["gpu_util_pct"] == "%" and unit["bytes"] == "bytes" and unit["t_ns"] == "ns"
    for c in TIME_COLUMNS:
        assert schema.field(c).metadata[b"time_base"].startswith(b"ns since the Unix epoch")
    described = [f.name for f in schema if f.metadata and b"description" in f.metadata]
    assert "clock_event_reasons" in described
    assert json.loads(schema.metadata[b"gpuwatch"])["schema_version"] == SCHEMA_VERSION == 4


def test_time_columns_are_delta_encoded(t4_sweep):
    pf = pq.ParquetFile(t4_sweep.path)
    for c in TIME_COLUMNS:
        i = pf.schema_arrow.get_field_index(c)
        assert "DELTA_BINARY_PACKED" in pf.metadata.row_group(0).column(i).encodings, c
    # the samples' t_ns, nearly a regular grid, costs about nothing
    i = pf.schema_arrow.get_field_index("t_ns")
    smp = [g for g in range(pf.num_row_groups) if pf.read_row_group(g, columns=[KIND])[KIND]
           .cast(pa.string())[0].as_py() == "samples"]
    rows = sum(pf.metadata.row_group(g).num_rows for g in smp)
    size = sum(pf.metadata.row_group(g).column(i).total_compressed_size for g in smp)
    assert size / rows < 1.0  # bytes per sample (8 raw)


def test_a_trace_from_before_v3_still_loads_and_analyses():
    pytest.importorskip("ruptures")  # (a core dependency; absent where installed with --no-deps)
    assert LEGACY_KIND in pq.read_schema(V1_TRACE).names
    tr = gpuwatch.load(V1_TRACE)
    assert tr.schema_version in (1, 2) and len(tr.measured()) > 0 and len(tr.samples) > 0
    assert gpuwatch.analyze(V1_TRACE).verdict


def test_an_unfinished_recording_written_before_v3_is_finished_as_v3(tmp_path, t4_sweep):
    """Chunks named their discriminator `table` before v3: a crash's .partial from then
    still loads, and `finish` writes a v3 trace of it."""
    partial = tmp_path / "old.parquet.partial"
    partial.mkdir()
    full = pq.read_table(t4_sweep.path)
    kinds = full[KIND].cast(pa.string())
    for n, table in enumerate(("inferences", "samples", "events")):
        part = full.filter(pa.compute.equal(kinds, table))
        part = part.rename_columns([LEGACY_KIND if c == KIND else c for c in part.column_names])
        pq.write_table(part, partial / f"p{n:07d}-{table}.parquet")
    meta = dict(t4_sweep.meta, status="recording", schema_version=2)
    (partial / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(gpuwatch.RecoveredTraceWarning):
        rec = gpuwatch.load(partial)
    assert len(rec.inferences) == len(t4_sweep.inferences)
    assert len(rec.samples) == len(t4_sweep.samples)
    dest = tmp_path / "old.parquet"
    finish_partial(partial, dest)
    done = gpuwatch.load(dest)
    assert done.schema_version == SCHEMA_VERSION and KIND in pq.read_schema(dest).names
    assert len(done.inferences) == len(t4_sweep.inferences)


def test_a_v3_trace_loads_with_the_host_causes_unknown():
    """v4 added host columns to samples and the host_events table: a v3 trace has them NA and
    empty, its own host readings intact."""
    tr = gpuwatch.load(V3_TRACE)
    assert tr.schema_version == 3 and len(tr.inferences) == 100 and len(tr.samples) > 20
    assert tr.samples["host_run_ns"].notna().all()  # (v2's host columns: there)
    for c in V4_SAMPLES:
        assert tr.samples[c].isna().all(), c
    assert len(tr.host_events) == 0
    assert list(tr.host_events.columns) == table_columns("host_events")
    limited = gpuwatch.load(V3_TRACE, columns={"samples": ["host_steal_ns"],
                                               "host_events": ["run_ns"]})
    assert limited.samples["host_steal_ns"].isna().all() and len(limited.host_events) == 0


def test_an_unfinished_v3_recording_loads_and_is_finished_as_v4(tmp_path):
    partial = tmp_path / "v3.parquet.partial"
    partial.mkdir()
    full = pq.read_table(V3_TRACE)
    kinds = full[KIND].cast(pa.string())
    for n, table in enumerate(("inferences", "samples")):
        pq.write_table(full.filter(pa.compute.equal(kinds, table)),
                       partial / f"c{n:07d}-{table}.parquet")
    meta = json.loads(pq.read_schema(V3_TRACE).metadata[b"gpuwatch"])
    (partial / "meta.json").write_text(json.dumps(dict(meta, status="recording")))
    with pytest.warns(gpuwatch.RecoveredTraceWarning):
        rec = gpuwatch.load(partial)
    assert len(rec.inferences) == 100 and len(rec.host_events) == 0
    assert rec.samples["host_voluntary_switches"].isna().all()
    dest = tmp_path / "v3.parquet"
    finish_partial(partial, dest)
    done = gpuwatch.load(dest)
    assert done.schema_version == SCHEMA_VERSION == 4 and len(done.host_events) == 0
    assert done.samples["host_minflt"].isna().all()


def test_a_v4_trace_from_before_the_cpu_clock_loads_with_it_unknown():
    """samples.host_cpu_freq_mhz joined v4 after v4 traces were recorded (the H100 fixtures):
    they lack the column, and load and analyse with it NA, as a machine without cpufreq
    records it; their other host readings intact."""
    pytest.importorskip("ruptures")
    path = V4_TRACE
    assert "host_cpu_freq_mhz" not in pq.read_schema(path).names
    for kw in ({}, {"columns": {"samples": ["host_cpu_freq_mhz"]}, "numpy_dtypes": ["samples"]}):
        tr = gpuwatch.load(path, **kw)
        assert tr.schema_version == 4 and len(tr.samples) > 1000
        assert tr.samples["host_cpu_freq_mhz"].isna().all()
    assert gpuwatch.load(path).samples["host_steal_ns"].notna().sum() > 100
    assert "cpu_max_mhz" not in gpuwatch.load(path).meta["host"]
    merged = gpuwatch.analyze(path).merged
    assert merged["cpu_freq_mhz"].isna().all() and merged["host_wait_ms"].notna().sum() > 100


def _readme_readers() -> str:
    text = (ROOT / "docs" / "trace-format.md").read_text()
    m = re.search(r"<!-- readers: run as tests/test_trace_format.py -->\s*```python\n(.*?)```",
                  text, re.S)
    assert m, "docs/trace-format.md lost its block of one-line readers"
    return m.group(1)


def test_the_readmes_duckdb_polars_and_pandas_lines_run(tmp_path, t4_sweep, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    shutil.copy(t4_sweep.path, tmp_path / "run.parquet")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(_readme_readers(), "docs/trace-format.md", "exec"), scope)  # noqa: S102
    n = len(t4_sweep.samples)
    duck, pol, pan = scope["duck"], scope["pol"], scope["pan"]
    assert len(duck) == len(pol) == len(pan) == n  # type: ignore[arg-type]
    assert str(pan["t"].dtype).startswith("datetime64[ns")  # type: ignore[index]
    assert str(pol.schema["t"]).startswith("Datetime")  # type: ignore[attr-defined]
    assert str(duck["t"].dtype).startswith("datetime64")  # type: ignore[index]
    assert os.path.exists("run.parquet")
