"""The evidence a verdict gives for each cause, in words: the measured values its share rests
on, reference -> target, in brackets ("(SM clock 1980 -> 1590 MHz)"). Means, as the shares are
(a few very slow calls move a mean, not a median)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import floats
from .hostside import busiest_thread, cpu_freq_text

__all__ = ["context"]


def _means(ref: pd.DataFrame, tgt: pd.DataFrame, col: str) -> tuple[float, float]:
    """The column's mean in the reference and the target rows (NaN where unknown)."""
    def m(df: pd.DataFrame) -> float:
        if col not in df:
            return np.nan
        v = df[col].pipe(floats)
        return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
    return m(ref), m(tgt)


def _moved(ref: pd.DataFrame, tgt: pd.DataFrame, col: str, words: str) -> str:
    """" (words: a -> b ms)", or "" where the column is unknown."""
    a, b = _means(ref, tgt, col)
    return f" ({words}: {a:.3f} -> {b:.3f} ms)" if np.isfinite(a) and np.isfinite(b) else ""


def _grew(ref: pd.DataFrame, tgt: pd.DataFrame, col: str, floor_ms: float = 0.001) -> bool:
    """Did column `col`'s mean move by at least `floor_ms` (1 us: below, "0.004 -> 0.004 ms"
    is no evidence of anything)?"""
    a, b = _means(ref, tgt, col)
    return bool(np.isfinite(a) and np.isfinite(b) and abs(b - a) >= floor_ms)


def _faults(ref: pd.DataFrame, tgt: pd.DataFrame, col: str, which: str) -> str:
    """" (a -> b major page faults per call)" where they rose, else ""."""
    a, b = _means(ref, tgt, col)
    if not (np.isfinite(a) and np.isfinite(b)) or b <= a + 0.5:
        return ""
    return f" ({a:.1f} -> {b:.1f} {which} page faults per call: it waited for memory from disk)"


def _after_gpu(ref: pd.DataFrame, tgt: pd.DataFrame) -> str:
    """" (after the GPU finished, before the result: off the CPU a -> b ms while the other
    threads ran c -> d ms, mean per call)" where the completion window's time off the CPU grew
    (the thread could not take the interpreter lock back), else ""."""
    off, others = _means(ref, tgt, "completion_offcpu_ms"), _means(ref, tgt, "completion_others_run_ms")
    if not all(np.isfinite(x) for x in off + others) or off[1] <= off[0] + 0.01:
        return ""
    return (f" (after the GPU finished, before the result: off the CPU {off[0]:.3f} -> "
            f"{off[1]:.3f} ms while the other threads ran {others[0]:.3f} -> {others[1]:.3f} ms, "
            f"mean per call)")


def _switches(ref: pd.DataFrame, tgt: pd.DataFrame) -> str:
    """" (CUPTI: a -> b context switches ... per call)" where CUPTI gave them and they rose."""
    a, b = _means(ref, tgt, "ctx_switches")
    if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
        return ""
    return (f" (CUPTI: {a:.2f} -> {b:.2f} context switches of this program's GPU context per "
            f"call: another context had the GPU meanwhile)")


def _oncpu(ref: pd.DataFrame, tgt: pd.DataFrame) -> str:
    """How the thread waited for its result (a spinning or a blocking synchronize)."""
    a, b = _means(ref, tgt, "wait_oncpu_pct")
    if not (np.isfinite(a) and np.isfinite(b)):
        return ""
    how = (": it slept (a blocking synchronize)" if b < 50 <= a else
           ": it spun" if a < 50 <= b else "")
    return f" (on a CPU {a:.0f}% -> {b:.0f}% of the wait{how})"


