"""Chrome trace-event JSON: one timeline for ui.perfetto.dev and chrome://tracing.

One process per trace and GPU, named so that traces never share a name ("trace 0: run.parquet,
GPU 0 (NVIDIA H100 80GB HBM3)"), with these tracks (threads), each named by a metadata event:

- TID_INFERENCE, TID_SPAN: inferences and spans (GPU start -> end, CUDA events), as slices;
- TID_HOST: the host side of each inference (enqueue -> synchronize returned);
- TID_CONDITION, TID_EPISODE: the analysis: each engine and condition with its verdict, its
  jump and stable iterations, and its episodes (iterations mapped to time by the inferences);
- TID_STREAM + k: one per CUDA stream, its kernels, copies and memsets (the `kernels` table,
  recorded with --kernels); TID_OWN: gpuwatch's own records there (the regions' CUDA events,
  the in-band clock probes), apart from the program's work;
- TID_TELEMETRY: the telemetry as counter tracks, a point where a value changes; a counter with
  more than MAX_COUNTER_POINTS changes is decimated (min and max of equal blocks), and an
  instant event on the process says so.

Slices that would overlap on one track without nesting go to extra lanes (the same track name
with "lane N", tid + LANE_TID * N), as the format requires. Times are microseconds (`ts`,
`dur`) from the trace's origin, `otherData.traces[i].t0_ns` (Unix epoch ns: its first event;
traces recorded at overlapping times share one and stay aligned): differences are taken in
integer ns and written as exact decimals, never through a float epoch. The document is produced
in chunks (`chunks()`, `write()`), so a big trace streams to its file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..analysis.pipeline import NO_CONDITION, Analysis
from ..trace import Trace
from .base import Renderer, write_text

COUNTERS = (("sm_clock_mhz", "SM clock (MHz)"), ("mem_clock_mhz", "memory clock (MHz)"),
            ("power_w", "power (W)"), ("pstate", "P-state"),
            ("clock_event_reasons", "clock-event reasons (bits)"),
            ("temperature_c", "temperature (C)"), ("gpu_util_pct", "GPU util (%)"))
INBAND_COUNTER = ("sm_clock_inband_mhz", "SM clock, in-band, per inference (MHz)")
MAX_COUNTER_POINTS = 100_000  # per counter, trace and GPU: more changes than this are decimated

TID_INFERENCE, TID_SPAN, TID_HOST = 1, 2, 3
TID_CONDITION, TID_EPISODE, TID_OWN, TID_TELEMETRY = 4, 5, 6, 7
TID_STREAM = 100  # + the stream's rank among the GPU's streams
LANE_TID = 10_000  # a track's lane N is tid + N * LANE_TID
MAX_LANES = 64  # beyond this, slices share the last lane (the viewer flags the overlap)
TRACK_NAMES = {TID_INFERENCE: "inferences", TID_SPAN: "spans",
               TID_HOST: "host: enqueue -> done",
               TID_CONDITION: "conditions (analysis: verdict, jump, stable)",
               TID_EPISODE: "episodes (analysis)",
               TID_OWN: "gpuwatch's own records (region CUDA events, clock probes)",
               TID_TELEMETRY: "telemetry"}
PID_PER_TRACE = 1000  # pid = (trace index + 1) * PID_PER_TRACE + GPU index (never 0)
# kernels-table rows that are gpuwatch's, not the program's: by kind, and the in-band clock
# probe by name (bindings/probe.py PROBE_KERNEL: CUPTI reports it as a plain kernel)
OWN_KINDS = ("cuda_event", "probe")
OWN_KERNEL_NAMES = ("gpuwatch_clock_probe",)
BATCH_EVENTS = 8192  # events per yielded chunk
BLOCK_ROWS = 65_536  # kernel rows turned into Python values at a time


class PerfettoRenderer(Renderer):
    """The analysis and its traces as one Chrome trace-event JSON timeline."""

    def render(self, analysis: Analysis) -> str:
        return "".join(self.chunks(analysis))

    def write(self, analysis: Analysis, path: str | Path) -> Path:
        """Stream the document to `path` (the whole text is never held in memory)."""
        return write_text(path, self.chunks(analysis))

    def chunks(self, analysis: Analysis) -> Iterator[str]:
        """The JSON document in pieces of about BATCH_EVENTS events (stream it to a file)."""
        t0_ns = _origins_ns(analysis)
        other = {
            "time_base": "ts and dur: microseconds since the trace's t0_ns (Unix epoch ns: its "
                         "first event; traces recorded at overlapping times share one)",
            "traces": [{"index": ti, "path": None if t.path is None else str(t.path),
                        "simulated": t.simulated, "t0_ns": t0_ns[ti]}
                       for ti, t in enumerate(analysis.traces)],
            "verdict": analysis.verdict,
        }
        # (no displayTimeUnit: older Perfetto versions read "ms" there as the unit of ts)
        yield '{"otherData":' + json.dumps(other, default=str) + ',"traceEvents":[\n'
        sep, batch = "", []
        for ev in _events(analysis, t0_ns):
            batch.append(sep + ev)
            sep = ",\n"
            if len(batch) >= BATCH_EVENTS:
                yield "".join(batch)
                batch = []
        yield "".join(batch) + "\n]}\n"


# -- the events --------------------------------------------------------------------------------
def _events(analysis: Analysis, origins_ns: Sequence[int]) -> Iterator[str]:
    """Every event, one JSON object (text) each: per trace, the metadata, then the tracks."""
    for ti, tr in enumerate(analysis.traces):
        t0_ns = origins_ns[ti]
        inf = _inferences(analysis, ti)
        kern = _kernel_columns(tr.kernels)
        gpus = _gpus(tr, inf, kern)
        names = _track_names(ti, tr, gpus, kern)
        for gpu in gpus:
            pid = _pid(ti, gpu)
            yield _meta("process_name", pid, 0, names[(pid, None)])
            yield _json({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                         "args": {"sort_index": pid}})
        used: set[tuple[int, int]] = set()  # the tracks that got events: named below
        yield from _inference_events(ti, inf, t0_ns, used)
        yield from _analysis_events(analysis, ti, inf, t0_ns, used)
        if kern is not None:
            yield from _kernel_events(ti, kern, t0_ns, used)
        yield from _counter_events(ti, tr, inf, t0_ns, used)
        for pid, tid in sorted(used):  # (a lane beyond the first: its track's name, "lane N")
            lane, base = tid // LANE_TID, tid % LANE_TID
            name = names.get((pid, base), f"track {base}")
            yield _meta("thread_name", pid, tid, f"{name}, lane {lane + 1}" if lane else name)
            yield _json({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                         "args": {"sort_index": base * 100 + lane}})


def _track_names(ti: int, tr: Trace, gpus: Sequence[int],
                 kern: dict[str, Any] | None) -> dict[tuple[int, int | None], str]:
    """(pid, None) -> process name, (pid, tid) -> track name, for every GPU of the trace."""
    devices = {int(d.get("index", 0)): d for d in tr.meta.get("devices", [])
               if isinstance(d, dict)}
    file = tr.path.name if tr.path is not None else "(in memory)"
    out: dict[tuple[int, int | None], str] = {}
    for gpu in gpus:
        pid = _pid(ti, gpu)
        dev = devices.get(gpu, {})
        model = str(dev.get("name") or "unknown model")
        if tr.simulated and "simul" not in model.lower():
            model += ", simulated"
        out[(pid, None)] = f"trace {ti}: {file}, GPU {gpu} ({model})"
        for tid, name in TRACK_NAMES.items():
            out[(pid, tid)] = name
        if kern is not None:
            timed = set(kern["event_streams"].get(gpu, ()))
            for rank, sid in enumerate(kern["streams"].get(gpu, ())):
                out[(pid, TID_STREAM + rank)] = (
                    ("CUDA stream (none recorded)" if sid < 0 else f"CUDA stream {sid}")
                    + (" (timed regions)" if sid in timed else ""))
    return out


def _inference_events(ti: int, inf: pd.DataFrame, t0_ns: int,
                      used: set[tuple[int, int]]) -> Iterator[str]:
    """Inferences and spans on their tracks, and each inference's host side."""
    if inf.empty:
        return
    n = len(inf)
    start, end = _ints(inf["start_ns"])[0], _ints(inf["end_ns"])[0]
    gpu = _ints(inf["gpu"])[0]
    kind = inf["kind"].astype(object).to_numpy()
    is_inf = kind == "inference"
    kind_js = _json_strings(inf["kind"])
    names = _json_strings(inf["name"])
    cond = _json_strings(inf["condition"]) if "condition" in inf else None
    it, it_ok = _column_ints(inf, "iteration")
    ms = inf["gpu_ms"].to_numpy(dtype="float64", na_value=np.nan) if "gpu_ms" in inf else None
    warm = inf["warmup"].fillna(False).astype(bool).to_numpy() if "warmup" in inf else None
    rid, rid_ok = _column_ints(inf, "region_id")
    err = inf["error"].astype(object).to_numpy() if "error" in inf else np.full(n, None)
    tid = np.where(is_inf, TID_INFERENCE, TID_SPAN)
    tid = tid + LANE_TID * _lanes_by(start, end, gpu * 10 + tid)
    pid = (ti + 1) * PID_PER_TRACE + gpu
    used.update(_pairs(pid, tid))
    for i, (p, t, s_ns, e_ns) in enumerate(zip(pid.tolist(), tid.tolist(), start.tolist(),
                                               end.tolist())):
        args = [f'"condition":{cond[i]}'] if cond is not None else []
        if it_ok[i]:
            args.append(f'"iteration":{it[i]}')
        if ms is not None:
            args.append(f'"gpu_ms":{_num(ms[i])}')
        if warm is not None:
            args.append(f'"warmup":{"true" if warm[i] else "false"}')
        if rid_ok[i]:
            args.append(f'"region_id":{rid[i]}')
        if _ok(err[i]):
            args.append(f'"error":{json.dumps(str(err[i]))}')
        yield (f'{{"ph":"X","cat":{kind_js[i]},"name":{names[i]},"pid":{p},"tid":{t},'
               f'"ts":{_us(s_ns - t0_ns)},"dur":{_us(e_ns - s_ns)},"args":{{{",".join(args)}}}}}')
    # the host's side: enqueue -> done where the program's synchronise told us when it was
    # done, else just the enqueue (host clock, the trace's time base)
    hs, hs_ok = _column_ints(inf, "host_start_ns")
    he, he_ok = _column_ints(inf, "host_end_ns")
    hq, hq_ok = _column_ints(inf, "host_enqueued_ns")
    h_end = np.where(he_ok, he, hq)
    rows = np.flatnonzero(is_inf & hs_ok & (he_ok | hq_ok) & (h_end >= hs))
    if not rows.size:
        return
    htid = TID_HOST + LANE_TID * _lanes_by(hs[rows], h_end[rows], gpu[rows])
    used.update(_pairs(pid[rows], htid))
    for p, t, s_ns, e_ns, done in zip(pid[rows].tolist(), htid.tolist(), hs[rows].tolist(),
                                      h_end[rows].tolist(), he_ok[rows].tolist()):
        name = '"host"' if done else '"host enqueue"'
        yield (f'{{"ph":"X","cat":"host","name":{name},"pid":{p},"tid":{t},'
               f'"ts":{_us(s_ns - t0_ns)},"dur":{_us(e_ns - s_ns)}}}')


