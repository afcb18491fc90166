"""Inferences found as bursts of GPU work, for programs nothing else marks (`gpuwatch run
--regions kernels`, or `--kernels` when no NVTX range or known call was seen).

The kernel tracer (CUPTI on a real GPU) records every kernel, copy and memset, and every time
the program waited for the GPU (a synchronize call). Here the GPU intervals are kept as they
arrive (16 bytes each) and, once the trace is complete, cut into bursts:
- where the program waited for the GPU: a synchronize call returned after one record ended and
  before the next began (a program that waits for each result: one burst per inference);
- where the GPU sat idle longer than `gap_ms`: by default BURST_GAP_MS, or SYNC_GAP_MS when the
  program synchronises (then an idle stretch alone must be long to end a burst: a host
  stalled inside an inference, as CUPTI's own work stalls it, does not split it).
Each burst is one `inferences` row, timed on the GPU's own clock from its first record's start
to its last record's end (CUPTI's timestamps on the trace's time base). Its `gap_ms` is the GPU idle time
before it, so conditions come from gaps as for the other sources; its name is
"kernels:<first kernel>", so a program whose bursts begin differently (pre-processing, a second
model) gets one series per kind of burst.

What a burst cannot say: the host times (no host event brackets it: host_start_ns is NA, so
host-side layers say "cannot tell"); several inferences are one burst where the program neither
waits for them nor leaves the GPU idle between them; one inference is several where it waits
for the GPU inside it (a `.item()` mid-model).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .labels import gap_condition

__all__ = ["KernelBursts", "BURST_GAP_MS", "bursts"]

BURST_GAP_MS = 1.0  # GPU idle longer than this ends a burst...
SYNC_GAP_MS = 10.0  # ...or this, when the program synchronises (its waits end bursts)
WORK_KINDS = ("kernel", "memcpy", "memset")  # the program's own work (not cuda_event, probe)


def short_kernel_name(name: Any) -> str:
    """A kernel's name without its return type, template arguments or parameters:
    "void at::native::vectorized_elementwise_kernel<4, ...>(int, ...)" and its mangled form
    "_ZN2at6native29vectorized_elementwise_kernelILi4E..." both give
    "at::native::vectorized_elementwise_kernel"."""
    s = str(name or "?").strip()
    plain = _mangled_name(s)
    if plain is not None:
        return plain[:80]
    s = re.sub(r"^(void|static)\s+", "", s)
    cut = min((i for i in (s.find("<"), s.find("(")) if i > 0), default=len(s))
    return s[:cut].strip()[:80] or "?"


def _mangled_name(s: str) -> str | None:
    """The qualified name at the start of an Itanium-mangled symbol ("_Z" then a
    length-prefixed name, or "N" and several, up to the first template or parameter); None if
    `s` is not one. (Not a demangler: just the name, which is what a series is called by.)"""
    if not s.startswith("_Z"):
        return None
    i, parts = 2, []
    nested = s[i:i + 1] == "N"
    if nested:
        i += 1
        while i < len(s) and s[i] in "rVK":  # (cv-qualifiers of a member function)
            i += 1
    while i < len(s) and s[i].isdigit():
        j = i
        while j < len(s) and s[j].isdigit():
            j += 1
        n = int(s[i:j])
        parts.append(s[j:j + n])
        i = j + n
        if not nested:
            break
    return "::".join(parts) if parts and all(parts) else None


def bursts(start_ns: np.ndarray, end_ns: np.ndarray, gap_ns: int,
           sync_end_ns: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bursts of the intervals [start_ns, end_ns) (any order, overlapping allowed): the GPU is
    busy while any is running; an idle stretch longer than `gap_ns`, or one in which a
    synchronize call returned (`sync_end_ns`), ends a burst. Returns (burst start, burst end,
    index of each burst's first interval in the sorted order, the sort order)."""
    order = np.argsort(start_ns, kind="stable")
    s = start_ns[order]
    e = np.maximum.accumulate(end_ns[order])  # busy until here, for every prefix
    if s.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, order
    split = s[1:] - e[:-1] > gap_ns  # idle longer than gap_ns before s[i + 1]
    if sync_end_ns is not None and len(sync_end_ns):
        ends = np.sort(np.asarray(sync_end_ns, np.int64))
        # a wait that returned once the GPU was idle, before the next work began
        split |= np.searchsorted(ends, s[1:], "right") > np.searchsorted(ends, e[:-1], "left")
    cut = np.nonzero(split)[0] + 1
    first = np.concatenate([[0], cut])
    last = np.concatenate([cut - 1, [s.size - 1]])
    return s[first], e[last], first, order