def context(ref: pd.DataFrame, tgt: pd.DataFrame, events: pd.DataFrame | None = None,
             y: str = "gpu_ms") -> dict[str, str]:
    """The evidence each factor's sentence gives, in brackets (means, as the shares are)."""
    from ..fields import ClockEventReason

    sm = f" (SM clock {ref['sm_clock_mhz_mean'].median():.0f} -> {tgt['sm_clock_mhz_mean'].median():.0f} MHz)"
    mem = f" (memory clock {ref['mem_clock_mhz_mean'].median():.0f} -> {tgt['mem_clock_mhz_mean'].median():.0f} MHz)"
    bits = int(np.bitwise_or.reduce(tgt["reasons_any"].to_numpy(np.int64))) if len(tgt) else 0
    names = [n for n in ClockEventReason.names(bits) if n != "gpu_idle"]
    thr = f" (reasons: {', '.join(names)})" if names else ""
    # (means, as the shares are: a few very slow iterations move a mean, not a median)
    host = (f" (host enqueue, mean {ref['enqueue_ms'].mean():.3f} -> "
            f"{tgt['enqueue_ms'].mean():.3f} ms)")
    busy = ""
    if "busy_ms" in tgt and tgt["busy_ms"].notna().all() and ref["busy_ms"].notna().all():
        host = (f" (GPU idle inside each inference, waiting for the host, mean: "
                f"{ref['idle_inside_ms'].mean():.3f} -> {tgt['idle_inside_ms'].mean():.3f} ms)")
        busy = (f" (kernel time, mean {ref['busy_ms'].mean():.3f} -> {tgt['busy_ms'].mean():.3f} ms"
                f" at SM {tgt['sm_clock_mhz_mean'].median():.0f} MHz)")
    other = ""

    def listed(df: pd.DataFrame) -> float:  # (the share of rows another process was listed in)
        return float((df["other_processes"] > 0).mean()) if len(df) else 0.0
    # (the side the other process was on: the target's, or the reference's where the target
    # is faster because it left)
    there = ref if "other_processes" in ref and listed(ref) > listed(tgt) else tgt
    if "other_processes" in there and (there["other_processes"] > 0).any():
        pid = there["other_pid"].mode()
        their_sm = there["other_sm_pct"].median()
        most = int(there["other_processes"].max())
        if len(pid):
            other = (f" (the GPU's process list: pid {int(pid.iloc[0])}" + (
                f", about {their_sm:.0f}% SM" if pd.notna(their_sm) else "") +
                f"; {most} other process(es) at most)")
        else:  # merge._others: PIDs from another namespace
            other = (f" (the GPU's process list: up to {most} process(es) besides this one; their "
                     f"PIDs are from another PID namespace (a container), so they cannot be "
                     f"named)")
    elif "util_excess_pct" in tgt and tgt["gpu_util_pct_start"].notna().any():
        other = (f" (GPU {tgt['gpu_util_pct_start'].median():.0f}% busy by NVML while this "
                 f"program's own work kept it {tgt['own_duty_pct'].median():.0f}% busy; before: "
                 f"{ref['gpu_util_pct_start'].median():.0f}% and "
                 f"{ref['own_duty_pct'].median():.0f}%)")
    cpu = ""
    if "host_wait_ms" in tgt and tgt["host_wait_ms"].notna().any():
        span = "kind" in tgt and len(tgt) and bool((tgt["kind"] == "span").all())
        cpu = (f" (the {'timed' if span else 'inference'} thread waited for a CPU"
               f"{'' if span else ' while launching'}, mean per "
               f"{'call' if span else 'iteration'}: "
               f"{ref['host_wait_ms'].mean():.3f} -> {tgt['host_wait_ms'].mean():.3f} ms)")
    queue = _moved(ref, tgt, "queue_other_ms", "from the call to the GPU starting the work, "
                   "while this program's stream was idle, mean")
    lock = _moved(ref, tgt, "host_offcpu_ms", "the timed thread off the CPU and not runnable, "
                  "mean per call")
    others = _means(ref, tgt, "others_run_ms")
    if lock and np.isfinite(others[1]):
        t0 = float(tgt["host_start_ns"].pipe(floats).min())
        t1 = float(tgt["host_enqueued_ns"].pipe(floats).max())
        who = busiest_thread(events, t0, t1)
        own = who is not None and str(who["name"]).startswith("gpuwatch")
        name = ("" if who is None else f"; busiest: thread {who['name']!r} (tid {who['tid']}"
                + (", gpuwatch's own" if own else "") + f"), {who['run_ms']:.0f} ms on a CPU in "
                f"the {who['over_s']:.1f} s around it")
        lock = lock[:-1] + (f", while the process's other threads ran {others[0]:.3f} -> "
                            f"{others[1]:.3f} ms{name})")
    cpu_clock = cpu_freq_text(*_means(ref, tgt, "cpu_freq_mhz"))  # (a slower CPU, where seen)
    return {"sm_clock": sm, "throttling": sm + thr, "mem_clock": mem,
            "host_launch": host + cpu_clock,
            "kernels_slower": busy,
            # (the queue is the other process's part only where it moved: its time slices
            # delay the start; a process that shares the SMs lengthens the work instead)
            "other_process": other + (queue if y == "wall_ms" and _grew(ref, tgt,
                                                                      "queue_other_ms")
                                      else "") + _switches(ref, tgt),
            "host_cpu": cpu + _moved(ref, tgt, "completion_wait_ms", "after the GPU finished, "
                                     "waiting for a CPU before the result, mean per call"),
            "gpu_queue": queue + _switches(ref, tgt),
            "own_backlog": _moved(ref, tgt, "queue_own_ms", "waiting behind this program's "
                                  "earlier GPU work, mean"),
            "completion": _moved(ref, tgt, "completion_ms", "from the GPU finishing to the "
                                 "host having the result, mean") + _oncpu(ref, tgt),
            "gc": _moved(ref, tgt, "gc_ms", "garbage collection inside, mean per call"),
            "interpreter_lock": lock + _after_gpu(ref, tgt),
            "host_blocked": _moved(ref, tgt, "host_offcpu_ms", "off the CPU and not runnable, "
                                   "mean per call") + _faults(ref, tgt, "majflt", "major"),
            "vm_steal": _moved(ref, tgt, "steal_ms", "steal time per CPU, mean per call"),
            "cpu_quota": _moved(ref, tgt, "quota_ms", "held off the CPUs by the cgroup's "
                                "quota, mean per call"),
            "host_work": _moved(ref, tgt, "host_run_ms", "on the CPU, mean per call")
            + cpu_clock}
