"""The analysis pipeline behind `gpuwatch.analyze(trace_or_path, ...)` (the package's face,
analysis/__init__.py, gives its names).

One pass gives, per trace, engine and condition:
- the merged per-inference table (telemetry joined on);
- latency layers (onset, stable iteration, stable latency, ratio to the baseline);
- the attribution of extra latency to measured causes, with 95% intervals;
- a one-sentence verdict that names a cause only where the data supports it.

The baseline is the gap-0 condition of the same trace and engine, or the smallest gap. With no
gap conditions (session recordings, --fps), each condition's own iterations before the jump
serve as the baseline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..trace import Trace, load
from . import status, wall
from .._version import __version__
from .attribution import THROTTLE_MASK, attribute, remembered
from .threads import one_blas_thread
from .causes import CAUSE_CODES, CAUSES, code_of
from .verdict import ALONE, NVML_REFRESH_MS, Named, Verdict, episodes_text, fields, share_text
from .columns import (EARLY_ITERS, LATE_ITERS, MAX_LATENCY_MS, NO_CONDITION, floats, groups_of,
                      ms_text, ns_since, others_either_side, rows_where, writable)
from .explain import attribute_span, attribute_wall, refine_host
from .evidence import context
from .signals import FLOOR_SHARE, SIGNALS
from .signals import windows as signal_windows
from .clock import COLUMNS as CLOCK_COLUMNS
from .clock import compare as compare_clocks
from .gaps import observed_gaps, regroup_by_gap
from .layers import MIN_LEVEL, Layers, _union, layers_of, remembered_layers
from .merge import SAMPLE_FIELDS, merge
from ..lazy import Later, Lazy
from .outside import note as outside_note
from .outside import stream_checks as outside_table

__all__ = ["Analysis", "analyze"]

NOISE_REL = 0.03  # a change under 3% of the baseline (and under 3 noise s.d.) is no change
# What analysis and its renderers read of `samples` (the rest stays on disk).
OUTLIER_RATIO = 1000.0  # a latency this many times its condition's median is set apart
MAIN_SHARE, MINOR_SHARE = 0.25, 0.10  # a verdict's main cause, and the least share it names
SAMPLE_COLUMNS = SAMPLE_FIELDS  # what analysis reads of the samples table: what merge uses


@dataclass(repr=False)
class Analysis(Lazy):
    traces: list[Trace]
    # Every region with its telemetry (analysis.merge): made when first read, as the verdicts
    # need only `regions`, which is this table without merge.REPORT_ONLY's columns
    merged: pd.DataFrame
    layers: pd.DataFrame
    attribution: pd.DataFrame
    spans: pd.DataFrame
    verdicts: pd.DataFrame
    verdict: str
    details: dict[tuple[Any, ...], Layers] = field(default_factory=dict, repr=False)
    # GPU work the events did not bracket, per trace, engine and condition (analysis.outside)
    stream_checks: pd.DataFrame = field(default_factory=pd.DataFrame)
    stream_note: str = ""  # one sentence when there was any, else ""
    # Rows left out of the analysis, and why (impossible latencies, calls that raised)
    data_notes: list[str] = field(default_factory=list)
    # The in-band SM clock against NVML's, per trace that has it (analysis.clock)
    clocks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CLOCK_COLUMNS))
    # The latency the user sees (call -> result; a span's host time): verdicts, their
    # attribution, and its decomposition per condition, episode and reference (analysis.wall)
    wall_verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    wall_attribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    # How each trace's recording went (analysis.status): said before any verdict
    status: list[dict[str, Any]] = field(default_factory=list)
    # The per-region table the verdicts were found on: `merged` less its report-only columns
    # (the renderers read this: it needs no second pass over the samples)
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __repr__(self) -> str:  # (a notebook shows this, not every table)
        return (f"<gpuwatch Analysis of {len(self.traces)} trace(s), {len(self.verdicts)} "
                f"event-time and {len(self.wall_verdicts)} call -> result verdict(s): "
                f"{self.verdict}>")

    def _repr_html_(self) -> str:  # (Jupyter shows this: the report inline, without plots)
        from ..renderers.html import fragment

        return fragment(self)

    def seed_tables(self) -> dict[str, pd.DataFrame]:
        """The field report's Experiment 3 tables: engine x condition."""
        lay = self.layers
        jump = lay.assign(cell=[
            f"{o:.0f}/{s:.0f}" if layered else "no layers"
            for o, s, layered in zip(lay["onset_iter"], lay["stable_iter"], lay["layered"])])
        return {
            "back_to_back_ms": lay[lay["gap_ms"] == 0].pivot_table(
                index="engine", columns="condition", values="baseline_ms", aggfunc="first"),
            "jump_stable_iterations": jump.pivot_table(
                index="engine", columns="condition", values="cell", aggfunc="first"),
            "stable_ms": lay.pivot_table(index="engine", columns="condition",
                                         values="final_ms", aggfunc="first"),
        }

    def to_dict(self) -> dict[str, Any]:
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            # (a verdict's Verdict object is given by its fields: outcome, causes, ...)
            return json.loads(df.drop(columns=["verdict"], errors="ignore").to_json(
                orient="records"))

        st = {s["trace"]: s for s in self.status}
        return {
            "version": __version__,  # (the gpuwatch that analysed; each trace's own: status)
            "verdict": self.verdict,
            "traces": [{"path": str(t.path), "simulated": t.simulated,
                        "devices": [d.get("name") for d in t.meta.get("devices", [])],
                        "schema_version": t.schema_version, "status": st.get(i)}
                       for i, t in enumerate(self.traces)],
            "wall_verdicts": records(self.wall_verdicts),
            "latency": records(self.latency),
            "wall_attribution": records(self.wall_attribution),
            "verdicts": records(self.verdicts),
            "layers": records(self.layers),
            "attribution": records(self.attribution),
            "spans": records(self.spans),
            "stream_checks": records(self.stream_checks),
            "stream_note": self.stream_note,
            "clocks": records(self.clocks),
            "data_notes": list(self.data_notes),
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _as_trace(t: Trace | str | os.PathLike[str]) -> Trace:
    if isinstance(t, Trace):
        return t
    if not isinstance(t, (str, os.PathLike)):
        raise UsageError(f"analyze takes traces: file paths or gpuwatch.Trace objects, got "
                         f"{type(t).__name__} {t!r}")
    if not str(t).strip():
        raise UsageError("an empty path was given as a trace; give a .parquet file")
    # (the samples are read a column at a time by merge, and whole only if a renderer asks)
    return load(t, columns={"samples": SAMPLE_COLUMNS}, numpy_dtypes=("samples",),
                defer=("samples",))


def analyze(*traces: Trace | str | os.PathLike[str] | Sequence[Trace | str | os.PathLike[str]],
            seed: int = 0, progress: Callable[[str], None] | None = None) -> Analysis:
    """Analyse one or more traces (objects or paths, as arguments or one list) into layers,
    attribution and verdicts.
    `progress`, if given, is called with a short line as each step begins (reading a trace,
    joining its telemetry, each engine and condition): the CLI draws it on a terminal."""
    # (small matrices: BLAS threads would only spin, see threads.py; an attribution asked for
    # twice is made once, see attribution.remembered)
    with one_blas_thread(), remembered(), remembered_layers():
        return _analyze(*traces, seed=seed, progress=progress)


def _analyze(*given: Trace | str | os.PathLike[str] | Sequence[Trace | str | os.PathLike[str]],
             seed: int = 0, progress: Callable[[str], None] | None = None) -> Analysis:
    # (one list of paths, as glob gives them: the same as each given on its own)
    traces: tuple[Any, ...] = tuple(given[0]) if len(given) == 1 and isinstance(
        given[0], (list, tuple)) else given
    if not traces:
        raise UsageError("give at least one trace to analyse")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed takes a whole number >= 0, got {seed!r}")
    if progress is not None and not callable(progress):
        raise UsageError(f"progress takes a function of one string (e.g. print), got "
                         f"{type(progress).__name__}")
    seen: list[str] = []
    for t in traces:  # (one recording analysed twice would read as two that agree)
        if isinstance(t, (str, os.PathLike)) and os.path.exists(t):
            same = next((b for b in seen if os.path.samefile(b, t)), None)
            if same is not None:
                raise UsageError(f"{os.fspath(t)} is given twice"
                                 f"{'' if same == os.fspath(t) else f' (as {same})'}; give "
                                 f"each trace once")
            seen.append(os.fspath(t))
    say = progress or (lambda text: None)
    several = len(traces) > 1  # (then each line names its trace as the notes do: "trace 0")

    def reading(i: int, t: Trace | str | os.PathLike[str]) -> Trace:
        if isinstance(t, (str, os.PathLike)):
            say(f"reading {f'trace {i}: ' if several else ''}{os.fspath(t)}")
        return _as_trace(t)

    loaded = [reading(i, t) for i, t in enumerate(traces)]
    merged_all, layer_rows, att_rows, verdict_rows, span_rows = [], [], [], [], []
    wall_rows: list[dict[str, Any]] = []
    wall_att_rows: list[pd.DataFrame] = []
    latency_rows: list[dict[str, Any] | None] = []  # (wall.summary of each group)
    check_rows, clock_rows = [], []
    data_notes: list[str] = []
    lost: list[str] = []  # conditions with no valid latency at all (not compared)
    too_few: list[str] = []  # names with too few inferences to compare (_few)
    statuses: list[dict[str, Any]] = []
    details: dict[tuple[Any, ...], Layers] = {}
    for ti, tr in enumerate(loaded):
        where = f"trace {ti}: " if several else ""
        say(f"{where}joining the telemetry onto {len(tr.inferences):,} regions")
        m = _regions(tr, ti, full=False)
        host_events = getattr(tr, "host_events", None)
        merged_all.append(m)
        inference, warm = (m["kind"] == "inference").to_numpy(), m["warmup"].astype(bool)
        statuses.append(status.of(tr, ti, int((inference & ~warm).sum()),
                                  int((inference & warm).sum())))
        repeated = getattr(tr, "repeated_rows", None) or {}
        if repeated:
            data_notes.append(f"trace {ti}: " + " and ".join(
                f"{n:,} row(s) of its {table} table" for table, n in repeated.items())
                + " repeated another row exactly (every column the same: damaged or copied "
                "data, never a second measurement) and were left out")
        clock_rows.append(compare_clocks(m[m["kind"] == "inference"], ti))
        inf = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
        inf, note, gone = _usable(inf, ti)
        lost += gone
        if note:
            data_notes.append(note)
        waits = _waits_inside(inf, ti)
        if waits:
            data_notes.append(waits)
        if m.attrs.get("impossible_readings"):
            data_notes.append(f"trace {ti}: {m.attrs['impossible_readings']} telemetry readings "
                              f"outside what a GPU can report (clock <= 0 or over 10 GHz, "
                              f"negative power, ...) were read as missing")
        dup = inf.duplicated(["name", "condition", "iteration"])
        if dup.any():  # iterations must count: order rows by their GPU start time instead
            data_notes.append(f"trace {ti}: {int(dup.sum())} inferences repeat an iteration "
                              f"number of their condition; they were ordered by start time")
            inf = inf.sort_values("start_ns", kind="stable")
            inf = inf.assign(iteration=inf.groupby(["name", "condition"]).cumcount())
        few = _few(inf, ti)
        checked = m
        if few is not None:  # (names seen once or twice: nothing to compare, one at a time,
            # nor a stream-check row each)
            inf, sentence, names = few
            data_notes.append(sentence)
            too_few.append(sentence)
            checked = m[~(m["name"].isin(names) & (m["kind"] == "inference"))]
        check_rows.append(outside_table(checked, tr.kernels, ti))
        for name, eng in groups_of(inf, "name"):
            first_cond = eng["condition"].iloc[int(np.argmin(eng["start_ns"].pipe(floats)))] \
                if eng["start_ns"].notna().any() else None
            base_cond = _baseline_condition(eng)
            base_rows = rows_where(eng, _is(eng["condition"], base_cond)) \
                if base_cond is not None else None
            # (the reference other conditions are judged against: the baseline condition
            # without its own episodes, each time base on its own layers)
            base_calm = _calm(base_rows, "gpu_ms", seed, host_events)
            base_calm_w = _calm(base_rows, "wall_ms", seed, host_events)
            n_cond = eng["condition"].nunique()
            held_shares: list[float] = []  # (each condition's share of calls with a reason)
            shared: list[tuple[Any, tuple[float, str] | None]] = []  # (_shared_throughout)
            for k, (cond, rows) in enumerate(groups_of(eng, "condition")):
                held_shares.append(_reason_share(rows))
                say(f"{where}{name}, {cond} (condition {k + 1} of {n_cond}, "
                    f"{len(rows):,} inferences)")
                if not rows["iteration"].is_monotonic_increasing:
                    rows = rows.sort_values("iteration", kind="stable")
                lay = _with_reason_layers(
                    rows, layers_of(rows["gpu_ms"].pipe(floats), rows["iteration"].to_numpy()))
                details[(ti, name, cond)] = lay
                ref, tgt, ref_label = _groups(rows, lay, base_calm, cond, base_cond,
                                              only_condition=n_cond == 1)
                base_ms = float(ref["gpu_ms"].median()) if ref is not None else lay.baseline_ms
                gap = rows["gap_ms"].median()  # (observed gaps vary within a condition)
                layer_rows.append({
                    "trace": ti, "engine": name, "condition": cond,
                    "gap_ms": None if pd.isna(gap) else float(gap), "n": lay.n,
                    "baseline_ms": lay.baseline_ms, "layered": lay.layered,
                    "onset_iter": lay.onset_iter, "stable_iter": lay.stable_iter,
                    "stable_ms": lay.stable_ms, "final_ms": lay.final_ms,
                    # (as the verdict says it: the mean of the rows it judges over the
                    # reference's; 1 for the baseline itself)
                    "ratio_to_baseline": _ratio(tgt, ref),
                    "reference": ref_label, "n_layers": lay.n_layers, "noise_ms": lay.noise_ms,
                })
                att = (refine_host(attribute([ref, _without_inner(rows, lay)], ref, tgt,
                                             seed=seed), ref, tgt, seed)
                       if ref is not None else None)
                if att is not None and not att.empty:
                    att_rows.append(att.assign(trace=ti, engine=name, condition=cond,
                                               episode=None))
                v = _verdict(cond, lay, ref, tgt, att, ref_label, events=host_events)
                ep_verdicts, ep_atts = _with_signal_episodes(
                    *_episodes(rows, lay, cond, base_calm, base_cond, seed, events=host_events),
                    *_signal_episodes(rows, cond, seed, host_events, y="gpu_ms",
                                      only=EVENT_SIGNALS), plateau=_plateau(lay, rows, v))
                _mark_to_end(ep_verdicts, rows)
                if cond == first_cond:
                    cold = _cold_start(lay, ep_verdicts, ti, name, cond, alone=n_cond == 1)
                    if cold:
                        data_notes.append(cold)
                if v["cause"] is None and ep_verdicts:
                    v = _noted(v, episodes_below=len(ep_verdicts),
                               episodes_to_end=sum(ev["to_end"] for ev in ep_verdicts))
                key = {"trace": ti, "engine": name, "condition": cond}
                verdict_rows.append({**key, "episode": None, "first_iter": None,
                                     "last_iter": None, **v})
                verdict_rows += [{**key, **ev} for ev in ep_verdicts]
                att_rows += [ea.assign(**key) for ea in ep_atts]
                wv, wa, wg = _wall_series(key, rows, base_calm_w, base_cond,
                                          n_cond == 1, seed, host_events)
                wall_rows += wv
                wall_att_rows += wa
                latency_rows += wg
                shared.append((cond, _shared_throughout(rows)))
            if not any(c["factor"] in ("other_process", "gpu_queue")
                       for r in verdict_rows + wall_rows
                       if r["trace"] == ti and r["engine"] == name for c in r["causes"]):
                data_notes += _shared_notes(shared, f"trace {ti}: {name}", base_cond)
            named = any(c["factor"] == "throttling" for r in verdict_rows + wall_rows
                        if r["trace"] == ti and r["engine"] == name for c in r["causes"])
            held = "" if named else _held_throughout(eng, held_shares, tr, ti, name)
            if held:
                data_notes.append(held)
        spans = m[(m["kind"] == "span") & ~m["warmup"].astype(bool)]
        if spans.duplicated(["name", "condition", "iteration"]).any():
            # (spans share their inference's iteration: a span-only program, or several spans
            # of a name per inference, counts its spans in time order instead)
            spans = spans.sort_values("host_start_ns", kind="stable")
            spans = spans.assign(iteration=spans.groupby(["name", "condition"],
                                                         dropna=False).cumcount())
        for sname, sp in spans.groupby("name", sort=False):
            say(f"{where}span {sname} ({len(sp):,})")
            base_cond = _baseline_condition(sp)
            base_rows = _calm(rows_where(sp, _is(sp["condition"], base_cond))
                              if base_cond is not None else None, "wall_ms", seed, host_events)
            for cond, rows in groups_of(sp, "condition"):
                rows = rows.sort_values("iteration", kind="stable")
                key = {"trace": ti, "engine": f"span:{sname}", "condition": cond}
                wv, wa, wg = _wall_series(key, rows, base_rows, base_cond,
                                          sp["condition"].nunique() == 1, seed, host_events)
                wall_rows += wv
                wall_att_rows += wa
                latency_rows += wg
        span_rows.append(_span_table(m, ti))
    layers = pd.DataFrame(layer_rows)
    att_cols = ["trace", "engine", "condition", "episode", "factor", "contribution_ms",
                "ci_low_ms", "ci_high_ms", "share", "offsets"]
    attribution = (pd.concat(att_rows, ignore_index=True)[att_cols] if att_rows
                   else pd.DataFrame(columns=att_cols))
    wall_attribution = (pd.concat(wall_att_rows, ignore_index=True)[att_cols] if wall_att_rows
                        else pd.DataFrame(columns=att_cols))
    # (with their columns even when empty: renderers select on them)
    wall_verdicts = pd.DataFrame(wall_rows, columns=_columns(wall_rows, VERDICT_COLUMNS))
    for c in ("start_ns", "end_ns"):  # (epoch ns: exact integers, never floats)
        if c in wall_verdicts:
            wall_verdicts[c] = pd.array([None if v is None or v != v else int(v)
                                         for v in wall_verdicts[c]], dtype="Int64")
    verdicts = pd.DataFrame(verdict_rows, columns=_columns(verdict_rows, VERDICT_COLUMNS))
    checks = pd.concat(check_rows, ignore_index=True) if check_rows else outside_table(
        pd.DataFrame(), None, 0)
    return Analysis(
        traces=loaded, merged=Later(lambda: _merged(loaded)),
        # (made when first read: the renderers that plot read it, the JSON and text do not;
        # each trace's table is kept meanwhile, as the made one would be)
        regions=Later(lambda: writable(pd.concat(merged_all, ignore_index=True)) if merged_all
                      else pd.DataFrame()),
        layers=layers, attribution=attribution,
        spans=pd.concat(span_rows, ignore_index=True) if span_rows else pd.DataFrame(),
        verdicts=verdicts, verdict=_headlines(statuses) + _overall(verdicts, wall_verdicts, lost,
                                                                 too_few),
        details=details, status=statuses,
        wall_verdicts=wall_verdicts, wall_attribution=wall_attribution,
        latency=wall.table(latency_rows),
        stream_checks=checks, stream_note=outside_note(checks), data_notes=data_notes,
        clocks=pd.concat([c for c in clock_rows if not c.empty] or
                         [pd.DataFrame(columns=CLOCK_COLUMNS)], ignore_index=True))


def _regions(tr: Trace, ti: int, full: bool) -> pd.DataFrame:
    """Trace `ti`'s merged regions as the analysis reads them: tagged with the trace, a
    program's own gaps grouped (analysis.gaps), rows of no condition in one. full=False:
    without merge.REPORT_ONLY's columns."""
    m = merge(tr, full=full, shared_empty=True)  # (made writable once through: writable)
    m["trace"] = ti
    if observed_gaps(tr.meta):  # a program's own gaps: grouped as found (analysis.gaps)
        m = regroup_by_gap(m)
    if "condition" in m and m["condition"].isna().any():  # a program that labelled
        m["condition"] = m["condition"].astype(object).where(  # nothing: one condition
            m["condition"].notna(), NO_CONDITION)
    return m


def _merged(traces: list[Trace]) -> pd.DataFrame:
    """Analysis.merged: every trace's regions with every telemetry column."""
    full = [_regions(tr, ti, full=True) for ti, tr in enumerate(traces)]
    return writable(pd.concat(full, ignore_index=True)) if full else pd.DataFrame()


# (`to_end`: an episode's, None on a condition's row; a column whether or not any episode
# was found, as the other episode fields are)
VERDICT_COLUMNS = ["trace", "engine", "condition", "episode", "first_iter", "last_iter",
                   "to_end", "cause",
                   "extra_ms", "sentence", "cause_code", "candidate_code", "share", "ci_low_ms",
                   "ci_high_ms", "latency", "reference_ms", "latency_ms", "iterations",
                   "sm_clock_ref_mhz", "sm_clock_mhz", "outcome", "causes", "offsets",
                   "unexplained_share", "verdict"]


def _is(col: pd.Series, value: Any) -> np.ndarray:
    """col == value as a plain boolean mask (a missing value is not equal)."""
    return (col == value).to_numpy(dtype=bool, na_value=False)


def _columns(rows: list[dict[str, Any]], base: list[str]) -> list[str]:
    """`base`, then any other key the rows have, in first-seen order."""
    return list(dict.fromkeys(base + [k for r in rows for k in r]))


COLD_RATIO = 1.5  # a first level this many times the rest's, at the recording's start...
COLD_SHARE = 0.25  # ...over at most this share of its iterations: a cold start


def _cold_start(lay: Layers, ep_verdicts: list[dict[str, Any]], ti: int, name: Any,
                cond: Any, alone: bool = False) -> str:
    """A sentence if an engine's first condition begins with a level well above the rest
    (lazy initialisation, cold caches, autotuning: work not marked warm-up), else "". Its
    layers make it an episode at the start (layers.Layers.lead), left out of the reference
    the other conditions are compared with; where that episode's verdict names a cause (a
    co-tenant already there when the recording began) it is no cold start, and the episode
    says so itself. Otherwise the reader is told, with the fix."""
    if lay.lead is None or lay.n < 2:
        return ""
    a, b, first = lay.lead
    rest = lay.baseline_ms
    k = b - a + 1
    if not (rest > 0 and first >= COLD_RATIO * rest and k <= COLD_SHARE * lay.n):
        return ""
    if any(ev["first_iter"] == a and ev["outcome"] == "explained" for ev in ep_verdicts):
        return ""
    # (`alone`: the engine's only condition, which no other is compared with)
    left = ("its own comparison leaves out" if alone else
            "its own comparison and the other conditions' reference leave out")
    return (f"trace {ti}: {name}, {cond}: the recording begins with {k} iterations at "
            f"{first / rest:.1f}x the latency of the rest ({first:.3f} vs {rest:.3f} ms): a "
            f"cold start not marked as warm-up, which {left} (an episode at the start); mark "
            f"warm-up (s.warmup = True, or record --warmup N) to leave it out of this "
            f"condition's own numbers too")


HELD_SHARE = 0.5  # a power/thermal reason in at least this share of every condition's calls


def _throttle_bits(rows: pd.DataFrame) -> np.ndarray:
    """Each row's power/thermal clock-event reason bits (THROTTLE_MASK; 0 where unknown)."""
    return rows["reasons_any"].to_numpy(np.int64, na_value=0) & THROTTLE_MASK


def _reason_share(rows: pd.DataFrame) -> float:
    """The share of `rows` with a power or thermal clock-event reason (0 without reasons)."""
    if "reasons_any" not in rows or not len(rows):
        return 0.0
    return float((_throttle_bits(rows) != 0).mean())


def _held_throughout(eng: pd.DataFrame, shares: list[float], tr: Trace, ti: int,
                     name: Any) -> str:
    """A sentence where the GPU reported a power or thermal reason holding its clock in most
    inferences of every condition of an engine (`shares`: each condition's _reason_share),
    else "": the conditions are compared with each other, so a limit they all ran under is
    in no verdict (a GPU too hot throughout reads "no condition is slower or faster"), and
    the reader is told, with the clock it ran at and, where the trace knows it, the GPU's
    maximum. (The caller asks only where no verdict of the engine names the limit.)"""
    if not shares or min(shares) < HELD_SHARE:
        return ""
    from ..fields import ClockEventReason

    bits = _throttle_bits(eng)
    names = ", ".join(ClockEventReason.names(int(np.bitwise_or.reduce(bits))))
    sm = eng["sm_clock_mhz_mean"].pipe(floats) if "sm_clock_mhz_mean" in eng else np.zeros(0)
    clock = float(np.nanmedian(sm)) if np.isfinite(sm).any() else float("nan")
    top = _sm_max_mhz(tr, eng)
    of = f", of its {top:.0f} MHz maximum" if top else ""
    at = f" (SM clock p50 {clock:.0f} MHz{of})" if np.isfinite(clock) else ""
    least = min(shares)
    every = "every condition" if len(shares) > 1 else "the run"
    where = (f"in every inference of {every}" if least >= 1.0 else
             f"in at least {least:.0%} of the inferences of {every}")
    return (f"trace {ti}: {name}: the GPU reported {names} {where}{at}: its clock was held "
            f"down throughout, which comparing conditions with each other cannot show")


SHARED_SHARE = 0.8  # another process at work through at least this share of a condition's calls


def _readings(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """The process readings either side of each row (merge's `other_active` and
    `other_active_next`, NaN unknown), for columns.others_either_side; None without a list."""
    if "other_active" not in df:
        return None
    act = df["other_active"].pipe(floats)
    return act, (df["other_active_next"].pipe(floats) if "other_active_next" in df
                 else np.full(act.size, np.nan))


def _shared_throughout(rows: pd.DataFrame) -> tuple[float, str] | None:
    """Where the GPU's process list shows another process at work through most of a
    condition's inferences (SHARED_SHARE; by the readings on both sides of each: stayed): the
    share, and who ("pid 4242, about 60% SM"); else None."""
    got = _readings(rows)
    if got is None or not len(rows):
        return None
    act, nxt = got
    known = np.isfinite(act)
    if not known.any():
        return None
    _, stayed = others_either_side(act, nxt)
    share = float(stayed[known].mean())
    if share < SHARED_SHARE:
        return None
    pid = rows["other_pid"].pipe(floats)[stayed] if "other_pid" in rows else np.zeros(0)
    pid = pid[np.isfinite(pid)]
    sm = rows["other_sm_pct"].pipe(floats)[stayed] if "other_sm_pct" in rows else np.zeros(0)
    sm = sm[np.isfinite(sm)]
    who = (f"pid {int(np.bincount(pid.astype(np.int64)).argmax())}" if pid.size
           else "its PID not known")
    return share, who + (f", about {float(np.median(sm)):.0f}% SM" if sm.size else "")


def _shared_notes(shared: list[tuple[Any, tuple[float, str] | None]], where: str,
                  base_cond: Any) -> list[str]:
    """Sentences for an engine's conditions another process was at work through
    (_shared_throughout), said where no verdict names it: a verdict compares a condition
    with another or with its own start, and a process there throughout is on both sides (a
    baseline shared with a co-tenant read "11.78 ms, the baseline the other conditions are
    compared with" and no more). One sentence where it was so in every condition."""
    found = [(c, x) for c, x in shared if x is not None]
    if not found:
        return []
    if len(found) == len(shared) > 1:
        least = min(x[0] for _, x in found)
        how = ("every inference of every condition" if least >= 1.0 else
               f"at least {least:.0%} of the inferences of every condition")
        return [f"{where}: another process was at work on the GPU through {how} (the GPU's "
                f"process list: {found[0][1][1]}): their latencies include that, which "
                f"comparing the conditions with each other cannot show"]
    out = []
    for c, (share, who) in found:
        also = (", and so does what the other conditions are compared with"
                if c == base_cond and len(shared) > 1 else "")
        out.append(f"{where}, {c}: another process was at work on the GPU through "
                   f"{share:.0%} of its inferences (the GPU's process list: {who}): its "
                   f"latency includes that{also}, which comparing it with its own start or "
                   f"with the other conditions cannot show")
    return out


def _sm_max_mhz(tr: Trace, eng: pd.DataFrame) -> float | None:
    """The maximum SM clock of the GPU the rows ran on, from the trace's device facts; None
    where the trace does not say (or the rows span GPUs)."""
    devices = (getattr(tr, "meta", None) or {}).get("devices") or []
    gpus = eng["gpu"].dropna().unique() if "gpu" in eng else []
    if len(gpus) > 1:
        return None
    index = int(gpus[0]) if len(gpus) else None
    for d in devices:
        if isinstance(d, dict) and (index is None or d.get("index") == index):
            top = (d.get("facts") or {}).get("sm_max_mhz")
            return float(top) if isinstance(top, (int, float)) and top > 0 else None
    return None


def _usable(inf: pd.DataFrame, ti: int) -> tuple[pd.DataFrame, str, list[str]]:
    """The measured rows analysis can use, and a sentence on those it cannot: a latency that
    is missing, infinite or not positive is no measurement; a call that raised is no
    inference."""
    ms = inf["gpu_ms"].pipe(floats)
    bad = ~np.isfinite(ms) | (ms <= 0) | (ms > MAX_LATENCY_MS)
    raised = inf["error"].notna().to_numpy() if "error" in inf else np.zeros(len(inf), bool)
    # A row OUTLIER_RATIO times its engine and condition's median is not the same inference
    # running slower (a heavy tail stays far below it: a busy host's slowest were ~40x): a
    # stall or broken data, reported apart so that a handful cannot flip a verdict.
    ok = ~(bad | raised)
    med = pd.Series(np.where(ok, ms, np.nan), index=inf.index).groupby(
        [inf["name"], inf["condition"]], dropna=False).transform("median").pipe(floats)
    outlier = ok & (ms > OUTLIER_RATIO * med)
    if not (bad | raised | outlier).any():
        return inf, "", []
    parts = []
    if bad.any():
        parts.append(f"{int(bad.sum())} with no valid latency (missing, infinite, <= 0 or "
                     f"over {MAX_LATENCY_MS:.0e} ms)")
    if (raised & ~bad).any():
        parts.append(f"{int((raised & ~bad).sum())} whose call raised")
    if outlier.any():
        parts.append(f"{int(outlier.sum())} over {OUTLIER_RATIO:g}x their condition's median "
                     f"latency (up to {np.max(ms[outlier]):.6g} ms: stalls or broken data, "
                     f"not the same work running slower)")
    keep = ~(bad | raised | outlier)
    kept = pd.Series(keep, index=inf.index).groupby(
        [inf["name"], inf["condition"]], dropna=False, sort=False).sum()
    gone = [f"{n}, {c}" for (n, c), k in kept.items() if k == 0]  # (a whole condition)
    whole = (f"; nothing is left of {', '.join(gone[:3])}{' and more' if len(gone) > 3 else ''}"
             f", which is missing from the tables") if gone else ""
    verb = "was" if int((~keep).sum()) == 1 else "were"  # (one left out in all)
    return inf[keep], (
        f"trace {ti}: of {len(inf)} measured inferences, {' and '.join(parts)} {verb} left out "
        f"of the analysis{whole}"), gone


def _with_reason_layers(rows: pd.DataFrame, lay: Layers) -> Layers:
    """`lay` with, among its episodes, each layer between the jump and the plateau (at least
    MIN_LEVEL iterations) during which the GPU reported a power or thermal reason the plateau
    does not: a cause of its own that came and went (a thermal limit, then the clock's own
    down-scaling after idle gaps), which the plateau's verdict would not name. Layers of one
    cause (a DVFS staircase, a power cap throughout) add nothing. Nor does a stretch of the
    way up above the plateau (layers' episode there) during most of which the GPU reported the
    plateau's own reasons: a power cap's controller dipping below the cap's clock as it
    settles is the plateau's cause, not one of its own."""
    if not lay.layered or lay.stable_iter is None or len(lay.levels_ms) < 3 \
            or "reasons_any" not in rows or not len(rows):
        return lay
    it = rows["iteration"].to_numpy()
    reasons = _throttle_bits(rows)
    stable = lay.stable_iter
    plateau = int(np.bitwise_or.reduce(reasons[it >= stable]))
    if plateau and lay.way_up:
        def own(e: tuple[int, int, float]) -> bool:
            bits = reasons[(it >= e[0]) & (it <= e[1])]
            return bool(bits.size and np.mean(bits != 0) >= 0.5
                        and not int(np.bitwise_or.reduce(bits)) & ~plateau)
        gone = [e for e in lay.way_up if own(e)]
        if gone:
            lay = replace(lay, episodes=[e for e in lay.episodes if e not in gone],
                          way_up=[e for e in lay.way_up if e not in gone])
    starts = [int(it[0])] + list(lay.change_points)  # (each merged segment's first iteration)
    extra = []
    for k in range(1, len(starts)):  # (not the baseline's segment)
        a = starts[k]
        if a >= stable:
            break
        b = starts[k + 1] - 1 if k + 1 < len(starts) else int(it[-1])
        inside = (it >= a) & (it <= b)
        if int(inside.sum()) >= MIN_LEVEL and \
                int(np.bitwise_or.reduce(reasons[inside])) & ~plateau:
            extra.append((a, int(it[inside].max()), float(lay.levels_ms[k])))
    return replace(lay, episodes=_union(lay.episodes, extra)) if extra else lay


def _episodes(rows: pd.DataFrame, lay: Layers, cond: Any, base_rows: pd.DataFrame | None,
              base_cond: Any, seed: int, y: str = "gpu_ms",
              events: pd.DataFrame | None = None, label: Any = None
              ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Verdicts and attributions of a condition's episodes (layers.Layers.episodes): each
    against the reference condition, or the condition's own rows outside its episodes (and
    before a final plateau). Only episodes that differ meaningfully from it are kept."""
    if not lay.episodes:
        return [], []
    it = rows["iteration"].to_numpy()
    inside = _inside(it, lay)
    calm = ~inside & ((it < lay.onset_iter) if lay.layered else True)
    if base_rows is not None and cond != base_cond:
        outer = base_rows, _reference_label(base_rows, base_cond)
    else:
        # (a layered condition's calm rows are those before its jump: so named, not "the rest
        # of the condition", which then runs well above them)
        outer = rows_where(rows, calm), ("iterations before the jump" if lay.layered
                                         else "the rest of the condition")
    # (an episode within the final plateau: against the plateau around it, whatever the
    # condition's reference; the clock's own down-scaling is the plateau's, not the episode's)
    start = lay.stable_iter if lay.layered else None
    plateau = ((rows_where(rows, (it >= start) & ~inside), "the rest of the plateau")
               if start is not None else None)

    def judge(a: int, b: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
        ref, ref_label = plateau if plateau is not None and start is not None \
            and a >= start else outer
        tgt = rows_where(rows, (it >= a) & (it <= b))
        if len(ref) < 3 or len(tgt) < 3:
            return None
        if _quiet(float(tgt[y].mean()), float(ref[y].mean()), lay.noise_ms):
            return None  # (its verdict is "no change", with or without an attribution: the
            # bootstrap, ~40 ms an episode, would be thrown away)
        att = _explain(ref, tgt, y, seed)
        where = f"iterations {a}-{b}"
        ep_lay = Layers(len(tgt), lay.baseline_ms, float(tgt[y].median()), False, None,
                        None, None, 1, lay.noise_ms)
        v = _verdict(f"{cond if label is None else label}, episode at {where}", ep_lay, ref,
                     tgt, att, ref_label, episode=True, y=y, events=events)
        if v["cause"] is None:
            return None
        return {"episode": where, "first_iter": a, "last_iter": b, **v}, att

    verdicts, atts = [], []
    for a0, b0, _ in lay.episodes:
        pieces = _by_other_process(rows, it, a0, b0, y)
        judged = [j for j in (judge(a, b) for a, b in pieces) if j is not None]
        # (split only where the process list's stretch is the other process's own verdict:
        # pieces that all read as the whole did would add nothing but fragments)
        if len(pieces) > 1 and not any(v["cause"] == "other_process" for v, _ in judged):
            judged = [j for j in (judge(a0, b0),) if j is not None]
        for v, att in judged:
            verdicts.append(v)
            if not att.empty:
                atts.append(att.assign(episode=v["episode"]))
    return verdicts, atts


OTHER_PIECE = (0.2, 0.8)  # the share of an episode's calls another process was at work in


def _by_other_process(rows: pd.DataFrame, it: np.ndarray, a: int, b: int, y: str
                      ) -> list[tuple[int, int]]:
    """Episode a..b (iterations), split where the GPU's process list shows another process at
    work through one stretch of it only (OTHER_PIECE of its calls, one run): the stretch and
    what comes before and after it, each judged on its own (those of MIN_LEVEL iterations or
    more). A latency episode can hold two causes back to back (a co-tenant, then the power
    cap its load left the GPU at): judged whole, neither was beyond doubt ("56% is not
    explained"). As it was elsewhere, and where the list is unknown for any of its calls.
    The list is read about once a second: the process came somewhere between the last reading
    without it and the first with it, and went between the last with it and the first
    without (columns.others_either_side: near, and stayed). Within each such second, the
    stretch begins and ends where `y` steps (_step); split at the readings themselves, it
    began and ended up to a second late."""
    got = _readings(rows)
    if got is None:
        return [(a, b)]
    inside = (it >= a) & (it <= b)
    act, nxt = got[0][inside], got[1][inside]
    if not act.size or not np.isfinite(act).all():
        return [(a, b)]
    near, stayed = others_either_side(act, nxt)
    on, sure = np.flatnonzero(near), np.flatnonzero(stayed)
    lo, hi = OTHER_PIECE
    if not (lo * act.size <= on.size <= hi * act.size) or on[-1] - on[0] + 1 != on.size \
            or not sure.size or sure[-1] - sure[0] + 1 != sure.size:
        return [(a, b)]
    v = rows[y].pipe(floats)[inside]
    if not np.isfinite(v).all():
        return [(a, b)]
    first = _step(v, int(on[0]), int(sure[0]), 0, int(sure[-1]) + 1)
    end = _step(v, int(sure[-1]) + 1, int(on[-1]) + 1, int(sure[0]), act.size)
    if end - first < MIN_LEVEL:
        return [(a, b)]
    its = it[inside]
    return ([(a, int(its[first - 1]))] if first >= MIN_LEVEL else []) \
        + [(int(its[first]), int(its[end - 1]))] \
        + ([(int(its[end]), b)] if act.size - end >= MIN_LEVEL else [])


def _step(v: np.ndarray, lo: int, hi: int, w0: int, w1: int) -> int:
    """Where, from lo to hi (inclusive), v[w0:w1] is best split in two constant levels (least
    squares; the first such k, so that v[w0:k] and v[k:w1] are the levels)."""
    seg = v[w0:w1]
    c1 = np.concatenate([[0.0], np.cumsum(seg)])
    c2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
    k = np.arange(lo, hi + 1) - w0  # (the left level's length)
    n = seg.size

    def sse(s1: np.ndarray, s2: np.ndarray, m: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(m > 0, s2 - s1 * s1 / m, 0.0)
    cost = sse(c1[k], c2[k], k) + sse(c1[n] - c1[k], c2[n] - c2[k], n - k)
    return int(lo + int(np.argmin(cost)))


def _explain(ref: pd.DataFrame, tgt: pd.DataFrame, y: str, seed: int,
             fit: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    """The attribution of `y`'s change from `ref` to `tgt`: event time by the clocks, host and
    other processes (host-refined); call -> result by its parts (explain.attribute_wall); a
    span's host time by the host's states."""
    if "kind" in tgt and len(tgt) and bool((tgt["kind"] == "span").all()):
        return attribute_span(ref, tgt, seed)
    fit = [ref, tgt] if fit is None else fit  # (the fit's rows: attribute takes them in order)
    att = refine_host(attribute(fit, ref, tgt, seed=seed), ref, tgt, seed)
    return att if y == "gpu_ms" else attribute_wall(ref, tgt, att, seed)


def _wall_series(key: dict[str, Any], rows: pd.DataFrame, base_rows: pd.DataFrame | None,
                 base_cond: Any, only_condition: bool, seed: int,
                 events: pd.DataFrame | None
                 ) -> tuple[list[dict[str, Any]], list[pd.DataFrame],
                            list[dict[str, Any] | None]]:
    """One condition's verdicts on the latency the user sees (call -> result; a span's host
    time), found on its own layers and episodes: verdict rows, attribution tables, and the
    rows of the `latency` table (wall.summary of each group: the condition, its reference,
    its episodes). Nothing where the wall latency is
    unknown for most rows (asynchronous calls: the program's own synchronize was not seen)."""
    if not wall.has_wall(rows):
        return [], [], []

    def known(df: pd.DataFrame) -> pd.DataFrame:
        w = df["wall_ms"].pipe(floats)
        return rows_where(df, np.isfinite(w) & (w > 0))

    cond = key["condition"]
    eng = str(key["engine"])
    label = f"span {eng[5:]}, {cond}" if eng.startswith("span:") else cond  # (what sentences say)
    w = known(rows)
    base_w = None if base_rows is None or not wall.has_wall(base_rows) else known(base_rows)
    if len(w) < 10:
        return [], [], []
    lay = _with_reason_layers(w, layers_of(w["wall_ms"].pipe(floats),
                                           w["iteration"].to_numpy()))
    ref, tgt, ref_label = _groups(w, lay, base_w, cond, base_cond, only_condition)
    groups = [wall.summary({**key, "episode": None, "group": "condition"}, w)]
    att = None
    if ref is not None:
        groups.append(wall.summary({**key, "episode": None, "group": f"reference: {ref_label}"},
                                   ref))
        if len(ref) >= 3 and len(tgt) >= 3:
            att = _explain(ref, tgt, "wall_ms", seed, fit=[ref, _without_inner(w, lay)])
    v = _verdict(label, lay, ref, tgt, att, ref_label, y="wall_ms", events=events)
    ep_v, ep_a = _episodes(w, lay, cond, base_w, base_cond, seed, y="wall_ms", events=events,
                           label=label)
    ep_v, ep_a = _with_signal_episodes(ep_v, ep_a, *_signal_episodes(w, label, seed, events),
                                       plateau=_plateau(lay, w, v))
    _mark_to_end(ep_v, w)
    if v["cause"] is None and ep_v:
        v = _noted(v, episodes_below=len(ep_v),
                   episodes_to_end=sum(ev["to_end"] for ev in ep_v))
    it = w["iteration"].to_numpy()
    hs = w["host_start_ns"].to_numpy(dtype=np.int64)  # (int64: epoch ns do not fit a float)
    done = hs + np.round(w["wall_ms"].pipe(floats) * 1e6).astype(np.int64)
    for ev in ep_v:
        inside = (it >= ev["first_iter"]) & (it <= ev["last_iter"])
        groups.append(wall.summary({**key, "episode": ev["episode"], "group": "episode"},
                                   rows_where(w, inside)))
        if inside.any():  # (when, on the trace's time base: from the first call to the last result)
            ev["start_ns"], ev["end_ns"] = int(hs[inside].min()), int(done[inside].max())
    verdicts = [{**key, "episode": None, "first_iter": None, "last_iter": None, **v}]
    verdicts += [{**key, **ev} for ev in ep_v]
    atts = ([att.assign(**key, episode=None)] if att is not None and not att.empty else [])
    atts += [ea.assign(**key) for ea in ep_a]
    return verdicts, atts, groups


# The signals whose window is judged on the event time too, with the factor that may take its
# part there: another context's time slices delay the start (call -> result's GPU queue) and,
# landing between a region's kernels, lengthen the region's own events.
EVENT_SIGNALS: dict[str, tuple[str, ...]] = {"gpu_queue": ("other_process",)}


def _with_signal_episodes(ep_v: list[dict[str, Any]], ep_a: list[pd.DataFrame],
                          sig_v: list[dict[str, Any]], sig_a: list[pd.DataFrame],
                          plateau: tuple[int, int, Any] | None = None
                          ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Latency episodes and those found from a cause's own signal, together: a cause's own
    window is the better one, so latency episodes it covers (half of either lies in the
    other) go. `plateau` (first and last iteration, cause): the condition's own verdict on
    its last level, where it names a cause; a signal window of the same cause that never
    ended (it reaches the condition's last iteration) over mostly the same rows says nothing
    more, and goes (a co-tenant that stayed is one verdict, not a verdict and an
    "episode")."""
    if plateau is not None:
        sig_v, sig_a = _not_the_plateau(sig_v, sig_a, plateau)
    if not sig_v:
        return ep_v, ep_a

    def covered(ev: dict[str, Any]) -> bool:
        return any(_halves(ev, sv) for sv in sig_v)
    ep_v = [ev for ev in ep_v if not covered(ev)]
    kept = {ev["episode"] for ev in ep_v}
    return ep_v + sig_v, [ea for ea in ep_a if ea["episode"].iloc[0] in kept] + sig_a


def _halves(e: dict[str, Any], f: dict[str, Any], each: bool = False) -> bool:
    """Do two iteration ranges (first_iter..last_iter) share more than half of the shorter
    one (`each`: of the longer one, so more than half of each)?"""
    a, b, c, d = e["first_iter"], e["last_iter"], f["first_iter"], f["last_iter"]
    shared = min(b, d) - max(a, c) + 1
    return shared > 0.5 * (max if each else min)(b - a + 1, d - c + 1)


def _inside(it: np.ndarray, lay: Layers, after: int | None = None) -> np.ndarray:
    """Which iterations `it` lie in one of `lay`'s episodes (those starting at or after
    `after`, where given)."""
    inside = np.zeros(it.size, dtype=bool)
    for a, b, _ in lay.episodes:
        if after is None or a >= after:
            inside |= (it >= a) & (it <= b)
    return inside


def _without_inner(rows: pd.DataFrame, lay: Layers) -> pd.DataFrame:
    """The condition's rows less the episodes within its layering (within the plateau, and
    above it on the way up), for the clocks' fit (another process's stretch at
    the plateau's clock would bend the latency-clock slope); the rows themselves, not a copy,
    where there are none (the attribution memo then matches)."""
    if not lay.layered or lay.stable_iter is None:
        return rows
    it = rows["iteration"].to_numpy()
    inner = _inside(it, lay, lay.stable_iter)
    for a, b, _ in lay.way_up:
        inner |= (it >= a) & (it <= b)
    return rows_where(rows, ~inner) if inner.any() else rows


def _calm(rows: pd.DataFrame | None, y: str, seed: int = 0,
          events: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The baseline condition's rows as a reference for the others: without the episodes its
    own layers find in `y` (a co-tenant or a thermal limit for a while during gap 0 is no
    part of what gap 20 is compared with: "4.73 ms vs 5.08 ms (gap=0ms), the reference was
    the slower" for a condition nothing happened to), and without its last level where
    something outside the program brought it (_from_outside: another process that came
    during gap 0 and stayed; gap 20 against a mix of gap 0 with and without it read "99% not
    explained"). A last level of the condition's own making (its sustained load reaching the
    power cap) stays: that is what running back to back is. Rows whose `y` is unknown stay
    (the wall series' own filter takes them out); so does everything where nothing is left
    out."""
    if rows is None or not len(rows) or y not in rows:
        return rows
    v = rows[y].pipe(floats)
    ok = np.isfinite(v) & (v > 0)
    if int(ok.sum()) < 2 * MIN_LEVEL:
        return rows
    it = rows["iteration"].to_numpy()
    order = np.argsort(it[ok], kind="stable")
    lay = layers_of(v[ok][order], it[ok][order])
    # (its episodes: not those on the way up to its plateau, above it, which its own load can
    # make too: the dips of a power cap's controller as it settles)
    keep = ~_inside(it, _without_way_up(lay))
    before = None  # (the iteration the left-out last level begins at)
    if lay.layered and lay.onset_iter is not None:
        known = rows_where(rows, ok)
        if not known["iteration"].is_monotonic_increasing:
            known = known.sort_values("iteration", kind="stable")
        if _from_outside(known, _with_reason_layers(known, lay), y, seed, events):
            # (the last level's start: what came between the jump and it, the load's own
            # power cap, say, stays)
            before = int(lay.stable_iter if lay.stable_iter is not None else lay.onset_iter)
            keep &= it < before
    if keep.all():
        return rows
    calm = rows_where(rows, keep)
    # (said in the reference's label)
    calm.attrs["episodes_left_out"] = len(lay.episodes) if lay.episodes else 0
    calm.attrs["before_iter"] = before
    return calm


def _without_way_up(lay: Layers) -> Layers:
    """`lay` without its episodes on the way up (layers: a stretch between the jump and the
    plateau, above the plateau it leads to)."""
    if not lay.way_up:
        return lay
    return replace(lay, episodes=[e for e in lay.episodes if e not in lay.way_up])


# Causes from outside the program and its load: a last level of the baseline condition they
# brought is no part of the reference (_calm). The GPU's and the host's own answers to the
# load (clocks, power and thermal limits, a cgroup's quota) and the program's own host work
# are its own.
OUTSIDE_FACTORS = frozenset({"other_process", "gpu_queue", "host_cpu", "vm_steal"})


def _from_outside(rows: pd.DataFrame, lay: Layers, y: str, seed: int,
                  events: pd.DataFrame | None) -> bool:
    """Does the baseline condition's own verdict on its last level (its plateau against its
    iterations before the jump, as the condition's row gives it) name a cause from outside
    the program (OUTSIDE_FACTORS) first? `rows`: the condition's rows with `y` known, in
    iteration order."""
    ref, tgt, label = _groups(rows, lay, None, None, None)
    if ref is None or len(ref) < 3 or len(tgt) < 3:
        return False
    att = _explain(ref, tgt, y, seed, fit=[ref, _without_inner(rows, lay)])
    return _verdict(None, lay, ref, tgt, att, label, y=y, events=events)["cause"] \
        in OUTSIDE_FACTORS


def _reference_label(base_rows: pd.DataFrame, base_cond: Any) -> str:
    """What a condition is compared with: the baseline condition, and what of it was left out
    (_calm): its episodes, its last level."""
    n = base_rows.attrs.get("episodes_left_out", 0)
    before = base_rows.attrs.get("before_iter")
    parts = ([f"before iteration {before}"] if before is not None else []) + (
        [f"outside its episode{'s' if n > 1 else ''}"] if n else [])
    return f"{base_cond} {' and '.join(parts)}" if parts else str(base_cond)


def _mark_to_end(ep_v: list[dict[str, Any]], rows: pd.DataFrame) -> None:
    """Each episode row's `to_end`: whether it was still there at its condition's end, within
    MIN_LEVEL iterations of its last (it came and did not go, as far as the run saw; a
    signal's window is trimmed to its last raised call, which may be a few before the end).
    Its sentence says so."""
    last = _last_iteration(rows)
    for i, ev in enumerate(ep_v):
        to_end = last is not None and int(ev["last_iter"]) >= last - MIN_LEVEL
        if to_end:
            ep_v[i] = {**_noted(ev, to_end=True), "to_end": True}
        else:
            ev["to_end"] = False


def _not_the_plateau(sig_v: list[dict[str, Any]], sig_a: list[pd.DataFrame],
                     plateau: tuple[int, int, Any]
                     ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """The signal episodes less those that repeat the condition's verdict on its last level
    (`plateau`: its first and last iteration and its cause): the same cause, a window that
    runs to the condition's end (within MIN_LEVEL iterations of its last, as _mark_to_end),
    and at least half of each in the other."""
    a0, b0, cause = plateau
    span = {"first_iter": a0, "last_iter": b0}

    def repeats(sv: dict[str, Any]) -> bool:
        return (sv["cause"] == cause and sv["last_iter"] >= b0 - MIN_LEVEL
                and _halves(sv, span, each=True))
    gone = {sv["episode"] for sv in sig_v if repeats(sv)}
    if not gone:
        return sig_v, sig_a
    return ([sv for sv in sig_v if sv["episode"] not in gone],
            [sa for sa in sig_a if sa["episode"].iloc[0] not in gone])


def _plateau(lay: Layers, rows: pd.DataFrame, v: dict[str, Any]
             ) -> tuple[int, int, Any] | None:
    """The condition's verdict on its last level, as _not_the_plateau reads it: the
    iterations it judged (from the plateau's start to the condition's last) and its cause;
    None where it judged no plateau (no layers) or named no cause."""
    last = _last_iteration(rows)
    if not lay.layered or lay.stable_iter is None or v["cause"] is None or last is None:
        return None
    return int(lay.stable_iter), last, v["cause"]


def _last_iteration(rows: pd.DataFrame) -> int | None:
    """The condition's last iteration number; None where it has none (no rows, or no known
    iteration numbers)."""
    it = rows["iteration"].pipe(floats) if len(rows) else np.zeros(0)
    it = it[np.isfinite(it)]
    return int(it.max()) if it.size else None


def _signal_episodes(w: pd.DataFrame, cond: Any, seed: int, events: pd.DataFrame | None,
                     y: str = "wall_ms", only: dict[str, tuple[str, ...]] | None = None
                     ) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Episodes found from each cause's own signal (analysis.signals): the calls inside the
    window against the condition's calls outside every window of that cause. Kept where that
    cause's part of the change is beyond doubt (its interval excludes 0) and at least
    signals.FLOOR_SHARE of the reference latency. `y`: the latency judged (call -> result, or
    "gpu_ms", the events); `only`: those signals, each with the factors that may take its part
    (the event time has no GPU queue: another process's slices show there as longer work)."""
    order = (w.sort_values("host_start_ns", kind="stable")  # (a copy of every column: only
             if "host_start_ns" in w and not w["host_start_ns"].is_monotonic_increasing
             else w)  # where the calls are not in order already, as they usually are)
    t0 = float(order["host_start_ns"].pipe(floats).min()) if "host_start_ns" in w else np.nan
    verdicts, atts = [], []
    signals = [(read, words, factors if only is None else only[key])
               for key, (read, words, factors) in SIGNALS.items() if only is None or key in only]
    for read, words, factors in signals:
        found = signal_windows(order, read(order))
        if not found:
            continue
        outside = np.ones(len(order), dtype=bool)
        for a, b in found:
            outside[a:b + 1] = False
        ref = order[outside]
        if len(ref) < 20:
            continue
        for a, b in found:
            tgt = order.iloc[a:b + 1]
            att = _explain(ref, tgt, y, seed)
            shown = [f for f in factors if att is not None and f in set(att["factor"])]
            if not shown:
                continue
            # (the signal's factor that took its part: the GPU queue is another process's
            # where NVML lists one, else a wait whose owner is unknown; both are in the table)
            by = att.set_index("factor")
            factor = max(shown, key=lambda f: abs(float(by.loc[f, "contribution_ms"])))
            row = by.loc[factor]
            r_ms = float(ref[y].mean())
            if not (_excludes_zero(row, row["contribution_ms"])
                    and abs(row["contribution_ms"]) >= FLOOR_SHARE * r_ms):
                continue
            it = tgt["iteration"].to_numpy()
            first, last = int(it.min()), int(it.max())
            hs = tgt["host_start_ns"].pipe(floats)
            label = (f"iterations {first}-{last}, {(hs.min() - t0) / 1e9:.1f}-"
                     f"{(hs.max() - t0) / 1e9:.1f} s, found from {words}")
            ep_lay = Layers(len(tgt), r_ms, float(tgt[y].median()), False, None, None,
                            None, 1, 0.0)
            v = _verdict(f"{cond}, episode at {label}", ep_lay, ref, tgt, att,
                         "the rest of the condition", episode=True, y=y, events=events)
            if v["cause"] is None:  # the latency held, but the cause was there and cost time
                ctx_all = context(ref, tgt, events, y)
                c0 = float(row["contribution_ms"])
                # what moved it the other way, each at least a tenth of the cost, largest first
                other = by[(np.sign(by["contribution_ms"]) == -np.sign(c0))
                           & (by["contribution_ms"].abs() >= MINOR_SHARE * abs(c0))]
                offsets = tuple(Named(str(f), np.nan, np.nan, np.nan,
                                      float(r["contribution_ms"]), float(r["ci_low_ms"]),
                                      float(r["ci_high_ms"]), ctx_all.get(str(f), ""))
                                for f, r in other.sort_values(
                                    "contribution_ms", key=abs, ascending=False).iterrows())
                v = _noted(v, cost_in_all=Named(
                    factor, np.nan, np.nan, np.nan, c0, float(row["ci_low_ms"]),
                    float(row["ci_high_ms"]), ctx_all.get(factor, "")), offsets=offsets)
            verdicts.append({"episode": label, "first_iter": first, "last_iter": last,
                             "found_from": factor, **v})
            atts.append(att.assign(episode=label))
    # One event leaves several signals (a thread holding the lock also makes the timed one
    # wait for a CPU): of windows that overlap by half, the one whose main cause is its own
    # signal's, then the costliest, stays.
    order_v = sorted(range(len(verdicts)), key=lambda i: (
        verdicts[i]["cause"] != verdicts[i]["found_from"],
        -abs(verdicts[i]["extra_ms"]) * verdicts[i]["iterations"]))
    kept: list[int] = []
    for i in order_v:
        if not any(_halves(verdicts[i], verdicts[k]) for k in kept):
            kept.append(i)
    kept.sort()
    labels = {verdicts[i]["episode"] for i in kept}
    return [verdicts[i] for i in kept], [x for x in atts if x["episode"].iloc[0] in labels]


SYNC_SHARE = 0.95  # host enqueue >= this share of gpu_ms...
SYNC_END_NS = 30_000  # ...and the end event ran within this of being enqueued
CLOCK_SPREAD = 1.1  # ...while the SM clock differed by this factor between conditions


def _waits_inside(inf: pd.DataFrame, ti: int) -> str | None:
    """A note where host launch delay cannot be told from a slower GPU. When the host left the
    timed call only as the GPU finished it (host enqueue >= SYNC_SHARE of gpu_ms, the end
    event run within SYNC_END_NS of being enqueued), either the GPU waited for a slow host
    (launch-bound: the host is the cause) or the call waited for its own GPU work (a
    synchronize inside it: the host's time is the GPU's). The timestamps are the same (seen on
    the H100: a busy host's launch-bound conv net, 1.006x and 1.2 us); the attribution credits
    the host. Only where the SM clock also changed between conditions could the clock be the
    cause instead: then say so. A kernel timeline (busy vs idle inside) tells them apart."""
    need = {"enqueue_ms", "gpu_ms", "end_ns", "host_enqueued_ns", "sm_clock_mhz_mean"}
    if not need <= set(inf.columns) or len(inf) < 10:
        return None
    if "busy_ms" in inf and np.isfinite(inf["busy_ms"].pipe(floats)).any():
        return None  # (the kernel timeline tells them apart)
    enq, ms = inf["enqueue_ms"].pipe(floats), inf["gpu_ms"].pipe(floats)
    e = inf["end_ns"]  # (ns since one of them: exact, columns.ns_since)
    t0 = int(e.iloc[int(np.argmax(e.notna().to_numpy()))]) if e.notna().any() else 0
    after = ns_since(e, t0) - ns_since(inf["host_enqueued_ns"], t0)
    ok = np.isfinite(enq) & np.isfinite(ms) & (ms > 0) & np.isfinite(after)
    if ok.sum() < 10:
        return None
    share = float(np.mean((enq[ok] >= SYNC_SHARE * ms[ok]) & (after[ok] <= SYNC_END_NS)))
    clocks = inf.assign(_c=inf["sm_clock_mhz_mean"].pipe(floats)).groupby(
        ["name", "condition"], sort=False)["_c"].median().dropna()
    if share < 0.5 or clocks.empty or not clocks.max() > CLOCK_SPREAD * clocks.min():
        return None
    return (f"trace {ti}: in {share:.0%} of inferences the host left the timed call only as the "
            f"GPU finished it, and the SM clock differed between conditions ({clocks.min():.0f}"
            f"-{clocks.max():.0f} MHz): either the GPU waited for a slow host (host launch "
            f"delay, as the attribution says) or the call waits for its own GPU work (a "
            f"synchronize inside it) and the clock is the cause; the timestamps cannot tell. "
            f"Record with --kernels (gpuwatch run --kernels) to split them")


def _baseline_condition(eng: pd.DataFrame) -> Any:
    gaps = eng.dropna(subset=["gap_ms"]).groupby("condition", sort=False)["gap_ms"].median()
    if gaps.empty:
        return None
    return gaps.idxmin()


def _groups(rows: pd.DataFrame, lay: Layers, base_rows: pd.DataFrame | None, cond: Any,
            base_cond: Any, only_condition: bool = False
            ) -> tuple[pd.DataFrame | None, pd.DataFrame, str]:
    """(reference rows, target rows, what the reference is). A run of one condition with no
    clean layers is compared with itself: its last LATE_ITERS iterations against its first
    EARLY_ITERS (the seed's Experiment 2 asks whether a single gap run drifts)."""
    it = rows["iteration"].to_numpy()
    # (the plateau without the episodes within it: another process for a while, after the
    # clock had settled, is its own verdict, not part of the plateau's level)
    tgt = rows_where(rows, (it >= lay.stable_iter) & ~_inside(it, lay, lay.stable_iter)) \
        if lay.layered else rows
    if base_rows is not None and cond != base_cond:
        return base_rows, tgt, _reference_label(base_rows, base_cond)
    # (the condition's own reference begins after an episode at its start, as its baseline
    # does: a co-tenant there when the recording began is that episode's verdict, and no
    # part of what the rest is compared with)
    after = it > lay.lead[1] if lay.lead is not None else np.ones(it.size, dtype=bool)
    if lay.layered:
        return rows_where(rows, after & (it < lay.onset_iter)), tgt, "iterations before the jump"
    if only_condition and int(after.sum()) >= 2 * (EARLY_ITERS + LATE_ITERS):
        first = int(it[after][0])
        return (rows_where(rows, after & (it < first + EARLY_ITERS)),
                rows_where(rows, it > it[-1] - LATE_ITERS),
                f"its first {EARLY_ITERS} iterations"
                + (" after the episode at its start" if lay.lead is not None else ""))
    # (compared with nothing: the baseline itself, the only condition when too short to
    # compare its first iterations with its last, or a condition with no baseline to compare
    # with, as when no condition has a gap_ms)
    return None, tgt, ("nothing" if cond != base_cond else ALONE if only_condition
                       else "itself")


FACTOR_TEXT = {c.factor: c.text for c in CAUSES}  # (analysis.causes is the one table)


def _verdict(cond: Any, lay: Layers, ref: pd.DataFrame | None, tgt: pd.DataFrame,
             att: pd.DataFrame | None, ref_label: str, episode: bool = False,
             y: str = "gpu_ms", events: pd.DataFrame | None = None) -> dict[str, Any]:
    """The verdict row: the Verdict (analysis.verdict) under "verdict", its fields (cause_code
    from CAUSE_CODES, share and interval of the main cause, the sentence...) and the latencies
    and SM clocks compared. `y` is the latency it is about: "gpu_ms" (the events) or "wall_ms"
    (call -> result; a span's host time). `events`: the trace's host_events (to name a
    thread)."""
    v = _judge(cond, lay, ref, tgt, att, ref_label, y, events)
    if v.outcome == "explained" and v.causes[0].code(v.reasons) == "power_cap" \
            and v.extra_ms < 0 and not episode and ref is not None:  # faster than back to back
        v = v.with_(sustained_mhz=(float(ref["sm_clock_mhz_mean"].median()),
                                   float(tgt["sm_clock_mhz_mean"].median())))
    return {**fields(v), "verdict": v,
            "iterations": len(tgt),
            "sm_clock_ref_mhz": None if ref is None else float(ref["sm_clock_mhz_mean"].median()),
            "sm_clock_mhz": float(tgt["sm_clock_mhz_mean"].median())}


LIST_PERIOD_NS = 1_000_000_000  # the sampler reads the GPU's process list about this often


def _list_blind(tgt: pd.DataFrame) -> bool:
    """Did the slower rows span less than two process-list readings, with a list read and no
    other process near any of them? Another process there between two readings would be in
    no reading (a co-tenant of 0.6 s read "not explained")."""
    got = _readings(tgt)
    if got is None or "host_start_ns" not in tgt or len(tgt) < 2 \
            or not np.isfinite(got[0]).all():
        return False
    near, _ = others_either_side(*got)
    t = tgt["host_start_ns"].to_numpy(np.int64)
    return not near.any() and int(t.max() - t.min()) < 2 * LIST_PERIOD_NS


def _nvml_only(ref: pd.DataFrame, tgt: pd.DataFrame) -> bool:
    """Are the clocks compared NVML's alone (no in-band stamp, lent or read, in most rows of
    either side), over regions shorter than NVML's refresh? Then a clock change within the
    regions could escape it."""
    def inband(df: pd.DataFrame) -> float:
        if "sm_clock_source" not in df or not len(df):
            return 0.0
        return float(df["sm_clock_source"].astype(str).str.startswith("in-band").mean())
    short = float(np.nanmedian(tgt["gpu_ms"].pipe(floats))) < NVML_REFRESH_MS \
        if "gpu_ms" in tgt and len(tgt) else True
    return bool(short and min(inband(ref), inband(tgt)) < 0.5)


def _noted(row: dict[str, Any], **notes: Any) -> dict[str, Any]:
    """A verdict row with notes that came after its decision (Verdict fields), words again."""
    v = row["verdict"].with_(**notes)
    return {**row, **fields(v), "verdict": v}


AGAINST = 0.03  # a clock this much lower on the faster side (or higher on the slower) moved
# against the change: two steps of an H100's 15 MHz at 1.5 GHz, beyond a reading's noise


def _judge(cond: Any, lay: Layers, ref: pd.DataFrame | None, tgt: pd.DataFrame,
           att: pd.DataFrame | None, ref_label: str, y: str = "gpu_ms",
           events: pd.DataFrame | None = None) -> Verdict:
    """What changed from `ref` to `tgt`, and which measured causes explain it, as data."""
    t_ms = float(tgt[y].mean())
    span = bool("kind" in tgt and len(tgt) and bool((tgt["kind"] == "span").all()))
    latency = "events" if y == "gpu_ms" else "wall"
    if ref is None:
        return Verdict(str(cond), latency, "baseline" if ref_label in ("itself", ALONE) else
                       "no_reference", t_ms, reference=ref_label, span=span)
    r_ms = float(ref[y].mean())
    delta = t_ms - r_ms
    # the reasons of the slower-clocked side (the reference's when the target is faster)
    slow_side = tgt if delta >= 0 else ref
    reasons = int(np.bitwise_or.reduce(slow_side["reasons_any"].to_numpy(np.int64))) \
        if "reasons_any" in slow_side and len(slow_side) else 0
    quiet = _quiet(t_ms, r_ms, lay.noise_ms)
    if att is None or att.empty:  # the change is known, its cause cannot be
        return Verdict(str(cond), latency, "no_change" if quiet else "no_telemetry", t_ms,
                       r_ms, ref_label, span, reasons=reasons)
    layered = (int(lay.stable_iter), int(lay.onset_iter)) \
        if lay.layered and lay.stable_iter is not None and lay.onset_iter is not None else None
    if quiet:
        return Verdict(str(cond), latency, "no_change", t_ms, r_ms, ref_label, span, layered,
                       reasons=reasons)
    a = att.set_index("factor")
    ctx = context(ref, tgt, events, y)

    def named(f: str) -> Named:
        row = a.loc[f]
        # (the interval on the share's scale: of all that moved the latency this way)
        scale = row["share"] / row["contribution_ms"] if row["contribution_ms"] else 0.0
        lo, hi = sorted((row["ci_low_ms"] * scale, row["ci_high_ms"] * scale))
        return Named(f, float(row["share"]), float(lo), float(hi),
                     float(row["contribution_ms"]), float(row["ci_low_ms"]),
                     float(row["ci_high_ms"]), ctx.get(f, ""))

    # every cause measured beyond doubt with at least MINOR_SHARE is named, the main one
    # (at least MAIN_SHARE) first
    supported = [f for f in a.index if f != "unexplained"
                 and a.loc[f, "share"] >= MINOR_SHARE and _excludes_zero(a.loc[f], delta)]
    supported.sort(key=lambda f: -a.loc[f, "share"])
    if supported and a.loc[supported[0], "share"] < MAIN_SHARE:
        supported = []
    # causes that moved it the other way: both sizes, never a share over 100%
    offsets = [f for f in a.index if f != "unexplained" and bool(a.loc[f].get("offsets", False))
               and abs(a.loc[f, "contribution_ms"]) >= MINOR_SHARE * abs(delta)]
    un = named("unexplained") if "unexplained" in a.index else None
    clock_ms = sum(abs(float(a.loc[f, "contribution_ms"])) for f in ("sm_clock", "throttling")
                   if f in a.index)
    against, f_ref, f_tgt = False, float("nan"), float("nan")
    if not span and clock_ms < MINOR_SHARE * abs(delta):  # (the medians only then: 200k rows)
        f_ref, f_tgt = (float(ref["sm_clock_mhz_mean"].median()),
                        float(tgt["sm_clock_mhz_mean"].median()))
        against = (f_ref > 0 and f_tgt > 0  # (NaN clocks compare False)
                   and (f_tgt < f_ref * (1 - AGAINST) if delta < 0
                        else f_tgt > f_ref * (1 + AGAINST)))
    v = Verdict(str(cond), latency, "unexplained", t_ms, r_ms, ref_label, span, layered,
                clock_against=(f_ref, f_tgt) if against else None,
                offsets=tuple(named(f) for f in offsets), unexplained=un,
                clock_share=float(sum(a.loc[f, "share"] for f in ("sm_clock", "throttling")
                                      if f in a.index)),
                clocks_known=span or bool(ref["sm_clock_mhz_mean"].notna().any()
                                          and tgt["sm_clock_mhz_mean"].notna().any()),
        nvml_blind=not span and _nvml_only(ref, tgt),
                kernels_known=bool("busy_ms" in tgt and tgt["busy_ms"].notna().all()),
                list_blind=not span and _list_blind(tgt), reasons=reasons)
    if supported:
        return v.with_(outcome="explained", causes=tuple(named(f) for f in supported))
    shares = a.drop(index=[f for f in ("unexplained",) if f in a.index])["share"]
    top = shares.idxmax() if shares.notna().any() else None
    if (un is None or un.share < 0.25) and top is not None and shares[top] >= 0.25:
        # the measured causes account for it, but none beyond doubt: say so, not "0%"
        return v.with_(outcome="cannot_tell", candidate=named(str(top)))
    return v


def _quiet(t_ms: float, r_ms: float, noise_ms: float) -> bool:
    """Is the change from a reference mean `r_ms` to `t_ms` no change: under NOISE_REL of the
    reference and under 3 noise s.d.?"""
    return abs(t_ms - r_ms) < max(NOISE_REL * r_ms, 3 * noise_ms)


# A bound within this of 0 is 0: below any clock's resolution here (CUDA events ~0.5 us), it
# is float dust. (A contribution that physics bounds at 0 gets a bootstrap bound of exactly 0,
# or of 1e-7 ms where the host times' rounding differs: a cause must not hang on which.)
ZERO_MS = 1e-5


def _excludes_zero(row: pd.Series, delta: float) -> bool:
    """Does the contribution's interval exclude 0, on the side of the change `delta`?"""
    lo, hi = row["ci_low_ms"], row["ci_high_ms"]
    return bool(lo > ZERO_MS or hi < -ZERO_MS) and np.sign(row["contribution_ms"]) == np.sign(
        delta)


def _ratio(tgt: pd.DataFrame, ref: pd.DataFrame | None, y: str = "gpu_ms") -> float:
    """The verdict's ratio: the mean latency of `tgt` over `ref`'s (1.0 with no reference)."""
    if ref is None:
        return 1.0
    r = float(ref[y].pipe(floats).mean())
    return float(tgt[y].pipe(floats).mean()) / r if r > 0 else np.nan


def _headlines(statuses: list[dict[str, Any]]) -> str:
    """What the verdict says first: each recording that did not complete (analysis.status)."""
    lines = [h for st in statuses if (h := status.headline(st, len(statuses) > 1))]
    return "".join(f"{h[0].upper()}{h[1:]}. " for h in lines)


MIN_SERIES_ROWS = 3  # a name with fewer measured inferences is not compared (_few)


def _few(inf: pd.DataFrame, ti: int) -> tuple[pd.DataFrame, str, pd.Index] | None:
    """The rows of the names with at least MIN_SERIES_ROWS measured inferences, a sentence on
    the others, and their names; None where there are none. A name seen once or twice has no
    change to find, and a region name that changes every iteration (a frame number in it)
    would make thousands of one-row series, each analysed on its own (seconds per thousand,
    and a report thousands of lines long)."""
    n = inf.groupby("name", sort=False).size()
    few = n[n < MIN_SERIES_ROWS]
    if few.empty:
        return None
    names = ", ".join(str(x) for x in few.index[:3]) + (", ..." if len(few) > 3 else "")
    return (inf[~inf["name"].isin(few.index)],
            f"trace {ti}: {len(few)} name(s) seen fewer than {MIN_SERIES_ROWS} times each "
            f"({int(few.sum())} measured inferences in all) were not compared ({names})" + (
                "; a region name that changes every iteration makes each its own series: "
                "name regions by what they do" if len(few) > 10 else ""), few.index)


def _overall(verdicts: pd.DataFrame, wall_verdicts: pd.DataFrame | None = None,
             lost: Sequence[str] = (), too_few: Sequence[str] = ()) -> str:
    """One sentence for everything: how many conditions changed, and what explains them. The
    latency the user sees comes first: a series with call -> result verdicts is judged on them
    (and on its event time only where they found no change at all); spans count where they
    changed."""
    if wall_verdicts is not None and not wall_verdicts.empty:
        key = ["trace", "engine", "condition"]

        def keys(df: pd.DataFrame) -> list[tuple[Any, ...]]:
            return [tuple(k) for k in df[key].to_numpy().tolist()]

        changed_keys = set(keys(wall_verdicts[wall_verdicts["cause"].notna()]))
        span = wall_verdicts["engine"].astype(str).str.startswith("span:").to_numpy()
        use_wall = [k in changed_keys or (not sp and k not in set(keys(verdicts)))
                    for k, sp in zip(keys(wall_verdicts), span)]
        ev = verdicts[[k not in changed_keys for k in keys(verdicts)]] if len(verdicts) \
            else verdicts
        verdicts = pd.concat([wall_verdicts[use_wall], ev], ignore_index=True)
        if verdicts.empty:  # (spans alone, none changed: judged on them, not "no inferences")
            verdicts = wall_verdicts
    not_compared = (f" {len(lost)} condition(s) had no valid latency at all and were not "
                    f"compared ({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}).") \
        if lost else ""
    not_compared += "".join(f" {t[0].upper()}{t[1:]}." for t in too_few)
    if verdicts.empty:
        return ("No inference series had enough inferences to compare." if too_few else
                "No measured inferences in the trace(s).") + not_compared
    # each verdict weighs what it cost in all: |extra ms| x the iterations it concerns (a
    # 1,000-iteration episode of +1.8 ms outweighs a 70-iteration one of +3 ms)
    n_iter = verdicts["iterations"] if "iterations" in verdicts else 1
    v = verdicts.assign(abs_extra=verdicts["extra_ms"].abs() * n_iter)
    changed = v[v["cause"].notna()].sort_values("abs_extra", ascending=False)
    key = ["trace", "engine", "condition"]
    n_conditions = len(v.drop_duplicates(key))
    if changed.empty:
        if lost or too_few:  # ("no change" only where nothing changed anywhere: these were
            # not seen)
            return ("No condition that could be compared is slower or faster than its baseline "
                    "beyond noise." + not_compared)
        return ("No condition is slower or faster than its baseline beyond noise, and no "
                "episode came and went.")
    episodic = changed["episode"].notna() if "episode" in changed else \
        pd.Series(False, index=changed.index)
    n_lasting = len(changed[~episodic].drop_duplicates(key))
    episodes = int(episodic.sum())
    # The main cause and the largest verdict leave out the episodes that were faster than the
    # rest of their condition, where anything else changed: the time a faster stretch saved
    # is not extra time (a few of them would otherwise outweigh a long, slower episode and be
    # called "largest"). A whole condition faster than its baseline stays in: the baseline
    # may be the slow one (a sustained load under a power cap).
    faster_ep = (episodic & (changed["extra_ms"] < 0)).to_numpy()
    ranked = changed[~faster_ep] if (~faster_ep).any() else changed
    worst = ranked.iloc[0]
    weight = ranked.groupby("cause")["abs_extra"].sum().sort_values(ascending=False)
    main = weight.index[0]
    count = int((ranked["cause"] == main).sum())
    n_fast = len(changed) - len(ranked)
    if (changed["cause"] == main).all():
        how = "main cause in all of them"
    else:
        how = "main cause" + (f", leaving out {n_fast} faster episode(s)," if n_fast else "") + (
            " in the one verdict" if len(ranked) == 1 else
            f" in all {len(ranked)} verdicts" if count == len(ranked) else
            f" in {count} of {len(ranked)} verdicts, which hold "
            f"{weight.iloc[0] / weight.sum():.0%} of {'their' if n_fast else 'all the'} extra "
            f"time (extra ms x iterations)")
    # (a span's sentence names it already)
    prefix = (f"{worst['engine']}, " if v["engine"].nunique() > 1
              and not str(worst["engine"]).startswith("span:") else "")
    to_end = (int(changed.loc[episodic, "to_end"].fillna(False).astype(bool).sum())
              if "to_end" in changed else 0)
    came = episodes_text(episodes, to_end)
    # (two engines timed in one condition are two series: say so, not "2 conditions")
    series = "conditions" if v["engine"].nunique() <= 1 else "engine/condition series"
    if n_lasting:
        head = f"{n_lasting} of {n_conditions} {series} differ from their baseline" + (
            f", and {came}" if episodes else "")
    else:
        head = (f"No {'condition' if series == 'conditions' else 'series'} differs from its "
                f"baseline as a whole, but {came}")
    main_text = FACTOR_TEXT[main]
    if main == "unexplained" and "outcome" in ranked:
        # ("unexplained" holds the verdicts that named no cause: where a candidate was there
        # but not beyond doubt, that is "cannot tell", not "nothing measured")
        unsure = (ranked.loc[ranked["cause"] == main, "outcome"] == "cannot_tell")
        if unsure.all():
            main_text = "no cause beyond doubt (cannot tell which)"
        elif unsure.any():
            main_text = f"{main_text}, or no cause beyond doubt"
    return (f"{head}; {how}: {main_text}. Largest: {prefix}"
            f"{worst['sentence']}" + not_compared)


def _span_table(m: pd.DataFrame, ti: int) -> pd.DataFrame:
    """Pre/post-processing spans: spread and spikes (the seed's 4th question)."""
    sp = m[(m["kind"] == "span") & ~m["warmup"].astype(bool)]
    rows = []
    for (name, cond), g in sp.groupby(["name", "condition"], sort=False, dropna=False):
        x = g["gpu_ms"].pipe(floats)
        med = float(np.median(x))
        mad = float(1.4826 * np.median(np.abs(x - med)))
        spikes = int((x > med + max(10 * mad, 0.5 * med)).sum())
        rows.append({"trace": ti, "span": name, "condition": cond, "n": len(x), "p50_ms": med,
                     "p99_ms": float(np.percentile(x, 99)), "max_ms": float(x.max()),
                     "spikes": spikes})
    return pd.DataFrame(rows)