class KernelBursts:
    """Keeps the GPU intervals of the program's kernels and copies as the tracer delivers
    them (`tap`), and makes the burst regions at the end (`rows`)."""

    def __init__(self, gap_ms: float | None = None):
        """`gap_ms`: GPU idle that ends a burst (None: BURST_GAP_MS, or SYNC_GAP_MS where the
        program synchronises)."""
        if gap_ms is not None and not gap_ms > 0:
            raise ValueError(f"a burst gap must be > 0 ms, got {gap_ms}")
        self.gap_ms = gap_ms
        self._start: list[int] = []
        self._end: list[int] = []
        self._sync_end: list[int] = []
        self._name: list[str] = []
        self._gpu: int | None = None

    def tap(self, sink: Callable[[str, list[dict[str, Any]]], None]
            ) -> Callable[[str, list[dict[str, Any]]], None]:
        """`sink`, keeping the kernels table's work records on the way."""
        def add(table: str, rows: list[dict[str, Any]]) -> None:
            if table == "kernels":
                for r in rows:
                    if r.get("kind") == "sync" and r.get("end_ns") is not None:
                        self._sync_end.append(int(r["end_ns"]))
                    elif r.get("kind") in WORK_KINDS and r.get("start_ns") is not None \
                            and r.get("end_ns") is not None:
                        self._start.append(int(r["start_ns"]))
                        self._end.append(int(r["end_ns"]))
                        self._name.append(str(r.get("name") or r["kind"]))
                        if self._gpu is None:
                            self._gpu = r.get("gpu")
            sink(table, rows)
        return add

    def __len__(self) -> int:
        return len(self._start)

    def used_gap_ms(self) -> float:
        """The idle time that ends a burst in this recording."""
        if self.gap_ms is not None:
            return self.gap_ms
        return SYNC_GAP_MS if self._sync_end else BURST_GAP_MS

    def rows(self, first_region_id: int = 0) -> dict[str, Sequence[Any]]:
        """The burst regions as `inferences` columns (trace.schema's names), in time order; the
        first burst is warm-up (it has no gap before it)."""
        start, end, first, order = bursts(np.asarray(self._start, np.int64),
                                          np.asarray(self._end, np.int64),
                                          round(self.used_gap_ms() * 1e6),
                                          np.asarray(self._sync_end, np.int64))
        n = int(start.size)
        if not n:
            return {}
        names = [f"kernels:{short_kernel_name(self._name[i])}" for i in order[first]]
        gaps: list[float | None] = [None, *((start[1:] - end[:-1]) / 1e6).tolist()]
        conds = [gap_condition(g) for g in gaps]
        seen: dict[tuple[str, str], int] = {}
        iteration = []
        for name, c in zip(names, conds):
            k = (name, c)
            iteration.append(seen.get(k, 0))
            seen[k] = iteration[-1] + 1
        gpu = self._gpu if self._gpu is not None else 0
        none = [None] * n
        return {
            "gpu": [gpu] * n, "t_ns": start.tolist(), "kind": ["inference"] * n,
            "name": names, "condition": conds, "gap_ms": gaps, "iteration": iteration,
            "warmup": [i == 0 for i in range(n)], "start_ns": start.tolist(),
            "end_ns": end.tolist(), "gpu_ms": ((end - start) / 1e6).tolist(),
            "host_start_ns": none, "host_enqueued_ns": none, "host_end_ns": none,
            "error": none, "region_id": list(range(first_region_id, first_region_id + n)),
            "stream": none, "stream_source": ["kernels"] * n, "outside_ms": none,
            "sm_clock_inband_mhz": none,
        }

    def summary(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        return {"records": len(self), "syncs": len(self._sync_end),
                "bursts": len(columns.get("t_ns", ())), "burst_gap_ms": self.used_gap_ms()}