def _analysis_events(analysis: Analysis, ti: int, inf: pd.DataFrame, t0_ns: int,
                     used: set[tuple[int, int]]) -> Iterator[str]:
    """The analysis on the timeline: each engine and condition as a slice with its verdict
    (and its jump and stable iterations), and each episode the verdicts report, with its
    iterations mapped to time through the inferences' GPU start and end."""
    v = analysis.verdicts
    wv = analysis.wall_verdicts
    if inf.empty or ((v is None or v.empty or "trace" not in v)
                     and (wv is None or wv.empty or "start_ns" not in wv)):
        return
    measured = inf[(inf["kind"] == "inference")]
    groups = {k: g for k, g in measured.groupby(["name", "condition"], sort=False)}
    lay = analysis.layers
    layer_rows = ({(r.engine, r.condition): r for r in lay[lay["trace"] == ti].itertuples()}
                  if lay is not None and not lay.empty and "trace" in lay else {})
    spans: list[tuple[int, int, int, int, str]] = []  # (start ns, end ns, gpu, tid, event)
    if wv is not None and not wv.empty and "start_ns" in wv:
        # episodes of the latency the user sees (call -> result), from their first call to
        # their last result
        gpu0 = int(inf["gpu"].iloc[0])
        for row in wv[(wv["trace"] == ti) & wv["start_ns"].notna()].to_dict("records"):
            info = {k: _plain(row.get(k)) for k in ("engine", "condition", "episode",
                                                      "cause_code", "candidate_code",
                                                      "extra_ms", "share", "latency_ms",
                                                      "reference_ms", "sentence")}
            info["latency"] = "call -> result"
            name = f"call -> result episode: {row.get('cause_code') or 'change'}"
            spans.append((int(row["start_ns"]), int(row["end_ns"]), gpu0, TID_EPISODE,
                          _slice_json(name, "episode", info)))
    for row in (v[v["trace"] == ti].to_dict("records") if v is not None and not v.empty
                and "trace" in v else []):
        g = groups.get((row["engine"], row["condition"]))
        if g is None or g.empty:
            continue
        gpu = int(g["gpu"].iloc[0])
        info = {k: _plain(row.get(k)) for k in ("engine", "condition", "cause_code",
                                                  "candidate_code", "extra_ms", "share",
                                                  "latency_ms", "reference_ms", "sentence")}
        if _ok(row.get("episode")):
            a, b = _plain(row.get("first_iter")), _plain(row.get("last_iter"))
            if a is None or b is None:
                continue
            t = _iteration_times(g, int(a), int(b))
            if t is None:
                continue
            info.update(episode=_plain(row.get("episode")), first_iter=int(a), last_iter=int(b))
            name = f"episode: {row.get('cause_code') or row.get('cause') or 'change'}"
            spans.append((t[0], t[1], gpu, TID_EPISODE, _slice_json(name, "episode", info)))
            continue
        s_ns, e_ns = int(g["start_ns"].min()), int(g["end_ns"].max())
        code = row.get("cause_code")
        name = f"{row['engine']} {row['condition']}" + (f": {code}" if _ok(code) else "")
        spans.append((s_ns, e_ns, gpu, TID_CONDITION, _slice_json(name, "condition", info)))
        lr = layer_rows.get((row["engine"], row["condition"]))
        if lr is not None and bool(lr.layered):
            for label, it in (("jump (layer onset)", lr.onset_iter),
                              ("stable (final plateau)", lr.stable_iter)):
                t = _iteration_times(g, int(it), int(it)) if _ok(it) else None
                if t is not None:
                    spans.append((t[0], t[1], gpu, TID_CONDITION, _slice_json(
                        f"{label}: iteration {int(it)}", "layers",
                        {"engine": row["engine"], "condition": row["condition"]})))
    if not spans:
        return
    s = np.array([x[0] for x in spans], np.int64)
    e = np.array([x[1] for x in spans], np.int64)
    key = np.array([x[2] * 10 + x[3] for x in spans], np.int64)
    lanes = _lanes_by(s, e, key)
    for (s_ns, e_ns, gpu, tid, body), lane in zip(spans, lanes):
        pid, lane_tid = _pid(ti, gpu), tid + LANE_TID * int(lane)
        used.add((pid, lane_tid))
        yield (f'{{"ph":"X",{body},"pid":{pid},"tid":{lane_tid},"ts":{_us(s_ns - t0_ns)},'
               f'"dur":{_us(e_ns - s_ns)}}}')


