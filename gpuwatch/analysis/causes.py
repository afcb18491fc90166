"""The one table of causes: every cause a verdict can name, its code, its words, its evidence.

A verdict names causes by *factor* (what the attribution measured a contribution for) and gives
each a `cause_code` from a fixed vocabulary (what users filter on in JSON). Both, the sentence
fragment that names it, the short label of tables and the row of the table of causes in docs/verdicts.md
live here and nowhere else; `tests/test_causes.py` checks that table against
`docs_table()`.

`latency` says which latency a cause can move: "events" (the time between the region's two
CUDA events, the GPU's side) or "wall" (the time from the call to the result, the user's), or
"both". Causes of the wall latency outside the events (the GPU queue, completion) never explain
event time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAUSES", "Cause", "CAUSE_CODES", "FACTORS", "code_of", "docs_table", "text_of"]

THERMAL_MASK = 0x20 | 0x40  # ClockEventReason.SW_THERMAL_SLOWDOWN | HW_THERMAL_SLOWDOWN


@dataclass(frozen=True)
class Cause:
    factor: str  # the attribution's name for the contribution
    code: str  # the verdict's cause_code (a factor may map to two: see code_of)
    text: str  # how a sentence names it ("... explains 80%")
    label: str  # short, for tables
    means: str  # what it means, for the docs
    evidence: str  # what the verdict needs before it names it, for the docs
    latency: str  # "events", "wall" or "both": which latency it can move


CAUSES: tuple[Cause, ...] = (
    Cause("sm_clock", "idle_clock_downscale",
          "the SM clock (DVFS: no power/thermal reason active)", "SM clock (DVFS)",
          "the governor lowered the SM (or memory) clock with no power/thermal reason: DVFS "
          "after idle",
          "the clock over the slow regions (in-band where probed, else NVML's) below the "
          "reference's; the share at most `busy x (f_ref / f - 1)`", "both"),
    Cause("throttling", "power_cap", "power/thermal throttling of the SM clock",
          "power/thermal throttling",
          "the SM clock held down by the power limit (`thermal`: by temperature)",
          "as above, and NVML's clock-event reasons on the slower side with a power bit (SW "
          "power cap, HW slowdown, HW power brake); a thermal bit makes it `thermal`", "both"),
    Cause("mem_clock", "idle_clock_downscale", "the memory clock", "memory clock",
          "the memory clock was lowered (counted with `idle_clock_downscale`)",
          "the memory clock over the slow regions below the reference's, bounded as the SM "
          "clock", "both"),
    Cause("other_process", "other_process", "another process on the GPU",
          "another process on the GPU",
          "another process's work shared the GPU: its kernels ran beside ours, or our work "
          "waited for its time slice before it started",
          "NVML's process list: another process at work (its SM share above 0 where the "
          "driver gives per-process utilisation, else listed) by the reading before or after "
          "at least half the slow regions, and by both in under 20% of the reference's (or "
          "NVML's utilisation 30+ points above "
          "this program's own duty cycle); it takes what clocks and host leave. The other way "
          "too: where it was in the reference and went, it takes the target's speed-up. For the GPU "
          "queue part: the work started later while this program's stream was idle, and "
          "another process was at work in at least half the slow regions, or (with --kernels, "
          "where the GPU gives them) CUPTI's context-switch records show this program's "
          "context switched out in at least half the slow regions and in under 20% of the "
          "reference's", "both"),
    Cause("gpu_queue", "gpu_queue_wait",
          "the GPU starting the work late while this program's stream was idle",
          "GPU queue wait (stream idle)",
          "from the call to the GPU starting the work, while none of this program's timed "
          "work was on the GPU: another context's time slice (a process NVML does not list, "
          "e.g. in another container), untimed work of this program, or the GPU waking up",
          "the start event ran later after the call (host and GPU timestamps of every region) "
          "while the previous region had ended; no other process on NVML's list", "wall"),
    Cause("own_backlog", "own_gpu_backlog",
          "waiting behind this program's own earlier GPU work", "own GPU backlog",
          "the work queued behind this program's previous regions, still running when the "
          "call began (a pipeline that enqueues ahead)",
          "the previous region's end event ran after this region's call began", "wall"),
    Cause("completion", "completion_latency",
          "completion latency (the host learnt late that the GPU had finished)",
          "completion latency",
          "from the GPU finishing to the host having the result: a blocking synchronize's "
          "wake-up, or a host too busy to notice",
          "the time from the end event to the host's synchronize returning grew (gpuwatch "
          "engines and record; a region whose call waits for its result)", "wall"),
    Cause("cpu_quota", "cgroup_cpu_quota",
          "the cgroup's CPU quota (a container's CPU limit) throttling the program",
          "CPU quota (cgroup)",
          "the program's cgroup (a container's CPU limit) used up its CPU quota and was held "
          "off the CPUs until the next period",
          "the cgroup's throttled time (cpu.stat) over the regions grew; at most the growth of "
          "the timed thread's wait for a CPU, which counts it", "both"),
    Cause("host_cpu", "host_cpu_contention",
          "the host's CPUs being oversubscribed (the inference thread waited for a CPU)",
          "host CPUs oversubscribed",
          "the host's CPUs were oversubscribed: the timed thread waited in a run queue",
          "the timed thread's run-queue wait per region (schedstat) grew; at most the host "
          "delay it is part of, and at most that growth", "both"),
    Cause("gc", "garbage_collection", "garbage collection (Python's cyclic collector)",
          "garbage collection",
          "Python's cyclic garbage collector ran inside the region (it stops every Python "
          "thread of the process)",
          "`host_events` gc rows (gc.callbacks) overlapping the regions grew; at most that "
          "growth", "both"),
    Cause("interpreter_lock", "interpreter_lock",
          "another thread of this process holding the interpreter lock", "interpreter lock",
          "the timed thread was off the CPU and not runnable while another thread of the "
          "process ran: it waited for the interpreter lock (or a lock that thread held)",
          "per region, the timed thread's time off the CPU and not runnable grew, and the "
          "process's other threads ran at least half as long meanwhile (schedstat of every "
          "thread); the busiest one is named", "both"),
    Cause("host_blocked", "host_blocked",
          "the host thread blocked (off the CPU, not runnable: a lock, I/O or a sleep)",
          "host thread blocked",
          "the timed thread was off the CPU and not waiting for one: it waited for a lock, the "
          "interpreter lock, I/O or a sleep, and no other thread of the process was seen to run",
          "per region, wall time minus the timed thread's on-CPU time and run-queue wait "
          "(schedstat) grew", "both"),
    Cause("vm_steal", "vm_steal", "the hypervisor taking the CPUs (VM steal time)",
          "VM steal",
          "the virtual machine's CPUs were given to others by the hypervisor: the thread "
          "'ran' but did not",
          "the machine's steal time (/proc/stat) per CPU over the regions grew; at most the "
          "host's on-CPU time", "both"),
    Cause("host_launch", "host_launch_delay", "host launch delay", "host launch delay",
          "the host enqueued the work late, on the CPU: Python, the framework, a slow CPU",
          "host enqueue time per region grew (with `--kernels`: GPU idle inside the region), "
          "beyond what the host causes above measure", "both"),
    Cause("host_work", "host_work_slower",
          "the span's own work taking longer on the CPU", "span work on the CPU",
          "a span's (pre/post-processing's) own work took longer on the CPU: more work, or a "
          "slower CPU",
          "a span's host time grew beyond what the host causes above measure", "wall"),
    Cause("kernels_slower", "kernel_slowdown_same_clock",
          "kernels running slower at the same clocks (e.g. cold caches)",
          "kernels slower, same clock",
          "kernels ran longer at the same clocks (cold caches, other memory traffic)",
          "a kernel timeline (`--kernels`): busy time grew beyond what the clock explains",
          "both"),
    Cause("unexplained", "unexplained", "nothing gpuwatch measured", "not explained",
          "measured, but nothing gpuwatch records explains it; or no cause beyond doubt "
          "(`candidate_code` then names the likeliest)", "-", "both"),
)

FACTORS: tuple[str, ...] = tuple(c.factor for c in CAUSES)
_BY_FACTOR = {c.factor: c for c in CAUSES}
# The verdict's fixed vocabulary, in the table's order (thermal: throttling with a thermal bit)
CAUSE_CODES: tuple[str, ...] = tuple(dict.fromkeys(
    [c.code for c in CAUSES[:2]] + ["thermal"] + [c.code for c in CAUSES[2:]]))


def text_of(factor: str) -> str:
    """How a sentence names an attribution factor."""
    return _BY_FACTOR[factor].text


def code_of(factor: str | None, reasons: int = 0) -> str | None:
    """The cause_code of an attribution factor; throttling is `thermal` where a thermal
    clock-event reason was active on the slower side, else `power_cap`."""
    if factor is None or factor not in _BY_FACTOR:
        return None
    if factor == "throttling" and reasons & THERMAL_MASK:
        return "thermal"
    return _BY_FACTOR[factor].code


def docs_table() -> str:
    """The table of causes in docs/verdicts.md (checked against it by a test)."""
    rows = ["| `cause_code` | latency | what it means | evidence it needs |",
            "| --- | --- | --- | --- |"]
    seen = set()
    for c in CAUSES:
        if c.factor == "mem_clock":
            continue  # (counted as idle_clock_downscale: said in its row)
        code = "`power_cap` / `thermal`" if c.factor == "throttling" else f"`{c.code}`"
        if code in seen:
            continue
        seen.add(code)
        rows.append(f"| {code} | {c.latency} | {c.means} | {c.evidence} |")
    return "\n".join(rows)
