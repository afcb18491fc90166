"""The trace format: its tables, columns, units and schema version (one Parquet file, one
union schema, one row group per table), and the check of a trace's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import TraceFormatError
from ..fields import FIELDS


# v2: inferences.sm_clock_inband_mhz. v3: the discriminator column is `table_name` (was `table`,
# a word SQL reserves), every column's unit is in its Arrow field metadata, and time columns are
# delta-encoded. v4: the host's own causes: samples.host_others_run_ns, host_steal_ns,
# host_minflt, host_majflt, host_voluntary_switches, and the host_events table (garbage
# collections, the other threads' CPU time); within v4 later, samples.host_cpu_freq_mhz (NA
# where unknown: a v4 file from before it lacks the column and loads with it NA, which is all
# that absence can mean). Every older trace keeps loading.
SCHEMA_VERSION = 4


META_KEY = b"gpuwatch"


# Each data page carries a CRC-32 of its bytes (Parquet's page checksum), written and checked
# where pyarrow can (15 and later): a page damaged after it was written (a disk or a copy) then
# fails to read, instead of loading as wrong numbers. A file without them reads as before.
PAGE_CHECKSUMS = int(pa.__version__.split(".")[0]) >= 15
WRITE_OPTIONS: dict[str, Any] = {"write_page_checksum": True} if PAGE_CHECKSUMS else {}
READ_OPTIONS: dict[str, Any] = {"page_checksum_verification": True} if PAGE_CHECKSUMS else {}


TABLES = ("inferences", "samples", "driver_samples", "kernels", "events", "processes",
          "host_events")


# kinds of kernels-table rows that are not the program's GPU work: gpuwatch's own records, and
# the program's waits for the GPU
NOT_WORK_KINDS = ("cuda_event", "probe", "sync", "ctx_switch")  # (ctx_switch: CUPTI, not work)


KIND = "table_name"  # which table a row belongs to


LEGACY_KIND = "table"  # its name in schema v1-v2 traces and chunks


_COMMON: list[tuple[str, pa.DataType]] = [
    (KIND, pa.dictionary(pa.int8(), pa.string())),
    ("gpu", pa.int16()),  # device index within the run (metadata `devices`)
    ("t_ns", pa.int64()),  # the row's time: inference/kernel start, sample reading time
]


TABLE_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "inferences": [
        ("kind", pa.string()),  # "inference" or "span"
        ("name", pa.string()),  # engine or span name
        ("condition", pa.string()),  # e.g. "gap=20ms"
        ("gap_ms", pa.float64()),  # the condition's target idle gap; NA outside a sweep
        ("iteration", pa.int64()),  # negative for warm-up iterations
        ("warmup", pa.bool_()),
        ("start_ns", pa.int64()),  # GPU start (CUDA event), time base
        ("end_ns", pa.int64()),  # GPU end (CUDA event), time base
        ("gpu_ms", pa.float64()),  # CUDA-event elapsed time: the latency gpuwatch reports
        ("host_start_ns", pa.int64()),  # host, just before the start event was enqueued
        ("host_enqueued_ns", pa.int64()),  # host, after the end event was enqueued
        ("host_end_ns", pa.int64()),  # host, when a gpuwatch engine's synchronize() returned
        ("error", pa.string()),  # exception raised inside the timed region, if any
        ("region_id", pa.int64()),  # the session's sequence number of this region
        ("stream", pa.int64()),  # the raw CUstream handle the events went on (0: legacy)
        ("stream_source", pa.string()),  # why that stream (streams.StreamRef.source)
        # Checked regions only: how long after the end event the whole device went idle (ms):
        # GPU work the events did not bracket. NA where the region was not checked.
        ("outside_ms", pa.float64()),
        # The mean SM clock between in-band stamps just before the start event and just after
        # the end event (SM cycles over GPU-timer ns; schema v2). NA where not probed.
        ("sm_clock_inband_mhz", pa.float64()),
    ],
    "samples": [("poll_ns", pa.int64())]  # how long the telemetry read took
    + [(f.name, f.type) for f in FIELDS],
    # Values the driver buffered with its own timestamps (nvmlDeviceGetSamples), long format.
    "driver_samples": [
        ("field", pa.string()),  # a samples column name, e.g. "power_w", "gpu_util_pct"
        ("value", pa.float64()),
    ],
    "kernels": [
        # "kernel", "memcpy", "memset", "cuda_event"; "probe": gpuwatch's own clock stamps;
        # "sync": the program waited for the GPU (start/end: the host call; name: what it
        # waited for, e.g. "context_synchronize")
        ("kind", pa.string()),
        ("name", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("stream_id", pa.int64()),
        # kernels and copies: CUPTI's correlation id of the launching API call; cuda_event
        # rows: the region's tag (labels.event_tag: 2 * region_id, + 1 for the end event)
        ("correlation_id", pa.int64()),
        ("bytes", pa.int64()),
        # cuda_event rows: CUPTI's correlation id of the event-record call (API calls are
        # numbered in order, so kernels launched inside a region fall between its two)
        ("api_correlation_id", pa.int64()),
    ],
    # The GPU's running processes, about once a second (schema v2): this one (`own`) and any
    # other, with NVML's per-process SM and memory utilisation where the driver gives it.
    "processes": [
        ("pid", pa.int64()),
        ("own", pa.bool_()),  # the recording process itself
        ("used_mib", pa.float64()),
        ("sm_util_pct", pa.float64()),
        ("mem_util_pct", pa.float64()),
    ],
    "events": [
        ("kind", pa.string()),  # "error", "warning", "condition", "note"
        ("name", pa.string()),  # e.g. the field or subsystem concerned
        ("message", pa.string()),
    ],
    # The recording process's own host events (schema v4; real GPUs and the stand-in):
    # "gc": a garbage collection, t_ns..end_ns, in thread `tid` (`name`: its Python name);
    # "thread": about once a second, each other thread that ran since its previous row, with
    # its cumulative CPU time (`name`: its Python name, else the kernel's comm).
    "host_events": [
        ("kind", pa.string()),  # "gc" or "thread"
        ("end_ns", pa.int64()),  # gc: when the collection stopped
        ("tid", pa.int64()),  # the thread's native id (threading.get_native_id)
        ("name", pa.string()),
        ("generation", pa.int64()),  # gc: the generation collected
        ("collected", pa.int64()),  # gc: objects it freed
        ("run_ns", pa.int64()),  # thread: cumulative CPU time (schedstat)
    ],
}


# Units by name suffix (the telemetry fields carry their own, fields.FIELDS); in each field's
# metadata as b"unit" (schema v3), so tools need not parse names.
_SUFFIX_UNITS = (("_ns", "ns"), ("_ms", "ms"), ("_mhz", "MHz"), ("_w", "W"), ("_pct", "%"),
                 ("_mib", "MiB"), ("_c", "degC"), ("_mj", "mJ"))


# Times on the trace's time base: ns since the Unix epoch (see the metadata's `time_base`)
TIME_COLUMNS = ("t_ns", "start_ns", "end_ns", "host_start_ns", "host_enqueued_ns", "host_end_ns")


def _field(name: str, typ: pa.DataType) -> pa.Field:
    units = {f.name: (f.unit, f.description) for f in FIELDS}
    meta: dict[bytes, bytes] = {}
    if name in units:
        unit, what = units[name]
        meta[b"description"] = what.encode()
    else:
        unit = next((u for suffix, u in _SUFFIX_UNITS if name.endswith(suffix)), "")
    if name == "bytes":
        unit = "bytes"
    if unit:
        meta[b"unit"] = unit.encode()
    if name in TIME_COLUMNS:
        meta[b"time_base"] = b"ns since the Unix epoch (UTC)"
    return pa.field(name, typ, metadata=meta or None)


def _union_schema() -> pa.Schema:
    cols: dict[str, pa.DataType] = dict(_COMMON)
    for table_cols in TABLE_COLUMNS.values():
        for name, typ in table_cols:
            if name in cols and cols[name] != typ:
                raise AssertionError(f"column {name} has two types in the trace schema")
            cols.setdefault(name, typ)
    return pa.schema([_field(n, t) for n, t in cols.items()])


SCHEMA = _union_schema()


# Each table's own columns (as typed in SCHEMA): what a chunk holds. Readers read chunks with
# SCHEMA, which fills the other tables' columns with nulls; converting rows against 20 columns
# instead of 50 halves the writer's time (it holds the recording process's GIL meanwhile).
TABLE_SCHEMAS = {t: pa.schema([SCHEMA.field(n) for n in [KIND] + table_cols])
                 for t, table_cols in ((t, [n for n, _ in _COMMON if n != KIND]
                                        + [n for n, _ in cols])
                                       for t, cols in TABLE_COLUMNS.items())}


STRING_COLUMNS = [f.name for f in SCHEMA if pa.types.is_string(f.type)]


# Rows per row group of a finished trace: big enough for fast scans, small enough that the
# final merge of an hour's recording stays light (benchmarks/results/long_run).
ROW_GROUP_ROWS = 65_536


def table_columns(table: str) -> list[str]:
    """Column names of one table, common columns first."""
    return [n for n, _ in _COMMON if n != KIND] + [n for n, _ in TABLE_COLUMNS[table]]


def _one_line(e: BaseException) -> str:
    """An exception's text on one line (pyarrow's messages span several)."""
    return " ".join(str(e).split())


def _check_meta(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise TraceFormatError(f"{path}: gpuwatch metadata is not a JSON object; not a gpuwatch trace")
    version = meta.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TraceFormatError(f"{path}: metadata has no valid schema_version (got "
                               f"{version!r}); not a gpuwatch trace")
    if version > SCHEMA_VERSION:
        raise TraceFormatError(
            f"{path} uses trace schema v{version}, this gpuwatch reads up to v{SCHEMA_VERSION}; "
            "upgrade gpuwatch (in its clone: git pull, then pip install -e .)"
        )