def _kernel_events(ti: int, k: dict[str, Any], t0_ns: int,
                   used: set[tuple[int, int]]) -> Iterator[str]:
    """Kernels, copies and memsets on their streams' tracks; gpuwatch's own records (the
    regions' CUDA events, the clock probes) on a track of their own."""
    start, end, gpu = k["start_ns"], k["end_ns"], k["gpu"]
    tid = np.where(k["own"], TID_OWN, TID_STREAM + k["rank"])
    tid = tid + LANE_TID * _lanes_by(start, end, gpu * 1_000_000 + tid)
    pid = (ti + 1) * PID_PER_TRACE + gpu
    used.update(_pairs(pid, tid))
    name_js, kind_js = k["name_js"], k["kind_js"]
    for b0 in range(0, len(start), BLOCK_ROWS):  # (Python lists of one block at a time)
        sl = slice(b0, b0 + BLOCK_ROWS)
        for p, t, s_ns, e_ns, kc, nc, ev, own, c, c_ok, nb, nb_ok, st in zip(
                pid[sl].tolist(), tid[sl].tolist(), start[sl].tolist(), end[sl].tolist(),
                k["kinds"][sl].tolist(), k["names"][sl].tolist(), k["is_event"][sl].tolist(),
                k["own"][sl].tolist(), k["corr"][sl].tolist(), k["corr_ok"][sl].tolist(),
                k["bytes"][sl].tolist(), k["bytes_ok"][sl].tolist(), k["stream"][sl].tolist()):
            if ev:  # a region's start or end event; its tag is event_tag(region_id, end)
                name = '"region end event"' if nc == k["end_code"] else '"region start event"'
                args = f'"region_id":{c // 2}' if c_ok else ""
            else:
                name = name_js[nc]
                args = f'"correlation_id":{c}' if c_ok else ""
                if nb_ok:
                    args += ("," if args else "") + f'"bytes":{nb}'
                if not own:
                    args += ("," if args else "") + f'"stream":{st}'
            yield (f'{{"ph":"X","cat":{kind_js[kc]},"name":{name},"pid":{p},"tid":{t},'
                   f'"ts":{_us(s_ns - t0_ns)},"dur":{_us(e_ns - s_ns)},"args":{{{args}}}}}')


