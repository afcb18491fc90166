"""GPU work the timed regions' events did not bracket ("outside the timed stream").

Two sources, per trace, engine and condition:
- the stream checks (regions/timer.py): on checked regions the whole device was synchronised after
  the region; `outside_ms` is how long after the end event it went idle. Work past a tolerance
  (OUTSIDE_MIN_MS, or OUTSIDE_REL of the region, whichever is larger) ran on a stream the
  events did not bracket. With nothing outside, the H100 read 11-58 us (host wake-up after the
  synchronisation, and the event-to-host mapping's error);
- the kernel timeline, where recorded: kernels launched while the region was open (their
  CUPTI correlation id falls between those of the region's two event records) on a stream
  other than the one its events went on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import region_of_tag
from ..trace import NOT_WORK_KINDS

OUTSIDE_MIN_MS = 0.1
OUTSIDE_REL = 0.1
NOTE_SHARE = 0.2  # a group is worth a warning when this share of its evidence says so

COLUMNS = ["trace", "engine", "condition", "regions", "checked", "outside", "outside_share",
           "outside_ms_p50", "kernel_regions", "kernel_outside", "kernel_outside_ms_p50"]


def outside_work(m: pd.DataFrame) -> pd.Series:
    """Per row of a merged table: True if its check found work after the end event, False if
    it found none, NA where the row was not checked."""
    out = m["outside_ms"].astype("float64") if "outside_ms" in m else pd.Series(
        np.nan, index=m.index)
    tol = np.maximum(OUTSIDE_MIN_MS, OUTSIDE_REL * m["gpu_ms"].astype("float64"))
    return (out > tol).astype("boolean").mask(out.isna())


def kernels_outside(m: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Per region with both event records in the kernel timeline: the kernel time it launched
    on other streams (`kernel_outside_ms`, 0 if none). Regions without records are left out."""
    if kernels is None or kernels.empty or "api_correlation_id" not in kernels:
        return pd.DataFrame(columns=["region_id", "kernel_outside_ms"])
    ev = kernels[(kernels["kind"] == "cuda_event")].dropna(
        subset=["api_correlation_id", "correlation_id", "stream_id"])
    if ev.empty:
        return pd.DataFrame(columns=["region_id", "kernel_outside_ms"])
    rid, is_end = region_of_tag(ev["correlation_id"].to_numpy(np.int64))
    ev = ev.assign(region_id=rid, end=is_end)
    starts = ev[~ev["end"]].drop_duplicates("region_id").set_index("region_id")
    ends = ev[ev["end"]].drop_duplicates("region_id").set_index("region_id")
    both = starts.index.intersection(ends.index)
    if both.empty:
        return pd.DataFrame(columns=["region_id", "kernel_outside_ms"])
    c0 = starts.loc[both, "api_correlation_id"].to_numpy(np.int64)
    c1 = ends.loc[both, "api_correlation_id"].to_numpy(np.int64)
    stream = starts.loc[both, "stream_id"].to_numpy(np.int64)
    work = kernels[~kernels["kind"].isin(NOT_WORK_KINDS)].dropna(
        subset=["correlation_id", "stream_id", "start_ns", "end_ns"])
    work = work.sort_values("correlation_id")
    corr = work["correlation_id"].to_numpy(np.int64)
    wstream = work["stream_id"].to_numpy(np.int64)
    dur = (work["end_ns"].to_numpy(np.int64) - work["start_ns"].to_numpy(np.int64)) / 1e6
    lo = np.searchsorted(corr, c0, side="right")
    hi = np.searchsorted(corr, c1, side="left")
    total = np.zeros(len(both))
    for i in np.nonzero(hi > lo)[0]:  # regions that launched anything (few rows each)
        sl = slice(lo[i], hi[i])
        total[i] = dur[sl][wstream[sl] != stream[i]].sum()
    return pd.DataFrame({"region_id": both.to_numpy(np.int64), "kernel_outside_ms": total})


def stream_checks(m: pd.DataFrame, kernels: pd.DataFrame | None, ti: int) -> pd.DataFrame:
    """The summary table: one row per engine/span name and condition of trace `ti`."""
    if m.empty:
        return pd.DataFrame(columns=COLUMNS)
    m = m.assign(_out=outside_work(m))
    k = kernels_outside(m, kernels) if kernels is not None else None
    if k is not None and len(k):
        m = m.merge(k, on="region_id", how="left")
    else:
        m = m.assign(kernel_outside_ms=np.nan)
    if "stream_source" in m:  # whole-device regions bracket every stream by design
        m.loc[m["stream_source"] == "device", "kernel_outside_ms"] = np.nan
    # per name and condition, in one grouped pass (a program with thousands of region names
    # made a loop over the groups take seconds)
    out = m["_out"].fillna(False).astype(bool)
    oms = (m["outside_ms"].astype("float64") if "outside_ms" in m
           else pd.Series(np.nan, index=m.index))
    ko = m["kernel_outside_ms"].astype("float64")
    g = pd.DataFrame({"name": m["name"], "condition": m["condition"],
                      "checked": m["_out"].notna(), "outside": out,
                      "outside_ms": oms.where(out), "kernel_regions": ko.notna(),
                      "kernel_outside_ms": ko.where(ko > OUTSIDE_MIN_MS)})
    t = g.groupby(["name", "condition"], sort=False, dropna=False).agg(
        regions=("checked", "size"), checked=("checked", "sum"), outside=("outside", "sum"),
        outside_ms_p50=("outside_ms", "median"), kernel_regions=("kernel_regions", "sum"),
        kernel_outside=("kernel_outside_ms", "count"),
        kernel_outside_ms_p50=("kernel_outside_ms", "median")).reset_index()
    t = t.rename(columns={"name": "engine"}).assign(
        trace=ti, outside_share=(t["outside"] / t["checked"].where(t["checked"] > 0)))
    for c in ("regions", "checked", "outside", "kernel_regions", "kernel_outside"):
        t[c] = t[c].astype(np.int64)
    for c in ("outside_share", "outside_ms_p50", "kernel_outside_ms_p50"):
        t[c] = t[c].astype("float64")
    return t[COLUMNS]


def note(table: pd.DataFrame) -> str:
    """One sentence when regions had GPU work outside their events (in at least NOTE_SHARE
    of a group's checked regions or kernel-traced ones: one late wake-up is no finding),
    else ""."""
    if table.empty:
        return ""
    share_k = table["kernel_outside"] / table["kernel_regions"].where(table["kernel_regions"] > 0)
    table = table[(table["outside_share"] >= NOTE_SHARE) | (share_k >= NOTE_SHARE)]
    if table.empty:
        return ""
    checked, out = int(table["checked"].sum()), int(table["outside"].sum())
    kr, ko = int(table["kernel_regions"].sum()), int(table["kernel_outside"].sum())
    parts = []
    if out:
        med = float(np.nanmedian(table.loc[table["outside"] > 0, "outside_ms_p50"]))
        parts.append(f"{out} of {checked} checked regions ({out / checked:.0%}) had GPU work "
                     f"outside the timed stream (the device was busy {med:.2f} ms after the "
                     f"end event)")
    if ko:
        parts.append(f"{ko} of {kr} regions ({ko / kr:.0%}) launched kernels on another "
                     f"stream than their events")
    if not parts:
        return ""
    names = ", ".join(dict.fromkeys(str(n) for n in table.loc[
        (table["outside"] > 0) | (table["kernel_outside"] > 0), "engine"]))
    return ("; ".join(parts) + f" ({names}): their latency leaves that work out. Pass the "
            "stream the work runs on (stream=...), or stream='device' to bracket the whole "
            "device.")
