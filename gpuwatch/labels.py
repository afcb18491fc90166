"""What a trace's labels mean, shared by the recorder (which writes them) and the analysis
(which reads them), so that neither imports the other: the tag of a region's CUDA events, and
the gap buckets `gpuwatch run` names its conditions by."""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["GAP_EDGES_MS", "GAP_LABELS", "event_tag", "gap_condition", "region_of_tag"]


def event_tag(rid: Any, end: bool) -> Any:
    """The external correlation id of region `rid`'s start (or end) event (numpy arrays of
    region ids too)."""
    return 2 * rid + int(end)


def region_of_tag(tag: Any) -> tuple[Any, Any]:
    """(region id, is the end event) of an external correlation id made by event_tag; works
    on numpy arrays of tags too."""
    return tag // 2, tag % 2 == 1


GAP_EDGES_MS = (0.0, 1.0, 5.0, 50.0, 500.0, 5000.0)  # bucket lower edges


def gap_condition(gap_ms: float | None) -> str:
    """The condition of a region after an idle gap of `gap_ms` (None: the first region)."""
    if gap_ms is None:
        return "first"
    i = max(0, bisect.bisect_right(GAP_EDGES_MS, gap_ms) - 1)
    lo = GAP_EDGES_MS[i]
    hi = GAP_EDGES_MS[i + 1] if i + 1 < len(GAP_EDGES_MS) else None
    return f"gap {lo:g}-{hi:g} ms" if hi is not None else f"gap >= {lo:g} ms"


# each bucket's condition, then the first region's (made once: the C hooks take them as is)
GAP_LABELS = tuple(gap_condition(e) for e in GAP_EDGES_MS) + ("first",)