def _counter_events(ti: int, tr: Trace, inf: pd.DataFrame, t0_ns: int,
                    used: set[tuple[int, int]]) -> Iterator[str]:
    """Telemetry as counters, a point where a value changes, decimated past
    MAX_COUNTER_POINTS (an instant event on the process says so); and the in-band SM clock
    each inference measured, at its GPU start."""
    s = tr.samples
    series: list[tuple[int, str, str, np.ndarray, np.ndarray]] = []
    if len(s) and "t_ns" in s:
        t_all, t_ok = _ints(s["t_ns"])
        g_all = _ints(s["gpu"])[0] if "gpu" in s else np.zeros(len(s), np.int64)
        for gpu in np.unique(g_all[t_ok]):
            m = t_ok & (g_all == gpu)
            for col, label in COUNTERS:
                if col in s:
                    v = s[col].to_numpy(dtype="float64", na_value=np.nan)[m]
                    series.append((int(gpu), col, label, t_all[m], v))
    if not inf.empty and INBAND_COUNTER[0] in inf:
        rows = inf[inf["kind"] == "inference"]
        for gpu, g in rows.groupby("gpu"):
            series.append((int(gpu), INBAND_COUNTER[0], INBAND_COUNTER[1],
                           _ints(g["start_ns"])[0],
                           g[INBAND_COUNTER[0]].to_numpy(dtype="float64", na_value=np.nan)))
    for gpu, col, label, t_ns, v in series:
        ok = np.isfinite(v)  # (a missing reading is no point; the counter holds its value)
        t_ns, v = t_ns[ok], v[ok]
        if v.size == 0:
            continue
        order = np.argsort(t_ns, kind="stable")
        t_ns, v = t_ns[order], v[order]
        changes = np.concatenate([[True], v[1:] != v[:-1]])
        t_ns, v = t_ns[changes], v[changes]
        pid, lab = _pid(ti, gpu), json.dumps(label)
        used.add((pid, TID_TELEMETRY))
        n_changes = int(v.size)
        if n_changes > MAX_COUNTER_POINTS:
            keep = _decimate(v, MAX_COUNTER_POINTS)
            t_ns, v = t_ns[keep], v[keep]
            yield _instant(f"gpuwatch: {label} decimated", pid, TID_TELEMETRY,
                           int(t_ns[0]) - t0_ns,
                           {"counter": label, "readings": int(ok.sum()), "changes": n_changes,
                            "points": int(v.size),
                            "method": f"the minimum and maximum of each of "
                                      f"{MAX_COUNTER_POINTS // 2} equal blocks of the changed "
                                      f"readings, and the first and last (every one would "
                                      f"slow the viewer down)"})
        for t, val in zip(t_ns.tolist(), v.tolist()):
            yield (f'{{"ph":"C","name":{lab},"pid":{pid},"tid":{TID_TELEMETRY},'
                   f'"ts":{_us(t - t0_ns)},"args":{{"{col}":{_num(val)}}}}}')


