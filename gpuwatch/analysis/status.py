"""How each trace's recording went, said before any verdict: its status (complete, failed,
interrupted, recovered from its chunks, never finished), its error, how many inferences were
planned and kept, the telemetry it lost, its schema and the gpuwatch that wrote it.

A verdict on a recording that failed after 92 of 400 planned inferences is about those 92: the
report says so first (`headline`), the JSON gives it as a `status` object per trace, the text
and HTML reports in their first lines.
"""

from __future__ import annotations

from typing import Any

from ..trace import Trace, live_writer

__all__ = ["error_of", "headline", "line", "of", "telemetry_text", "warning_text"]

# what each recording status means, in a sentence ("the recording ...")
STATUS_WORDS = {
    "failed": "failed",
    "interrupted": "was cut short (interrupted: Ctrl-C, a signal, or the process died)",
    "recovered": "did not finish: the trace was recovered from its chunks",
    "recording": "never finished (its status is still 'recording')",
}
LOW_RATE = 0.5  # a sampler achieving under half the asked rate lost telemetry


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def error_of(meta: dict[str, Any]) -> str | None:
    """The recording's error as its metadata gives it, None where none; without the empty
    message earlier recorders wrote after an exception that had none
    ("KeyboardInterrupt: ")."""
    err = meta.get("error")
    if not isinstance(err, str):
        return None
    return err.rstrip().removesuffix(":") or None


def of(tr: Trace, ti: int, kept: int, warmup: int = 0) -> dict[str, Any]:
    """The status object of trace `ti`: `kept` is how many measured inferences it holds,
    `warmup` how many warm-up inferences besides (recorded, never compared)."""
    m = tr.meta
    opts = _dict(m.get("options"))
    planned = None
    iters, conds = opts.get("iters"), opts.get("conditions")
    if opts.get("command") == "record" and isinstance(iters, int) and not isinstance(iters, bool) \
            and isinstance(conds, list) and conds:
        planned = iters * len(conds)
    versions = _dict(m.get("versions"))
    status = m.get("status")
    # (a .partial whose recording process still runs: a snapshot, not a dead recording)
    live = live_writer(m) if tr.recovered and status == "recording" else None
    return {"trace": ti, "path": str(tr.path),
            "status": status if isinstance(status, str) and status else "unknown",
            "live": live,
            "error": error_of(m),
            # (what failed, where the recorder says: "program" (the code timed raised; the
            # recording is whole up to then), "gpu" (an error found as it closed), "trace"
            # (writing the trace); None: not said, as before schema v4's recorders)
            "failed_by": (m.get("failed_by") if status == "failed"
                          and isinstance(m.get("failed_by"), str) else None),
            "planned": planned, "kept": int(kept), "warmup": int(warmup),
            "telemetry": _telemetry(m, tr),
            # (a warning the recorder left: `gpuwatch run` on a simulated GPU)
            "warning": m.get("warning") if isinstance(m.get("warning"), str) else None,
            # (`gpuwatch run`: the profiled program's exit status; None for other traces)
            "program_exit_status": (m["program_exit_status"]
                                    if isinstance(m.get("program_exit_status"), int)
                                    and not isinstance(m.get("program_exit_status"), bool)
                                    else None),
            "schema_version": tr.schema_version,
            # (rows that repeated another row exactly, per table: read once; reader)
            "repeated_rows": dict(getattr(tr, "repeated_rows", None) or {}),
            "recorded_by": versions.get("gpuwatch")}


