"""Traces: one Parquet file per run, several tables in it, one time base.

Layout (documented in docs/trace-format.md):
- Every row has `table_name` (`table` before v3: "inferences", "samples", "driver_samples",
  "kernels", "events", "processes" or "host_events"), `gpu` and `t_ns`.
- Each table has its own further columns (TABLE_COLUMNS); the file's schema is their union, and
  each row group holds rows of one table only, so a reader that filters on `table` skips the rest.
- Times are int64 nanoseconds since the Unix epoch (metadata `time_base`).
- Run metadata is JSON under the Parquet key-value metadata key `gpuwatch`.

While recording, rows are streamed as small self-contained Parquet chunks into `<out>.partial/`
(bounded memory; a crash loses at most the unflushed tail). Closing merges the chunks into
`<out>` through a temporary file and an atomic rename, then removes the directory. `load()` reads
a finished file, or recovers a `.partial` directory left by a crash, with a warning.

The package, one job per module: `schema` (the tables, columns, units, schema version and the
metadata check), `paths` (the output path's policy, the .partial's lock, publishing), `writer`
(recording: chunks, then the final file), `finish` (merging chunks, here or in a helper process),
`reader` (load, Trace). The names below are its interface; the recorder imports the writer's
side, the analysis only the reader's.
"""

from __future__ import annotations

from .finish import (
    LAST_HELPER_MERGE, claim_for_finish, conform, finish_partial, partition_value, read_chunk,
    read_partial_meta)
from .paths import (
    LOCK_NAME, PARTIAL_FILES, Identity, OutputTakenError, _lock_owner, _proc_start_ticks,
    _release, check_output, default_out, live_writer, partial_path, publish, remove_partial)
from .reader import (
    CORE_COLUMNS, Columns, DamagedTraceWarning, RecoveredTraceWarning, Trace, _check_types, load,
    release_arrow_memory, without_repeats, REPEAT_BATCH_ROWS, batches_without_repeats,
    table_groups)
from .schema import (
    KIND, LEGACY_KIND, META_KEY, NOT_WORK_KINDS, PAGE_CHECKSUMS, READ_OPTIONS, ROW_GROUP_ROWS,
    SCHEMA, SCHEMA_VERSION, STRING_COLUMNS, TABLE_COLUMNS, TABLE_SCHEMAS, TABLES, TIME_COLUMNS,
    WRITE_OPTIONS, _check_meta, table_columns)
from .writer import ChunkWriter, TraceWriter, use_system_allocator

__all__ = [
    "CORE_COLUMNS", "ChunkWriter", "Columns", "DamagedTraceWarning", "Identity", "KIND",
    "LAST_HELPER_MERGE", "LEGACY_KIND", "LOCK_NAME", "META_KEY", "NOT_WORK_KINDS",
    "OutputTakenError", "PAGE_CHECKSUMS", "PARTIAL_FILES", "READ_OPTIONS", "ROW_GROUP_ROWS", "RecoveredTraceWarning", "SCHEMA",
    "SCHEMA_VERSION", "STRING_COLUMNS", "TABLES", "TABLE_COLUMNS", "TABLE_SCHEMAS",
    "TIME_COLUMNS", "Trace", "TraceWriter", "check_output", "claim_for_finish", "conform",
    "default_out", "finish_partial", "live_writer", "load", "partial_path", "partition_value",
    "publish", "read_chunk", "read_partial_meta", "release_arrow_memory", "remove_partial",
    "table_columns", "use_system_allocator", "WRITE_OPTIONS", "without_repeats", "REPEAT_BATCH_ROWS", "batches_without_repeats",
    "table_groups"]