# -- tables ------------------------------------------------------------------------------------
def _inferences(analysis: Analysis, ti: int) -> pd.DataFrame:
    """Trace `ti`'s inferences and spans with a GPU start and end: the analysis's merged table
    (start/end tightened to the regions' CUDA events where the kernel timeline has them,
    conditions named as the verdicts name them), else the trace's own rows."""
    m = analysis.regions
    if m is not None and not m.empty and "trace" in m:
        return m[m["trace"] == ti]
    inf = analysis.traces[ti].inferences.dropna(subset=["start_ns", "end_ns"])
    if "condition" in inf and inf["condition"].isna().any():
        inf = inf.assign(condition=inf["condition"].astype(object).where(
            inf["condition"].notna(), NO_CONDITION))
    return inf


def _kernel_columns(k: pd.DataFrame) -> dict[str, Any] | None:
    """The kernels table as numpy columns, with each row's stream rank among its GPU's streams
    (rows with no start or end, or that end before they start, are left out); None without
    rows."""
    if k is None or len(k) == 0 or not {"start_ns", "end_ns", "kind"} <= set(k.columns):
        return None
    start, s_ok = _ints(k["start_ns"])
    end, e_ok = _ints(k["end_ns"])
    keep = s_ok & e_ok & (end >= start) & ~k["kind"].isin(("sync", "ctx_switch")).to_numpy()
    # (host waits; CUPTI context switches are instants, not GPU work)
    if not keep.any():
        return None
    start, end = start[keep], end[keep]
    gpu = _ints(k["gpu"])[0][keep] if "gpu" in k else np.zeros(len(start), np.int64)
    stream, st_ok = _ints(k["stream_id"]) if "stream_id" in k else (
        np.zeros(len(k), np.int64), np.zeros(len(k), bool))
    stream, st_ok = stream[keep], st_ok[keep]
    stream = np.where(st_ok, stream, -1)  # (-1: a record with no stream)
    kinds, kind_uniques = pd.factorize(k["kind"].astype(object).to_numpy()[keep])
    names, name_uniques = pd.factorize(k["name"].astype(object).to_numpy()[keep]
                                       if "name" in k else np.full(len(start), None))
    own_kind = np.isin(kinds, [i for i, u in enumerate(kind_uniques) if u in OWN_KINDS])
    own_name = np.isin(names, [i for i, u in enumerate(name_uniques) if u in OWN_KERNEL_NAMES])
    own = own_kind | own_name
    event_kind = [i for i, u in enumerate(kind_uniques) if u == "cuda_event"]
    is_event = np.isin(kinds, event_kind)
    end_code = next((i for i, u in enumerate(name_uniques) if u == "end"), -2)
    corr, corr_ok = _ints(k["correlation_id"]) if "correlation_id" in k else (
        np.zeros(len(k), np.int64), np.zeros(len(k), bool))
    nbytes, bytes_ok = _ints(k["bytes"]) if "bytes" in k else (
        np.zeros(len(k), np.int64), np.zeros(len(k), bool))
    # each GPU's streams in order of their id: stream track TID_STREAM + rank
    rank = np.zeros(len(start), np.int64)
    streams: dict[int, list[int]] = {}
    event_streams: dict[int, list[int]] = {}
    for g in np.unique(gpu).tolist():
        m = gpu == g
        ids = np.unique(stream[m & ~own])
        streams[g] = ids.tolist()
        rank[m] = np.searchsorted(ids, stream[m]).clip(0, max(len(ids) - 1, 0))
        event_streams[g] = np.unique(stream[m & is_event]).tolist()
    return {"start_ns": start, "end_ns": end, "gpu": gpu, "stream": stream, "own": own,
            "is_event": is_event, "names": names, "end_code": end_code,
            "name_js": [json.dumps("(unnamed)" if not _ok(u) else str(u)) for u in name_uniques],
            "kinds": kinds, "kind_js": [json.dumps(str(u)) for u in kind_uniques],
            "corr": corr[keep], "corr_ok": corr_ok[keep], "bytes": nbytes[keep],
            "bytes_ok": bytes_ok[keep], "rank": rank, "streams": streams,
            "event_streams": event_streams}


