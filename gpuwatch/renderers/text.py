from __future__ import annotations

import math

import pandas as pd

from ..analysis import status
from ..analysis.pipeline import Analysis, share_text
from ..analysis.clock import sentence as clock_sentence
from ..analysis.wall import text as wall_text
from ..analysis.columns import ms_text
from .base import Renderer


def _num(v: object, fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "-"
    return fmt.format(v)


def _ep(episode: object) -> str:
    """An episode label, or "" for a whole condition (None/NaN in the tables)."""
    return episode if isinstance(episode, str) else ""


class TextRenderer(Renderer):
    """The terminal summary: per trace, the layers table, the attribution, the verdicts."""

    def render(self, analysis: Analysis) -> str:
        out = []
        for ti, tr in enumerate(analysis.traces):
            devs = ", ".join(d.get("name", "?") for d in tr.meta.get("devices", []))
            sim = " (SIMULATED)" if tr.simulated else ""
            out.append(f"== {tr.path}  [{devs}{sim}]")
            st = next((x for x in analysis.status if x["trace"] == ti), None)
            if st is not None:  # (how the recording went, before anything else)
                out.append(f"   {status.line(st)}")
                for line in (status.warning_text(st), status.telemetry_text(st)):
                    if line:
                        out.append(f"   {line}")
            lay = analysis.layers[analysis.layers["trace"] == ti] if not analysis.layers.empty \
                else analysis.layers
            wv_all = analysis.wall_verdicts
            measured = st is not None and st.get("kept", 0)
            none = ("no inference series with enough inferences to compare (see the notes)"
                    if measured else "no measured inferences")
            if lay.empty and (wv_all.empty or not (wv_all["trace"] == ti).any()):
                out.append(f"   {none}")
                continue
            if lay.empty:  # (spans only: their verdicts follow)
                out.append(f"   {none}; spans only")
            if not lay.empty:
                # (columns as wide as their widest value: no engine or condition name is cut)
                we = max([len("engine")] + [len(str(e)) for e in lay["engine"]]) + 2
                wc = max([len("condition")] + [len(str(c)) for c in lay["condition"]]) + 2
                # (numbers as wide as the widest too: a 359.92 ms base never meets its ratio)
                wb = max([9] + [len(ms_text(v)) + 2 for v in lay["baseline_ms"]])
                wf = max([11] + [len(ms_text(v)) + 2 for v in lay["final_ms"]])
                wr = max([7] + [len(f"{v:.2f}x") + 1 for v in lay["ratio_to_baseline"]])
                out.append(f"   {'engine':<{we}}{'condition':<{wc}}{'n':>6}{'base ms':>{wb}}"
                           f"{'jump':>6}{'stable':>8}{'stable ms':>{wf}}{'ratio':>{wr}}"
                           f"{'layers':>8}")
            for r in lay.itertuples():
                out.append(f"   {str(r.engine):<{we}}{str(r.condition):<{wc}}{r.n:>6}"
                           f"{ms_text(r.baseline_ms):>{wb}}{_num(r.onset_iter, '{:.0f}'):>6}"
                           f"{_num(r.stable_iter, '{:.0f}'):>8}{ms_text(r.final_ms):>{wf}}"
                           f"{r.ratio_to_baseline:>{wr - 1}.2f}x{r.n_layers:>8}")
            att = analysis.attribution
            att = att[att["trace"] == ti] if not att.empty else att
            ver = analysis.verdicts[analysis.verdicts["trace"] == ti]
            changed = {(r.engine, r.condition, _ep(r.episode)) for r in ver.itertuples()
                       if isinstance(r.cause, str)}
            att = att[[(e, c, _ep(x)) in changed for e, c, x in
                       zip(att["engine"], att["condition"], att["episode"])]] \
                if not att.empty else att  # a change within noise has no shares to give
            if not att.empty:
                out.append("   GPU time (events): extra latency explained by (ms, 95% interval,"
                           " share):")
                several = att["engine"].nunique() > 1
                for (eng, cond, ep), g in att.groupby(["engine", "condition", "episode"],
                                                     sort=False, dropna=False):
                    if _ep(ep):
                        cond = f"{cond}, {ep}"
                    if several:
                        cond = f"{eng}, {cond}"
                    cells = [f"{r.factor} {r.contribution_ms:+.3f} [{r.ci_low_ms:+.3f},"
                             f"{r.ci_high_ms:+.3f}] {share_text(r.share)}"
                             for r in g.itertuples() if r.factor in ("sm_clock", "unexplained")
                             or abs(r.contribution_ms) > 1e-9]
                    out.append(f"     {cond}: " + "; ".join(cells))
            sp = analysis.spans
            sp = sp[sp["trace"] == ti] if not sp.empty else sp
            for r in sp.itertuples():
                # (its GPU time, the events: its host time is in the latency lines below)
                out.append(f"   span {r.span} ({r.condition}), GPU time (events): p50 "
                           f"{r.p50_ms:.3f} ms, p99 {r.p99_ms:.3f}, max {r.max_ms:.3f}, "
                           f"{r.spikes} spikes")
            clk = analysis.clocks[analysis.clocks["trace"] == ti]
            for r in clk.itertuples():
                out.append(f"   {clock_sentence(r)}")
            lat = analysis.latency
            lat = lat[(lat["trace"] == ti) & (lat["group"] == "condition")] if not lat.empty \
                else lat
            if not lat.empty:  # the latency the user sees first, in parts that add up
                out.append("   the latency the user sees (means; p50/p90/p99 of call -> result):")
                for r in lat.to_dict("records"):
                    out.append(f"     {r['engine']}, {r['condition']}: {wall_text(r)}; "
                               f"p50 {r['wall_p50_ms']:.3f} / p90 {r['wall_p90_ms']:.3f} / p99 "
                               f"{r['wall_p99_ms']:.3f} ms")
            wv = analysis.wall_verdicts
            wv = wv[wv["trace"] == ti] if not wv.empty else wv
            ver = analysis.verdicts[analysis.verdicts["trace"] == ti]
            several = pd.concat([wv["engine"], ver["engine"]]).nunique() > 1 if len(wv) else \
                ver["engine"].nunique() > 1  # (then each sentence says whose it is)
            for r in list(wv.itertuples()) + list(ver.itertuples()):
                # (a span's sentence names it already)
                whose = several and not str(r.engine).startswith("span:")
                out.append(f"   - {r.engine}, {r.sentence}" if whose else f"   - {r.sentence}")
        out.append("")
        out.append(f"verdict: {analysis.verdict}")
        if analysis.stream_note:
            out.append(f"warning: {analysis.stream_note}")
        for note in analysis.data_notes:
            out.append(f"note: {note}")
        return "\n".join(out) + "\n"
