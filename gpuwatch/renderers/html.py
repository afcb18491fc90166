"""A self-contained HTML report, one a person would send a colleague: the verdict first, then
readable tables, then interactive plots (zoom, hover). It opens offline: the plotting library,
uPlot (MIT, vendored in vendor-js/, ~50 KB), and the plotted data are embedded in the file, and no
matplotlib is needed. Big traces are decimated to at most MAX_POINTS points per plotted series,
keeping the extremes of every bucket so that spikes survive."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__, install_hint
from ..analysis import status
from ..analysis.pipeline import FACTOR_TEXT, Analysis, _usable
from ..analysis.causes import CAUSES
from ..analysis.clock import sentence as clock_sentence
from ..analysis.merge import BOUNDS
from .base import Renderer
from .decimate import MAX_POINTS, Picker, pick, pick_2d
from .text import TextRenderer

VENDOR = Path(__file__).parent / "vendor-js"  # where uPlot lives (package_data)
UPLOT_JS, UPLOT_CSS, UPLOT_LICENSE = "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"
DASH = "\u2014"  # a value that does not exist or means nothing (a share of no change)

# Short names of the attribution factors for the tables (analysis.causes: the one table)
FACTOR_LABEL = {c.factor: c.label for c in CAUSES}

CSS = """*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1100px;
margin:0 auto;padding:1em 1.2em 3em;overflow-wrap:anywhere}
h1{font-size:1.6em;margin:.4em 0 .2em}h2{font-size:1.25em;margin:1.6em 0 .4em;
border-bottom:1px solid #ddd;padding-bottom:.15em}h3{font-size:1.02em;margin:1.1em 0 .3em}
.meta{color:#555;font-size:.92em;margin:.2em 0}
.sim{display:inline-block;background:#fbe3e3;color:#a22;font-weight:600;padding:0 .4em;
border-radius:3px}
.verdict{font-size:1.12em;background:#eef6ee;border-left:5px solid #3a3;padding:.7em 1em;
margin:.6em 0}
ul.sentences{padding-left:1.2em}ul.sentences li{margin:.3em 0}
li.same{color:#555}li.episode,li.wall-episode{margin-left:1.4em;list-style:circle}
.warn{background:#fff6e0;border-left:5px solid #e0a000;padding:.5em 1em;margin:.6em 0}
.note{color:#555;font-size:.9em}
.scroll{overflow-x:auto;max-width:100%;margin:.3em 0 1em}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #d6d6d6;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;font-weight:600}td.t,th.t{text-align:left}
tr.group th{background:#e9eef6;text-align:left;font-weight:600;white-space:normal}
td.na{color:#999}
.plot{width:100%;max-width:100%;overflow:hidden;margin:.2em 0 .2em}
.caption{color:#555;font-size:.88em;margin:0 0 1.2em}
.readout{font-size:.88em;color:#333;min-height:1.4em}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}
details summary{cursor:pointer;color:#345}
footer{margin-top:3em;color:#777;font-size:.85em}
.uplot{font-family:inherit}.u-legend{font-size:12px}"""


# ---------------------------------------------------------------- numbers as a person reads them

def _missing(v: object) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return not math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def fmt_ms(v: object, signed: bool = False) -> str:
    """A duration in ms: 3 significant digits below 1 ms, 2 decimals below 100 ms, 1 above."""
    if _missing(v):
        return DASH
    x = float(v)  # type: ignore[arg-type]
    a = abs(x)
    if a < 5e-7:  # under half a nanosecond: nothing
        return "0"
    d = 1 if a >= 100 else 2 if a >= 1 else min(6, 2 - math.floor(math.log10(a)))
    return f"{x:+.{d}f}" if signed else f"{x:.{d}f}"


def fmt_int(v: object) -> str:
    """A count or an iteration: a whole number (never 56.000)."""
    return DASH if _missing(v) else f"{int(round(float(v))):,}"  # type: ignore[arg-type]


def fmt_pct(share: object) -> str:
    """A share (a fraction) as a percentage; NA for no share."""
    if _missing(share):
        return DASH
    p = 100 * float(share)  # type: ignore[arg-type]
    s = f"{p:.0f}" if abs(p) >= 9.95 else f"{p:.1f}"
    return "0%" if float(s) == 0 else f"{s}%"


def _e(v: object) -> str:
    return html.escape(str(v))


# ---------------------------------------------------------------- tables

Column = tuple[str, str, bool]  # header, tooltip, text (left-aligned) or number


def _table(cols: Sequence[Column], rows: Iterable[Sequence[str] | str]) -> str:
    """A table in its own horizontal scroller (the page never overflows). Cells are plain text;
    a row given as one string is a group heading across all columns."""
    head = "".join(f"<th class='{'t' if text else 'n'}'"
                   + (f" title='{_e(tip)}'" if tip else "") + f">{_e(h)}</th>"
                   for h, tip, text in cols)
    body = []
    for r in rows:
        if isinstance(r, str):
            body.append(f"<tr class='group'><th colspan='{len(cols)}'>{_e(r)}</th></tr>")
            continue
        cells = []
        for (_, _, text), v in zip(cols, r):
            cls = "t" if text else ("n na" if v == DASH else "n")
            cells.append(f"<td class='{cls}'>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table></div>")


def _key(trace: Any, engine: Any, condition: Any, episode: Any = None) -> tuple[int, str, str, str]:
    return (int(trace), str(engine), str(condition), episode if isinstance(episode, str) else "")


def _labeller(a: Analysis) -> Any:
    """How a series is named: its condition, with the engine and trace where there are several."""
    several_traces = len(a.traces) > 1
    engines = set(a.layers["engine"]) if "engine" in a.layers else set()
    several_engines = len(engines) > 1

    def label(trace: Any, engine: Any, condition: Any) -> str:
        parts = ([f"trace {int(trace)}"] if several_traces else []) + (
            [str(engine)] if several_engines else []) + [str(condition)]
        return ", ".join(parts)
    return label


def _layers_table(a: Analysis) -> str:
    lay = a.layers
    if lay.empty:
        return "<p>No measured inferences in the trace(s).</p>"
    several = len(a.traces) > 1
    cols: list[Column] = ([("trace", "which trace (list above)", False)] if several else []) + [
        ("engine", "", True), ("condition", "", True),
        ("gap ms", "idle gap between inferences", False),
        ("n", "measured iterations", False),
        ("base ms", "median latency of the reference (or of the first iterations)", False),
        ("jump at", "first iteration of the first segment clearly above the baseline", False),
        ("stable from", "iteration where the final plateau starts", False),
        ("stable ms", "median latency of the final plateau", False),
        ("ratio", "stable over base", False),
        ("layers", "distinct latency levels", False),
        ("noise ms", "the series' noise (s.d.)", False),
        ("reference", "what the condition is compared with", True)]
    rows = []
    for r in lay.itertuples():
        rows.append(([str(r.trace)] if several else []) + [
            str(r.engine), str(r.condition),
            DASH if _missing(r.gap_ms) else f"{float(r.gap_ms):g}",
            fmt_int(r.n), fmt_ms(r.baseline_ms),
            fmt_int(r.onset_iter) if r.layered else DASH,
            fmt_int(r.stable_iter) if r.layered else DASH,
            fmt_ms(r.final_ms),
            DASH if _missing(r.ratio_to_baseline) else f"{float(r.ratio_to_baseline):.2f}\u00d7",
            fmt_int(r.n_layers), fmt_ms(r.noise_ms), str(r.reference)])
    return _table(cols, rows)


def _attribution_table(a: Analysis) -> str:
    att = a.attribution
    if att.empty:
        return ("<p>Nothing to split: no condition was compared with a reference (a single "
                "condition without a clean jump, or no reference).</p>")
    label = _labeller(a)
    verdicts = {_key(v.trace, v.engine, v.condition, v.episode): v
                for v in a.verdicts.itertuples()} if not a.verdicts.empty else {}
    cols: list[Column] = [
        ("factor", "what the extra latency is attributed to", True),
        ("ms", "contribution to the change in mean latency", False),
        ("95% interval ms", "bootstrap interval of the contribution", False),
        ("share", "of the change; NA where there is no meaningful change to share out", False)]
    rows: list[Sequence[str] | str] = []
    for (ti, eng, cond, ep), g in att.groupby(["trace", "engine", "condition", "episode"],
                                              sort=False, dropna=False):
        v = verdicts.get(_key(ti, eng, cond, ep))
        name = label(ti, eng, cond) + (f", {ep}" if isinstance(ep, str) else "")
        changed = v is not None and isinstance(v.cause, str)
        if v is not None and not _missing(v.reference_ms):
            head = (f"{name}: {fmt_ms(v.latency_ms)} ms vs {fmt_ms(v.reference_ms)} ms, "
                    f"{fmt_ms(v.extra_ms, signed=True)} ms")
        else:
            head = name
        rows.append(head + ("" if changed else
                            " \u2014 no meaningful change (within noise): no shares to give"))
        for r in g.itertuples():
            if r.factor not in ("sm_clock", "unexplained") and abs(r.contribution_ms) <= 1e-9 \
                    and abs(r.ci_low_ms) <= 1e-9 and abs(r.ci_high_ms) <= 1e-9:
                continue  # a factor with nothing measured (all zero) is left out
            rows.append([FACTOR_LABEL.get(r.factor, str(r.factor)),
                         fmt_ms(r.contribution_ms, signed=True),
                         f"{fmt_ms(r.ci_low_ms, signed=True)} \u2026 "
                         f"{fmt_ms(r.ci_high_ms, signed=True)}",
                         (fmt_pct(r.share) + (" (offsets)" if bool(getattr(r, "offsets", False))
                                              else "")) if changed else DASH])
    return (_table(cols, rows) + "<p class='note'>Contributions are to the mean latency, "
            "signed, and add up to the change; shares lie within 0..100% and add up to 100% "
            "over the factors that moved the latency the way it went; a factor that moved it "
            "the other way <i>offsets</i> the change (share 0, its ms kept). Factors with "
            f"nothing measured are left out. SM clock (DVFS) is {_e(FACTOR_TEXT['sm_clock'])}; "
            f"not explained is {_e(FACTOR_TEXT['unexplained'])}.</p>")


def _latency_table(a: Analysis) -> str:
    """The latency the user sees, per condition: its parts (means, which add up) and its tail
    (the same parts over the slowest tenth of the calls)."""
    lat = a.latency
    if lat.empty:
        return ("<p>No region whose call waited for its result: the latency from the call to "
                "the result is unknown (asynchronous calls; time with a gpuwatch engine, "
                "<code>record</code>, or a call that synchronises).</p>")
    label = _labeller(a)
    cols: list[Column] = [
        ("series", "", True), ("n", "", False),
        ("mean ms", "call -> result (a span: its host time)", False),
        ("p50", "", False), ("p90", "", False), ("p99", "", False),
        ("GPU queue, own", "call to the GPU starting the work, behind this program's work", False),
        ("GPU queue, other", "the same while this program's stream was idle", False),
        ("GPU (events)", "", False), ("completion", "end event to the host having it", False),
        ("clock mapping", "what the time base's error leaves", False),
        ("host launch", "call to the last enqueue (overlaps the parts)", False)]
    rows: list[Sequence[str] | str] = []
    for r in lat.to_dict("records"):
        name = label(r["trace"], r["engine"], r["condition"]) + (
            f", {r['episode']}" if isinstance(r.get("episode"), str) else "") + (
            f" ({r['group']})" if r.get("group") not in ("condition", "episode") else "")
        for prefix, title in (("", name), ("slowest10_", "  slowest 10%")):
            if prefix and not any(k.startswith(prefix) for k in r):
                continue
            rows.append([title, fmt_int(r["n"]) if not prefix else "",
                         fmt_ms(r["wall_ms"]) if not prefix else "",
                         fmt_ms(r["wall_p50_ms"]) if not prefix else "",
                         fmt_ms(r["wall_p90_ms"]) if not prefix else "",
                         fmt_ms(r["wall_p99_ms"]) if not prefix else ""] + [
                fmt_ms(r.get(prefix + c)) for c in ("queue_own_ms", "queue_other_ms", "gpu_ms",
                                                    "completion_ms", "residual_ms",
                                                    "host_launch_ms")])
    return _table(cols, rows)


def _spans_table(a: Analysis) -> str:
    sp = a.spans
    if sp.empty:
        return "<p>No spans were timed (record --pre-post, or session.span()).</p>"
    several = len(a.traces) > 1
    cols: list[Column] = ([("trace", "", False)] if several else []) + [
        ("span", "", True), ("condition", "", True), ("n", "", False), ("p50 ms", "", False),
        ("p99 ms", "", False), ("max ms", "", False),
        ("spikes", "over the median by 10 MAD and by half the median", False)]
    rows = [([str(r.trace)] if several else []) + [
        str(r.span), str(r.condition), fmt_int(r.n), fmt_ms(r.p50_ms), fmt_ms(r.p99_ms),
        fmt_ms(r.max_ms), fmt_int(r.spikes)] for r in sp.itertuples()]
    return _table(cols, rows)


def _stream_table(a: Analysis) -> str:
    sc = a.stream_checks
    if sc.empty:
        return "<p>No regions were checked.</p>"
    label = _labeller(a)
    kernels = "kernel_regions" in sc and (sc["kernel_regions"].fillna(0) > 0).any()
    cols: list[Column] = [
        ("series", "", True), ("regions", "timed regions", False),
        ("checked", "regions whose GPU work was checked", False),
        ("outside", "checked regions with GPU work after their end event", False),
        ("share", "of the checked regions", False),
        ("outside ms p50", "how long after the end event the device went idle", False)]
    if kernels:
        cols += [("kernel regions", "regions seen in the kernel timeline", False),
                 ("kernel outside", "of those, with kernels on another stream", False),
                 ("kernel outside ms p50", "", False)]
    rows = []
    for r in sc.itertuples():
        row = [label(r.trace, r.engine, r.condition), fmt_int(r.regions), fmt_int(r.checked),
               fmt_int(r.outside), fmt_pct(r.outside_share) if r.checked else DASH,
               fmt_ms(r.outside_ms_p50)]
        if kernels:
            row += [fmt_int(r.kernel_regions), fmt_int(r.kernel_outside),
                    fmt_ms(r.kernel_outside_ms_p50)]
        rows.append(row)
    return _table(cols, rows)


# ---------------------------------------------------------------- plot data (decimated)

def _floats(col: Any) -> np.ndarray:
    """A column as float64 with NaN where missing (pandas' nullable dtypes included)."""
    if isinstance(getattr(col, "dtype", None), np.dtype):
        return np.asarray(col, dtype=np.float64)
    return np.asarray(col.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def _ints(col: Any) -> np.ndarray:
    """An int64 column (times in ns) as numpy; missing values as 0 (they are never missing)."""
    if isinstance(getattr(col, "dtype", None), np.dtype):
        return np.asarray(col, dtype=np.int64)
    return np.asarray(col.to_numpy(dtype="int64", na_value=0), dtype=np.int64)


def _values(v: np.ndarray, sig: int = 5) -> list[float | None]:
    """JSON-ready values: about `sig` significant digits at the series' typical size, NaN as
    null (the plots leave a gap)."""
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return [None] * len(v)
    mag = np.abs(v[ok])
    typical = float(np.median(mag[mag > 0])) if (mag > 0).any() else 1.0
    d = max(0, sig - 1 - math.floor(math.log10(typical)))
    r = np.round(np.where(ok, v, 0.0), d).tolist()
    return [x if good else None for x, good in zip(r, ok.tolist())]


def _latency_panels(a: Analysis, label: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Latency by iteration per trace, engine and condition (with the SM clock, the jump, the
    stable iteration and the episodes), and latency against the SM clock per trace."""
    m = a.regions
    if m.empty or a.layers.empty:
        return [], []
    inf = m[(m["kind"] == "inference") & ~m["warmup"].fillna(False).astype(bool)]
    eps: dict[tuple[int, str, str, str], list[dict[str, Any]]] = {}
    if not a.verdicts.empty and "episode" in a.verdicts:
        for v in a.verdicts[a.verdicts["episode"].notna()].itertuples():
            eps.setdefault(_key(v.trace, v.engine, v.condition), []).append({
                "first": int(v.first_iter), "last": int(v.last_iter), "label": str(v.episode),
                "cause": None if not isinstance(v.cause_code, str) else v.cause_code})
    panels, scatters = [], []
    for ti in range(len(a.traces)):
        rows, _, _ = _usable(inf[inf["trace"] == ti], ti)  # what the analysis used
        groups = dict(iter(rows.groupby(["name", "condition"], sort=False)))
        series = []
        for r in a.layers[a.layers["trace"] == ti].itertuples():
            g = groups.get((r.engine, r.condition))
            if g is None or g.empty:
                continue
            if not g["iteration"].is_monotonic_increasing:
                g = g.sort_values("iteration", kind="stable")
            it = _ints(g["iteration"])
            ms, clk = _floats(g["gpu_ms"]), _floats(g["sm_clock_mhz_mean"])
            idx = pick([ms, clk])
            name = label(ti, r.engine, r.condition)
            panels.append({
                "trace": ti, "engine": str(r.engine), "condition": str(r.condition),
                "title": f"Latency by iteration: {name}", "n": len(g), "plotted": len(idx),
                "x": it[idx].tolist(), "y": _values(ms[idx]),
                "clock": _values(clk[idx]) if np.isfinite(clk).any() else None,
                "onset": int(r.onset_iter) if r.layered else None,
                "stable": int(r.stable_iter) if r.layered else None,
                "episodes": eps.get(_key(ti, r.engine, r.condition), [])})
            ok = np.isfinite(clk) & np.isfinite(ms)
            if ok.any():
                x, y = clk[ok], ms[ok]
                keep = pick_2d(x, y)
                series.append({"label": name, "n": int(ok.sum()), "plotted": len(keep),
                               "x": _values(x[keep]), "y": _values(y[keep])})
        if series:
            scatters.append({"trace": ti, "title": "Latency against SM clock"
                             + (f" (trace {ti})" if len(a.traces) > 1 else ""),
                             "series": series})
    return panels, scatters


def _clock_panels(a: Analysis) -> list[dict[str, Any]]:
    """The SM clock (and power) over time on each inference GPU, with the conditions' spans.
    The samples are read a few row groups at a time and decimated as they come (Picker): the
    plot keeps 4,000 of them, not the 240 MB of three columns per 10M."""
    out = []
    m = a.regions
    for ti, tr in enumerate(a.traces):
        s = tr.columns("samples")
        if len(s) == 0 or "sm_clock_mhz" not in s or m.empty:
            continue
        inf = m[(m["trace"] == ti) & (m["kind"] == "inference")]
        if inf.empty:
            continue
        gpus = sorted({int(g) for g in inf["gpu"].dropna().unique()}) if "gpu" in inf else []
        one = s.constant("gpu") if "gpu" in s else 0  # (one GPU's samples: none read)
        values = ["sm_clock_mhz"] + (["power_w"] if "power_w" in s else [])
        if one is not None:
            first, counts = int(one), {int(one): len(s)}
        else:
            sg = _ints(s["gpu"])  # (in table order: its first row names the GPU of a
            # program that ran on none the regions name)
            first = int(sg[0])
            found, n = np.unique(sg, return_counts=True)
            counts = dict(zip(found.tolist(), n.tolist()))
            del sg
        pickers = {g: Picker(counts[g], len(values)) for g in gpus or [first]
                   if counts.get(g, 0)}
        t_min = None
        for ch in s.chunks(["t_ns", *values] + (["gpu"] if one is None else [])):
            t = _ints(ch["t_ns"])
            if t.size:
                t_min = int(t.min()) if t_min is None else min(t_min, int(t.min()))
            cols = []
            for c in values:
                v = _floats(ch[c])
                lo, hi = BOUNDS.get(c, (-np.inf, np.inf))
                cols.append(np.where((v >= lo) & (v <= hi), v, np.nan))  # impossible: NA
            on = _ints(ch["gpu"]) if one is None else None
            for g, p in pickers.items():
                if on is None:
                    p.add([t, *cols])
                else:
                    sel = on == g
                    p.add([t[sel], *(v[sel] for v in cols)])
        s.forget()  # (the times and GPUs read for the plot: 100 MB per 10M samples)
        start, end = _ints(inf["start_ns"]), _ints(inf["end_ns"])
        t0 = int(min(t_min, start.min())) if t_min is not None else int(start.min())
        spans = inf.assign(_s=start, _e=end).groupby("condition", sort=False).agg(
            s=("_s", "min"), e=("_e", "max"))
        conds = [{"name": str(c), "t0": round((int(r["s"]) - t0) / 1e9, 4),
                  "t1": round((int(r["e"]) - t0) / 1e9, 4)} for c, r in spans.iterrows()]
        for g, p in pickers.items():
            if not p.finite[0]:  # (no SM clock reading on this GPU)
                continue
            power = len(values) > 1 and p.finite[1]  # (NA throughout: not drawn, and the
            # clock decimated alone, as pick does)
            idx, (t, clock, *rest) = p.rows()
            out.append({
                "trace": ti, "gpu": g, "n": p.n, "plotted": len(idx),
                "title": "SM clock over time" + (f", GPU {g}" if len(gpus) > 1 else "")
                + (f" (trace {ti})" if len(a.traces) > 1 else ""),
                "t": np.round((t - t0) / 1e9, 4).tolist(),
                "clock": _values(clock),
                "power": _values(rest[0]) if power else None,
                "conditions": conds})
    return out


def _gap_panels(a: Analysis) -> list[dict[str, Any]]:
    """Settled latency against the gap, per trace and engine of a sweep."""
    lay = a.layers.dropna(subset=["gap_ms"]) if not a.layers.empty else a.layers
    out: list[dict[str, Any]] = []
    if lay.empty:
        return out
    for (ti, eng), g in lay.groupby(["trace", "engine"], sort=False):
        if g["gap_ms"].nunique() < 2:
            continue
        g = g.sort_values("gap_ms").drop_duplicates("gap_ms")
        out.append({"title": f"Settled latency against the gap: {eng}"
                    + (f" (trace {ti})" if len(a.traces) > 1 else ""),
                    "x": [float(x) for x in g["gap_ms"]], "final": _values(_floats(g["final_ms"])),
                    "base": _values(_floats(g["baseline_ms"]))})
    return out


def plot_data(a: Analysis) -> dict[str, Any]:
    """Everything the plots draw, decimated: plain JSON types only."""
    latency, scatter = _latency_panels(a, _labeller(a))
    return {"max_points": MAX_POINTS, "latency": latency, "clock": _clock_panels(a),
            "scatter": scatter, "gap": _gap_panels(a)}


def _json_for_script(data: Any) -> str:
    """JSON that is safe inside <script>: '<', '>' and '&' escaped as JSON escapes."""
    s = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _library() -> tuple[str, str, str] | None:
    """uPlot's script, stylesheet and licence text, or None where the installation lacks them."""
    try:
        js, css, lic = ((VENDOR / f).read_text(encoding="utf-8")
                        for f in (UPLOT_JS, UPLOT_CSS, UPLOT_LICENSE))
    except (OSError, ValueError):  # missing or unreadable: the report goes without plots
        return None
    if js.startswith("/*!"):  # its banner's address loses its scheme: the page loads nothing
        end = js.index("*/") + 2
        js = js[:end].replace("https://", "").replace("http://", "") + js[end:]
    return js.replace("</", "<\\/"), css, lic


# The page's own script: reads the embedded data, draws every plot with uPlot
PLOTS_JS = r"""(function(){"use strict";
var D=JSON.parse(document.getElementById("gw-data").textContent);
var root=document.getElementById("gw-plots");
var C=["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
var charts=[];
function el(tag,cls,text,parent){var e=document.createElement(tag);if(cls)e.className=cls;
 if(text!=null)e.textContent=text;(parent||root).appendChild(e);return e;}
function wid(box){return Math.max(300,Math.floor(box.clientWidth||(root.clientWidth||900)));}
function ms(v){if(v==null)return "\u2014";var a=Math.abs(v);
 return (a>=100?v.toFixed(1):a>=1?v.toFixed(2):v.toPrecision(3))+" ms";}
function mhz(v){return v==null?"\u2014":Math.round(v)+" MHz";}
function watt(v){return v==null?"\u2014":v.toFixed(1)+" W";}
function n(v){return v.toLocaleString("en-US");}
function note(p){return p.plotted<p.n?" Plotted: "+n(p.plotted)+" of "+n(p.n)+
 " points (each bucket's lowest and highest kept, so spikes show).":"";}
function make(opts,data,box){opts.width=wid(box);var u=new uPlot(opts,data,box);
 charts.push([u,box,opts.height]);return u;}
var dpr=function(){return uPlot.pxRatio||1;};
function clip(u,f){var c=u.ctx,b=u.bbox;c.save();c.beginPath();c.rect(b.left,b.top,b.width,b.height);
 c.clip();c.textAlign="left";c.textBaseline="alphabetic";f(c,b);c.restore();}
function vline(u,c,b,x,color,text,row){var p=dpr(),px=Math.round(u.valToPos(x,"x",true));
 c.strokeStyle=color;c.lineWidth=1.5*p;c.setLineDash([5*p,4*p]);c.beginPath();c.moveTo(px,b.top);
 c.lineTo(px,b.top+b.height);c.stroke();c.setLineDash([]);c.fillStyle=color;
 c.font=(11*p)+"px sans-serif";var y=b.top+(12+13*row)*p,w=c.measureText(text).width;
 c.fillStyle="rgba(255,255,255,0.85)";c.fillRect(px+2*p,y-10*p,w+2*p,13*p);
 c.fillStyle=color;c.fillText(text,px+3*p,y);}
function clockRange(u,lo,hi){if(lo==null)return [0,1];  // a steady clock stays flat
 var m=(lo+hi)/2,h=Math.max((hi-lo)/2*1.1,Math.abs(m)*0.05,1);return [m-h,m+h];}
function latency(p){
 var box=el("div","plot"),cap=el("p","caption"),u=null,slot=charts.length;
 var shade=function(u){clip(u,function(c,b){  // episodes, behind the points
  p.episodes.forEach(function(e){var x0=u.valToPos(e.first,"x",true),x1=u.valToPos(e.last,"x",true);
   c.fillStyle="rgba(214,39,40,0.13)";c.fillRect(x0,b.top,Math.max(1,x1-x0),b.height);});});};
 var lines=function(u){clip(u,function(c,b){  // jump and plateau, over them
  if(p.onset!=null)vline(u,c,b,p.onset,"#d62728","jump "+p.onset,0);
  if(p.stable!=null)vline(u,c,b,p.stable,"#e07000","stable "+p.stable,1);});};
 function build(log){
  var series=[{label:"iteration",value:function(u,v){return v==null?"\u2014":String(v);}}];
  var axes=[{label:"iteration"},{scale:"ms",label:"latency (ms, GPU events"+(log?", log":"")+")",size:60}];
  var data=[p.x];
  if(p.clock){series.push({label:"SM clock",scale:"mhz",stroke:"rgba(44,160,44,0.6)",width:1,
    value:function(u,v){return mhz(v);}});
   axes.push({scale:"mhz",side:1,label:"SM clock (MHz)",grid:{show:false},size:60});data.push(p.clock);}
  series.push({label:"latency",scale:"ms",stroke:C[0],paths:function(){return null;},
   points:{show:true,size:3,width:0,fill:C[0],stroke:C[0]},value:function(u,v){return ms(v);}});
  data.push(p.y);
  var opts={title:p.title,height:270,width:wid(box),series:series,axes:axes,
   scales:{x:{time:false},ms:log?{distr:3}:{},mhz:{range:clockRange}},
   cursor:{drag:{x:true,y:true,uni:40}},hooks:{drawAxes:[shade],draw:[lines]}};
  if(u)u.destroy();
  u=new uPlot(opts,data,box);charts[slot]=[u,box,opts.height];}
 build(false);
 var t=[];if(p.onset!=null)t.push("Jump at iteration "+p.onset+", stable from "+p.stable+" (dashed).");
 p.episodes.forEach(function(e){t.push("Episode "+e.label+(e.cause?" ("+e.cause+")":"")+" shaded.");});
 cap.appendChild(document.createTextNode(t.join(" ")+note(p)+" "));
 var lab=el("label",null,null,cap),cb=document.createElement("input");cb.type="checkbox";
 lab.appendChild(cb);lab.appendChild(document.createTextNode(" log latency axis"));
 cb.addEventListener("change",function(){build(cb.checked);});}
function clock(p){
 var box=el("div","plot");var marks=function(u){clip(u,function(c,b){var k=0;
  p.conditions.forEach(function(s){var x0=u.valToPos(s.t0,"x",true),x1=u.valToPos(s.t1,"x",true);
   c.fillStyle=(k++%2)?"rgba(31,119,180,0.07)":"rgba(255,127,14,0.07)";
   c.fillRect(x0,b.top,Math.max(1,x1-x0),b.height);c.fillStyle="#555";
   c.font=(11*dpr())+"px sans-serif";
   c.fillText(s.name,Math.max(x0,b.left)+3*dpr(),b.top+b.height-(4+13*(k%2))*dpr());});});};
 var series=[{label:"time",value:function(u,v){return v==null?"\u2014":v.toFixed(3)+" s";}},
  {label:"SM clock",scale:"mhz",stroke:C[2],width:1.5,value:function(u,v){return mhz(v);}}];
 var axes=[{label:"time since the first reading (s)"},{scale:"mhz",label:"SM clock (MHz)",size:60}];
 var data=[p.t,p.clock];
 if(p.power){series.push({label:"power (click to show)",show:false,scale:"w",
   stroke:"rgba(148,103,189,0.6)",width:1,
   value:function(u,v){return watt(v);}});
  axes.push({scale:"w",side:1,label:"power (W)",grid:{show:false},size:60});data.push(p.power);}
 make({title:p.title,height:250,scales:{x:{time:false}},series:series,axes:axes,
  cursor:{drag:{x:true,y:true,uni:40}},hooks:{drawAxes:[marks]}},data,box);
 el("p","caption","Shaded: each condition's time span; click \"power\" in the legend to show the power draw."+note(p));}
function pad(u,lo,hi){if(lo==null)return [0,1];var d=(hi-lo)*0.04||Math.abs(hi)*0.04||1;
 return [lo-d,hi+d];}
function scatter(p){
 var box=el("div","plot");var out=el("div","readout","Hover a point for its values.");
 var draw=function(u,si){uPlot.orient(u,si,function(s,dx,dy,sx,sy,vx,vy,xo,yo,xd,yd){
   var d=u.data[si],c=u.ctx,r=1.6*dpr();c.save();c.beginPath();
   c.rect(u.bbox.left,u.bbox.top,u.bbox.width,u.bbox.height);c.clip();
   c.fillStyle=C[(si-1)%C.length];c.beginPath();
   for(var i=0;i<d[0].length;i++){var x=d[0][i],y=d[1][i];if(x==null||y==null)continue;
    if(x<sx.min||x>sx.max||y<sy.min||y>sy.max)continue;
    var cx=vx(x,sx,xd,xo),cy=vy(y,sy,yd,yo);c.moveTo(cx+r,cy);c.arc(cx,cy,r,0,2*Math.PI);}
   c.fill();c.restore();});return null;};
 var series=[null];var data=[null];
 p.series.forEach(function(s,i){series.push({label:s.label,stroke:C[i%C.length],fill:C[i%C.length],
   paths:draw,facets:[{scale:"x",auto:true},{scale:"y",auto:true}]});data.push([s.x,s.y]);});
 var u=make({title:p.title,mode:2,height:320,legend:{live:false},
  scales:{x:{time:false,range:pad},y:{range:pad}},series:series,
  axes:[{label:"SM clock during the inference (MHz)"},{label:"latency (ms)",size:60}],
  cursor:{dataIdx:function(){return null;},points:{show:false},drag:{x:true,y:true}},
  hooks:{setCursor:[function(u){var L=u.cursor.left,T=u.cursor.top;if(L==null||L<0){return;}
   var best=null,bd=100;for(var si=1;si<u.series.length;si++){if(!u.series[si].show)continue;
    var d=u.data[si];for(var i=0;i<d[0].length;i++){if(d[0][i]==null||d[1][i]==null)continue;
     var dx=u.valToPos(d[0][i],"x")-L,dy=u.valToPos(d[1][i],"y")-T,q=dx*dx+dy*dy;
     if(q<bd){bd=q;best=[si,i];}}}
   out.textContent=best?u.series[best[0]].label+": "+mhz(u.data[best[0]][0][best[1]])+", "+
    ms(u.data[best[0]][1][best[1]]):"Hover a point for its values.";}]}},data,box);
 var tot=0,pl=0;p.series.forEach(function(s){tot+=s.n;pl+=s.plotted;});
 el("p","caption","One point per inference"+(pl<tot?"; plotted: "+n(pl)+" of "+n(tot)+
  " (one per occupied cell of a fine grid, so outliers show)":"")+".");}
function gap(p){var box=el("div","plot");
 make({title:p.title,height:250,scales:{x:{time:false}},
  series:[{label:"gap",value:function(u,v){return v==null?"\u2014":v+" ms";}},
   {label:"settled latency",stroke:C[0],width:2,points:{show:true,size:6},value:function(u,v){return ms(v);}},
   {label:"first iterations",stroke:"#888",width:1,dash:[4,4],points:{show:true,size:4},
    value:function(u,v){return ms(v);}}],
  axes:[{label:"idle gap between inferences (ms)"},{label:"latency (ms)",size:60}]},
  [p.x,p.final,p.base],box);}
function section(title,list,f){if(!list||!list.length)return;el("h3",null,title);list.forEach(function(p){
 try{f(p);}catch(e){el("p","warn","This plot could not be drawn: "+e);}});}
section("Latency by iteration",D.latency,latency);
section("Latency against the SM clock",D.scatter,scatter);
section("SM clock over time",D.clock,clock);
section("Settled latency against the gap",D.gap,gap);
var t=null;window.addEventListener("resize",function(){clearTimeout(t);t=setTimeout(function(){
 charts.forEach(function(c){c[0].setSize({width:wid(c[1]),height:c[2]});});},150);});
})();"""


class HtmlRenderer(Renderer):
    """The HTML report: verdict, tables, interactive plots; one file that opens offline."""

    def render(self, analysis: Analysis) -> str:
        a = analysis
        lib = _library()
        parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
                 "<meta name='viewport' content='width=device-width, initial-scale=1'>",
                 f"<title>gpuwatch report</title><style>{CSS}"
                 + (f"\n{lib[1]}" if lib else "") + "</style></head><body>",
                 "<h1>gpuwatch report</h1>", self._traces(a), self._verdict(a),
                 "<h2 id='latency'>The latency the user sees</h2>",
                 "<p class='note'>From the call to the result, in parts that add up to it "
                 "(means): the GPU queue (behind this program's own work, or while its stream "
                 "was idle: another context's time slice), the GPU's time between the events, "
                 "and completion (the end event to the host having the result).</p>",
                 _latency_table(a),
                 "<h2 id='layers'>Latency layers</h2>", _layers_table(a),
                 "<h2 id='attribution'>What explains the extra latency</h2>",
                 "<p class='note'>Per condition (and episode) against its reference: how many "
                 "ms of the change in mean latency each measured factor explains, with a 95% "
                 "bootstrap interval, and its share of the change.</p>",
                 _attribution_table(a), "<h2 id='plots'>Plots</h2>"]
        if lib is None:
            parts.append(
                "<p class='warn'>No plots: the plotting library gpuwatch embeds in this "
                f"report (uPlot, {UPLOT_JS} in {_e(VENDOR)}) is missing from this "
                "installation. Reinstall gpuwatch (in its clone: <code>pip install -e ."
                "</code>) to get it back; <code>analyze --png DIR</code> writes static plots "
                f"with matplotlib (<code>{_e(install_hint('plots'))}</code>).</p>")
        else:
            parts.append("<p class='note'>Drag to zoom (sideways: iterations or time; "
                         "diagonally: a box), double-click to zoom out, hover for values; "
                         "click a legend entry to hide its series.</p>"
                         "<noscript><p class='warn'>The plots need JavaScript.</p></noscript>"
                         "<div id='gw-plots'></div>")
        parts += ["<h2 id='spans'>Pre/post-processing spans</h2>", _spans_table(a),
                  "<h2 id='streams'>Stream checks</h2>",
                  "<p class='note'>GPU work the timed regions' events did not bracket: a "
                  "region with work outside leaves that work out of its latency.</p>",
                  _stream_table(a)]
        if not a.clocks.empty:
            parts.append("<h2 id='clocks'>SM clock: in-band against NVML</h2><ul>" + "".join(
                f"<li>{_e(clock_sentence(r))}</li>" for r in a.clocks.itertuples()) + "</ul>")
        parts.append("<h2 id='notes'>Data notes</h2>" + (
            "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in a.data_notes) + "</ul>"
            if a.data_notes else "<p>Every measured inference was usable.</p>"))
        parts.append("<details><summary>The plain-text summary (as <code>analyze</code> "
                     "prints it)</summary><pre>" + _e(TextRenderer().render(a))
                     + "</pre></details>")
        foot = f"Written by gpuwatch {_e(__version__)}"
        if lib is not None:
            foot += "; plots drawn by uPlot (MIT License, embedded below)"
        parts.append(f"<footer>{foot}.</footer>")
        if lib is not None:
            parts.append("<script type='application/json' id='gw-data'>"
                         + _json_for_script(plot_data(a)) + "</script>")
            parts.append(f"<script>/* uPlot, embedded for offline viewing.\n{lib[2]}\n*/\n"
                         f"{lib[0]}</script>")
            parts.append(f"<script>{PLOTS_JS}</script>")
        parts.append("</body></html>")
        return "\n".join(parts)

    @staticmethod
    def _traces(a: Analysis) -> str:
        out = []
        for ti, tr in enumerate(a.traces):
            devs = ", ".join(str(d.get("name", "?")) for d in tr.meta.get("devices", []))
            started = tr.meta.get("started_ns")
            when = ""
            if isinstance(started, (int, float)) and started > 0:
                when = ", recorded " + pd.Timestamp(int(started), unit="ns", tz="UTC").strftime(
                    "%Y-%m-%d %H:%M UTC")
            host = tr.meta.get("host", {})
            host_s = f" on {host.get('hostname')}" if isinstance(host, dict) and \
                host.get("hostname") else ""
            sim = " <span class='sim'>SIMULATED GPU</span>" if tr.simulated else ""
            name = f"Trace {ti}: " if len(a.traces) > 1 else "Trace: "
            st = next((x for x in a.status if x["trace"] == ti), None)
            out.append(f"<p class='meta'>{name}<code>{_e(tr.path)}</code> \u2014 "
                       f"{_e(devs or 'unknown GPU')}{sim}{_e(when)}{_e(host_s)}; "
                       + (_e(status.line(st)) if st is not None else
                          f"status {_e(tr.meta.get('status'))}") + "</p>")
            head = status.headline(st, len(a.traces) > 1) if st is not None else None
            if head:
                out.append(f"<p class='warn'>{_e(head)}.</p>")
            for line in ((status.warning_text(st), status.telemetry_text(st))
                         if st is not None else ()):
                if line:
                    out.append(f"<p class='note'>{_e(line)}</p>")
        return "\n".join(out)

    @staticmethod
    def _verdict(a: Analysis) -> str:
        label = _labeller(a)
        out = ["<section id='verdict'><h2>Verdict</h2>",
               f"<p class='verdict'>{_e(a.verdict)}</p>"]
        if a.stream_note:
            out.append(f"<p class='warn'>Warning: {_e(a.stream_note)}</p>")
        if not a.wall_verdicts.empty:
            several = len(a.traces) > 1 or a.wall_verdicts["engine"].nunique() > 1
            items = []
            for v in a.wall_verdicts.itertuples():
                episode = isinstance(getattr(v, "episode", None), str)
                cls = "wall-episode" if episode else "changed" if isinstance(v.cause, str) \
                    else "same"
                prefix = f"{label(v.trace, v.engine, '').rstrip(', ')}: " if several else ""
                items.append(f"<li class='{cls}'>{_e(prefix + str(v.sentence))}</li>")
            out.append("<h3>The latency the user sees (call -> result)</h3>"
                       "<ul class='sentences'>" + "".join(items) + "</ul>")
        if not a.verdicts.empty:
            several = len(a.traces) > 1 or a.verdicts["engine"].nunique() > 1
            items = []
            for v in a.verdicts.itertuples():
                episode = isinstance(getattr(v, "episode", None), str)
                cls = "episode" if episode else "changed" if isinstance(v.cause, str) else "same"
                prefix = f"{label(v.trace, v.engine, '').rstrip(', ')}: " if several else ""
                items.append(f"<li class='{cls}'>{_e(prefix + str(v.sentence))}</li>")
            out.append("<h3>GPU time (events), per condition</h3><ul class='sentences'>"
                       + "".join(items) + "</ul>")
        if a.data_notes:
            out.append(f"<p class='note'>{len(a.data_notes)} data note(s): some rows were "
                       "left out of the analysis (<a href='#notes'>below</a>).</p>")
        out.append("</section>")
        return "\n".join(out)


# ---------------------------------------------------------------- inline: a notebook's output

INLINE_CLASS = "gpuwatch-report"  # the fragment's box: its styles apply inside it only


def _scoped_css(css: str, scope: str = f".{INLINE_CLASS}") -> str:
    """The report's CSS for rules inside `scope` only (a notebook page keeps its own look):
    `body` becomes the box itself, every other selector a descendant of it."""
    rules = []
    for rule in css.split("}"):
        if "{" not in rule:
            continue
        selectors, body = rule.split("{", 1)
        scoped = [scope if s.strip() == "body" else f"{scope} {s.strip()}"
                  for s in selectors.split(",")]
        rules.append(",".join(scoped) + "{" + body + "}")
    return "\n".join(rules)


def fragment(analysis: Analysis) -> str:
    """The report inline, for a notebook (`Analysis._repr_html_`): the traces and their status,
    the verdict, then the tables folded away; no page, no script and no plots (the full report,
    `analyze --html`, has them). Its styles apply inside its own box only."""
    import shlex

    a = analysis
    paths = [shlex.quote(str(t.path)) for t in a.traces if t.path is not None]
    cmd = ("python -m gpuwatch.analyze " + " ".join(paths) + " --html report.html"
           if paths else "gpuwatch.renderers.HtmlRenderer().write(analysis, 'report.html')")
    parts = [f"<div class='{INLINE_CLASS}'><style>{_scoped_css(CSS)}\n"
             f".{INLINE_CLASS}{{max-width:none;margin:0;padding:.2em 0 .4em}}</style>",
             HtmlRenderer._traces(a), HtmlRenderer._verdict(a),
             "<details><summary>Tables: the latency the user sees, latency layers, what "
             "explains the extra latency</summary>",
             "<h3>The latency the user sees</h3>", _latency_table(a),
             "<h3>Latency layers</h3>", _layers_table(a),
             "<h3>What explains the extra latency</h3>", _attribution_table(a), "</details>"]
    if a.data_notes:
        parts.append("<details><summary id='notes'>Data notes</summary><ul>" + "".join(
            f"<li>{_e(n)}</li>" for n in a.data_notes) + "</ul></details>")
    parts.append(f"<p class='note'>Plots, spans and stream checks: the full report, "
                 f"<code>{_e(cmd)}</code>.</p></div>")
    return "\n".join(parts)