def _gpus(tr: Trace, inf: pd.DataFrame, kern: dict[str, Any] | None) -> list[int]:
    """Every GPU index the trace names or has rows for."""
    out = {int(d.get("index", 0)) for d in tr.meta.get("devices", []) if isinstance(d, dict)}
    if not inf.empty:
        out |= set(_ints(inf["gpu"])[0].tolist())
    if kern is not None:
        out |= set(np.unique(kern["gpu"]).tolist())
    if len(tr.samples) and "gpu" in tr.samples:
        out |= set(np.unique(_ints(tr.samples["gpu"])[0]).tolist())
    return sorted(out)


def _origins_ns(analysis: Analysis) -> list[int]:
    """Each trace's ts 0 (Unix epoch ns): its first event, or where traces were recorded at
    overlapping times (they ran together), the first event of them all, so that they stay
    aligned; traces recorded at other times each start at 0, side by side."""
    spans: list[tuple[int, int, int]] = []  # (first ns, last ns, trace)
    for ti, tr in enumerate(analysis.traces):
        inf = _inferences(analysis, ti)
        cols: list[pd.Series] = []
        if len(tr.samples) and "t_ns" in tr.samples:
            cols.append(tr.samples["t_ns"])
        if not inf.empty:
            cols += [inf[c] for c in ("start_ns", "end_ns", "host_start_ns", "host_end_ns")
                     if c in inf]
        if len(tr.kernels):
            cols += [tr.kernels[c] for c in ("start_ns", "end_ns") if c in tr.kernels]
        lo, hi = [], []
        for c in cols:
            v, ok = _ints(c)
            if ok.any():
                lo.append(int(v[ok].min()))
                hi.append(int(v[ok].max()))
        if lo:
            spans.append((min(lo), max(hi), ti))
    out = [0] * len(analysis.traces)
    group_t0, group_end = 0, None
    for first, last, ti in sorted(spans):
        if group_end is None or first > group_end:  # a new group of overlapping traces
            group_t0, group_end = first, last
        group_end = max(group_end, last)
        out[ti] = group_t0
    return out


