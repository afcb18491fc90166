"""Chrome trace-event JSON (opens in ui.perfetto.dev and chrome://tracing).

One process per GPU. Inferences and spans are complete ("X") slices on their own tracks, the host
side of each inference (enqueue -> synchronize returned) on a third. Telemetry becomes counter
("C") tracks, emitted only when a value changes, which keeps long traces small. Timestamps are
microseconds from the trace's first event; the absolute start is in the metadata.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

import numpy as np

from ..analysis import Analysis
from .base import Renderer

COUNTERS = (("sm_clock_mhz", "SM clock (MHz)"), ("mem_clock_mhz", "memory clock (MHz)"),
            ("power_w", "power (W)"), ("pstate", "P-state"),
            ("clock_event_reasons", "clock-event reasons (bits)"),
            ("temperature_c", "temperature (C)"), ("gpu_util_pct", "GPU util (%)"))
TID = {"inference": 1, "span": 2, "host": 3}


class PerfettoRenderer(Renderer):
    def render(self, analysis: Analysis) -> str:
        return "".join(self.chunks(analysis))

    def chunks(self, analysis: Analysis) -> Iterator[str]:
        """The JSON document in pieces (stream it to a file for big traces)."""
        t0 = min((int(t.samples["t_ns"].min()) for t in analysis.traces if len(t.samples)),
                 default=0)
        starts = [int(t.inferences["t_ns"].min()) for t in analysis.traces if len(t.inferences)]
        if starts:
            t0 = min([t0] + starts) if t0 else min(starts)
        yield '{"displayTimeUnit":"ms","otherData":' + json.dumps(
            {"gpuwatch_t0_ns": t0, "traces": [str(t.path) for t in analysis.traces]}) + \
            ',"traceEvents":[\n'
        first = True
        for ev in self._events(analysis, t0):
            yield ("" if first else ",\n") + json.dumps(ev, separators=(",", ":"))
            first = False
        yield "\n]}\n"

    def _events(self, analysis: Analysis, t0: int) -> Iterator[dict[str, Any]]:
        for ti, tr in enumerate(analysis.traces):
            for dev in tr.meta.get("devices", []):
                pid = ti * 1000 + int(dev.get("index", 0))
                sim = " (simulated)" if tr.simulated else ""
                yield {"ph": "M", "name": "process_name", "pid": pid,
                       "args": {"name": f"GPU {dev.get('index')}: {dev.get('name')}{sim}"}}
                for name, tid in TID.items():
                    yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                           "args": {"name": {"inference": "inferences", "span": "spans",
                                             "host": "host: enqueue -> done"}[name]}}
            inf = tr.inferences.dropna(subset=["start_ns", "end_ns"])
            cols = {c: inf[c].to_numpy() for c in ("gpu", "kind", "name", "condition", "iteration",
                                                   "start_ns", "end_ns", "gpu_ms", "warmup",
                                                   "host_start_ns", "host_enqueued_ns",
                                                   "host_end_ns")}
            for i in range(len(inf)):
                pid = ti * 1000 + int(cols["gpu"][i])
                args = {"condition": _py(cols["condition"][i]), "iteration": _py(cols["iteration"][i]),
                        "gpu_ms": _py(cols["gpu_ms"][i]), "warmup": _py(cols["warmup"][i])}
                yield {"ph": "X", "name": str(cols["name"][i]), "pid": pid,
                       "tid": TID.get(str(cols["kind"][i]), 2),
                       "ts": (int(cols["start_ns"][i]) - t0) / 1e3,
                       "dur": (int(cols["end_ns"][i]) - int(cols["start_ns"][i])) / 1e3,
                       "args": args}
                # the host's side: enqueue -> done where the program's synchronise told us
                # when it was done, else just the enqueue
                hs, he = cols["host_start_ns"][i], cols["host_end_ns"][i]
                name = "host"
                if not _ok(he):
                    he, name = cols["host_enqueued_ns"][i], "host enqueue"
                if cols["kind"][i] == "inference" and _ok(hs) and _ok(he):
                    yield {"ph": "X", "name": name, "pid": pid, "tid": TID["host"],
                           "ts": (int(hs) - t0) / 1e3, "dur": (int(he) - int(hs)) / 1e3}
            s = tr.samples
            for gpu, g in s.groupby("gpu"):
                pid = ti * 1000 + int(gpu)
                t = g["t_ns"].to_numpy(np.int64)
                for col, label in COUNTERS:
                    v = g[col].to_numpy(dtype="float64", na_value=np.nan)
                    ok = ~np.isnan(v)
                    tv, vv = t[ok], v[ok]
                    if vv.size == 0:
                        continue
                    keep = np.concatenate([[True], vv[1:] != vv[:-1]])
                    for ts, val in zip(tv[keep], vv[keep]):
                        yield {"ph": "C", "name": label, "pid": pid, "ts": (int(ts) - t0) / 1e3,
                               "args": {col: float(val)}}


def _ok(v: Any) -> bool:
    return v is not None and v is not np.nan and not (isinstance(v, float) and math.isnan(v)) \
        and str(v) != "<NA>"


def _py(v: Any) -> Any:
    if not _ok(v):
        return None
    return v.item() if hasattr(v, "item") else v