def _telemetry(m: dict[str, Any], tr: Trace) -> list[str]:
    """What the trace lost of its telemetry, in words (empty: nothing known lost)."""
    out = []
    smp = _dict(m.get("sampler"))
    if smp.get("mode") == "off":
        out.append("no telemetry: the sampler was off")
    errors = smp.get("errors")
    if isinstance(errors, int) and errors > 0:
        out.append(f"{errors} telemetry read(s) failed")
    if isinstance(smp.get("error"), str):
        out.append(f"the sampler stopped: {smp['error']}")
    asked, got = smp.get("requested_hz"), smp.get("achieved_hz")
    if isinstance(asked, (int, float)) and isinstance(got, (int, float)) and asked > 0 \
            and got < LOW_RATE * asked:
        out.append(f"sampled at {got:.0f} Hz of the {asked:.0f} Hz asked")
    ev = tr.events
    if ev is not None and len(ev) and "kind" in ev:
        n = int((ev["kind"] == "error").sum())
        if n:
            out.append(f"{n} error event(s) in the trace's events table")
    kt = m.get("kernel_trace")
    if isinstance(kt, dict) and isinstance(kt.get("error"), str):
        out.append(f"the kernel trace failed: {kt['error']}")
    elif isinstance(kt, dict) and isinstance(kt.get("dropped_records"), int) \
            and kt["dropped_records"] > 0:
        out.append(f"CUPTI dropped {kt['dropped_records']} kernel record(s)")
    return out


def headline(st: dict[str, Any], several: bool = True) -> str | None:
    """The sentence that comes before any verdict where the recording did not complete; None
    where it did."""
    if st["status"] == "complete":
        return None
    what = STATUS_WORDS.get(st["status"], f"has status {st['status']!r}")
    if st.get("live"):
        what = f"is still in progress ({st['live']} is writing it): this is a snapshot"
    who = f"trace {st['trace']}: the recording" if several else "The recording"
    n = (f" after {st['kept']} of {st['planned']} planned inferences" if st["planned"]
         else f" with {st['kept']} measured inferences")
    err = f" ({st['error']})" if st["error"] else ""
    # (a session or `gpuwatch run` plans no count: nothing planned to contrast with)
    rest = ("what follows is about the inferences it kept" + (", not the run that was planned"
                                                               if st["planned"] else ""))
    if st.get("failed_by") == "program":  # (the recording did not fail: the code it timed
        # raised, the program's or record's engine)
        who = f"trace {st['trace']}: the run" if several else "The run"
        n = n.replace(" with ", " after ", 1)
        return f"{who} stopped at an error{err}{n}; the trace holds everything up to it, and {rest}"
    return f"{who} {what}{n}{err}; {rest}"


def warning_text(st: dict[str, Any]) -> str | None:
    """"warning: ..." where the recorder left one; else None."""
    return f"warning: {st['warning']}" if st.get("warning") else None


def telemetry_text(st: dict[str, Any]) -> str | None:
    """"telemetry: ..." where the trace lost some; None where nothing is known lost."""
    return ("telemetry: " + "; ".join(st["telemetry"])) if st["telemetry"] else None


def line(st: dict[str, Any]) -> str:
    """One line for a report's header: "recording complete, 800 of 800 planned inferences kept;
    schema v4, written by gpuwatch 0.1.0"."""
    n = (f"{st['kept']} of {st['planned']} planned inferences kept" if st["planned"]
         else f"{st['kept']} measured inferences")
    # (a count of what `gpuwatch run` or a session found holds the warm-up too; a plan not)
    if st.get("warmup") and not st["planned"]:
        n += f" (and {st['warmup']} warm-up, not compared)"
    by = f", written by gpuwatch {st['recorded_by']}" if st["recorded_by"] else ""
    err = f" ({st['error']})" if st["error"] and st["status"] != "complete" else ""
    word = ("complete" if st["status"] == "complete"
            else f"IN PROGRESS ({st['live']})" if st.get("live")
            else "NOT FINISHED" if st["status"] == "recording"
            # (the code it timed raised: the recording is whole up to then)
            else "ENDED AT THE RUN'S ERROR" if st.get("failed_by") == "program"
            else st["status"].upper())
    code = st.get("program_exit_status")
    # (a program that exited with an error status after its regions: its trace is complete,
    # but the run it profiled did not end well, which the reader should know)
    ended = f"; the program exited with status {code}" if code not in (None, 0) else ""
    return f"recording {word}{err}, {n}{ended}; schema v{st['schema_version']}{by}"