def _iteration_times(g: pd.DataFrame, first_iter: int, last_iter: int) -> tuple[int, int] | None:
    """GPU start of iteration `first_iter` and end of `last_iter` of one engine and condition
    (measured rows; numbered by start time where numbers repeat, as the analysis does)."""
    g = g[~g["warmup"].fillna(False).astype(bool)] if "warmup" in g else g
    if g.empty:
        return None
    it = g["iteration"]
    if it.duplicated().any():
        g = g.sort_values("start_ns", kind="stable")
        it = pd.Series(np.arange(len(g)), index=g.index)
    sel = g[((it >= first_iter) & (it <= last_iter)).fillna(False).astype(bool)]
    if sel.empty:
        return None
    return int(sel["start_ns"].min()), int(sel["end_ns"].max())


# -- helpers -----------------------------------------------------------------------------------
def _pid(ti: int, gpu: int) -> int:
    return (ti + 1) * PID_PER_TRACE + int(gpu)


def _us(ns: int) -> str:
    """Integer ns as an exact decimal number of microseconds (the format's unit)."""
    if ns < 0:
        return "-" + _us(-ns)
    q, r = divmod(ns, 1000)
    return f"{q}.{r:03d}" if r else str(q)


def _num(v: float) -> str:
    """A JSON number (null where it is not finite)."""
    return repr(float(v)) if math.isfinite(v) else "null"


def _json(ev: dict[str, Any]) -> str:
    """A low-volume event with no time (metadata) as JSON text."""
    return json.dumps(ev, separators=(",", ":"), default=str)


def _instant(name: str, pid: int, tid: int, ts_ns: int, args: dict[str, Any]) -> str:
    """A process-scoped instant event at `ts_ns` (ns from the origin)."""
    return (f'{{"ph":"i","s":"p","name":{json.dumps(name)},"pid":{pid},"tid":{tid},'
            f'"ts":{_us(ts_ns)},"args":{json.dumps(args, default=str)}}}')


def _meta(what: str, pid: int, tid: int, name: str) -> str:
    return _json({"ph": "M", "name": what, "pid": pid, "tid": tid, "args": {"name": name}})


def _slice_json(name: str, cat: str, args: dict[str, Any]) -> str:
    """The name, category and args members of a slice (without braces)."""
    return json.dumps({"name": name, "cat": cat, "args": args}, separators=(",", ":"),
                      default=str)[1:-1]


def _ints(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, present mask) of an integer column, nullable or not; never through a
    float where the column is integer (epoch ns do not fit a float's 53 bits)."""
    numpy = isinstance(s.dtype, np.dtype)  # (else pandas' nullable Int64: NA where missing)
    if numpy and s.dtype.kind in "iu":
        return s.to_numpy(np.int64), np.ones(len(s), bool)
    ok = s.notna().to_numpy()
    if numpy and s.dtype.kind == "f":  # (already a float: NaN where missing)
        v = s.to_numpy(np.float64)
        return np.where(ok, v, 0).astype(np.int64), ok
    return s.to_numpy(dtype=np.int64, na_value=0), ok


def _column_ints(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """_ints of a column, all missing where the table has no such column."""
    if col in df:
        return _ints(df[col])
    return np.zeros(len(df), np.int64), np.zeros(len(df), bool)


def _pairs(pid: np.ndarray, tid: np.ndarray) -> set[tuple[int, int]]:
    """The distinct (pid, tid) pairs."""
    if not len(pid):
        return set()
    both = np.unique(np.stack([pid, tid], axis=1), axis=0)
    return {(int(p), int(t)) for p, t in both}


def _json_strings(s: pd.Series) -> list[str]:
    """Each value as a JSON string (null where missing), escaped once per distinct value."""
    codes, uniques = pd.factorize(s.astype(object).to_numpy())
    js = [json.dumps(str(u)) for u in uniques] + ["null"]
    return [js[c] for c in codes.tolist()]  # (code -1, a missing value: the last, null)


def _lanes_by(start_ns: np.ndarray, end_ns: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The lane of each slice within its track (`key`): see _lanes."""
    lanes = np.zeros(len(start_ns), np.int64)
    if len(start_ns) < 2:
        return lanes
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    for idx in np.split(order, cuts):
        lanes[idx] = _lanes(start_ns[idx], end_ns[idx])
    return lanes


def _lanes(start_ns: np.ndarray, end_ns: np.ndarray) -> np.ndarray:
    """The lane of each slice of one track: 0 unless it overlaps an earlier one without
    nesting inside it (the format nests slices; a partial overlap is dropped or flagged).
    Greedy: the first lane where the slice starts after the open slices end or nests in the
    innermost one; at most MAX_LANES."""
    n = len(start_ns)
    lanes = np.zeros(n, np.int64)
    if n < 2:
        return lanes
    order = np.lexsort((-end_ns, start_ns))  # by start; of equal starts, the longest first
    s, e = start_ns[order], end_ns[order]
    if bool(np.all(s[1:] >= np.maximum.accumulate(e)[:-1])):
        return lanes  # no overlap at all (the usual case)
    stacks: list[list[int]] = []  # per lane, the ends of its open (nested) slices
    out = np.empty(n, np.int64)
    for i, (a, b) in enumerate(zip(s.tolist(), e.tolist())):
        for j, st in enumerate(stacks):
            while st and st[-1] <= a:
                st.pop()
            if not st or b <= st[-1] or j == MAX_LANES - 1:
                st.append(b)
                out[i] = j
                break
        else:
            stacks.append([b])
            out[i] = len(stacks) - 1
    lanes[order] = out
    return lanes


def _decimate(v: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (in order) of the minimum and maximum of each of max_points // 2 equal blocks
    of `v`, and its first and last: the shape of a long series, its spikes kept."""
    n = v.size
    blocks = max(max_points // 2, 1)
    size = -(-n // blocks)  # ceil
    full = n // size * size
    base = np.arange(0, full, size)
    body = v[:full].reshape(-1, size)
    picks = [base + body.argmin(axis=1), base + body.argmax(axis=1), np.array([0, n - 1])]
    if full < n:
        tail = v[full:]
        picks.append(np.array([full + int(tail.argmin()), full + int(tail.argmax())]))
    return np.unique(np.concatenate(picks))


def _ok(v: Any) -> bool:
    """Whether a table value is present (not None, NaN, NA)."""
    if v is None or v is pd.NA:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    try:
        return not bool(pd.isna(v))
    except (TypeError, ValueError):  # (an array-like value: present)
        return True


def _plain(v: Any) -> Any:
    """A table value as a plain JSON-able Python value (None where missing)."""
    if not _ok(v):
        return None
    return v.item() if hasattr(v, "item") else v
