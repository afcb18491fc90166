"""The host side of a recording: how long the recording thread waited for a CPU, and what
else took the host's time.

Linux keeps, per thread, the time it ran and the time it waited runnable in a run queue
(`/proc/<pid>/task/<tid>/schedstat`: ns on CPU, ns waiting, timeslices). The sampler reads the
recording thread's at every poll, from its own process (a read costs ~16 us on the H100
machine: never on the timed path), so analysis can tell a host whose CPUs are oversubscribed
(the inference thread waits to run) from one that is merely slow to launch.

About every 10 ms (schema v4) it also reads the CPU time of the recording process's other
threads (a data loader, a tokenizer, gpuwatch's own writer: they compete for the GIL and the
cores), the machine's steal time, and the recording thread's page faults and context
switches; about once a second, which other threads ran (`host_events` rows of kind `thread`).
With them, the clock of the CPU the recording thread last ran on, where the machine exposes
cpufreq (`host_cpu_freq_mhz`; many virtual machines do not: NA there).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

# what they fill: fields.HOST_FIELDS
__all__ = ["CpuFreq", "HostStat", "OtherThreads", "ThreadSchedStat", "cpu_max_mhz"]

# USER_HZ: the unit of /proc/stat's CPU times (100 on every Linux we know)
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Above this many other threads, a thread's schedstat is opened at each read instead of held
# open (the sampler process's descriptor limit is often 1024).
_MAX_HELD_FDS = 512
# Where Linux exposes each CPU's clock: <root>/cpuN/cpufreq/scaling_cur_freq (kHz). Read when a
# CpuFreq or HostStat is made (tests point it at a directory of their own). Many virtual
# machines have no cpufreq driver: the project's CPU test machine has no cpuN/cpufreq.
CPUFREQ_ROOT = "/sys/devices/system/cpu"


class _ProcFile:
    """A /proc file held open and re-read with pread (one system call, no open/close: a
    status file costs ~14 us so, ~54 us opened and parsed line by line); None where absent."""

    def __init__(self, path: str):
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def read(self, size: int) -> bytes | None:
        if self._fd is None:
            return None
        try:
            return os.pread(self._fd, size, 0)
        except OSError:  # the thread is gone
            self.close()
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ThreadSchedStat:
    """Reads one thread's schedstat; `read()` gives {} where it cannot (not Linux, no such
    thread any more, a kernel without scheduler statistics)."""

    def __init__(self, pid: int, tid: int):
        self.path = f"/proc/{pid}/task/{tid}/schedstat"
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> dict[str, Any]:
        if self._fd is None:
            return {}
        try:
            run, wait, _ = os.pread(self._fd, 128, 0).split()[:3]
        except (OSError, ValueError):  # the thread is gone
            self.close()
            return {}
        return {"host_run_ns": int(run), "host_wait_ns": int(wait)}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _nonvoluntary_switches(path: str) -> int | None:
    """A thread's cumulative involuntary context switches (/proc/<pid>/task/<tid>/status: the
    scheduler took the CPU away while it could still run)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ctxt_switches(status: bytes) -> tuple[int | None, int | None]:
    """(voluntary, involuntary) cumulative context switches from a thread's status file."""
    vol = nonvol = None
    for line in status.splitlines():
        if line.startswith(b"voluntary_ctxt_switches:"):
            vol = _int(line.split()[1:2])
        elif line.startswith(b"nonvoluntary_ctxt_switches:"):
            nonvol = _int(line.split()[1:2])
    return vol, nonvol


def _int(parts: list[bytes]) -> int | None:
    try:
        return int(parts[0])
    except (ValueError, IndexError):
        return None


def _page_faults(stat: bytes) -> tuple[int | None, int | None]:
    """(minor, major) cumulative page faults from a thread's stat file: fields 10 and 12, counted
    after the command name, which is in parentheses and may hold spaces and ')' itself (so the
    split is after the last ')')."""
    fields = stat[stat.rfind(b")") + 1:].split()  # fields[0] is field 3 (state)
    return _int(fields[7:8]), _int(fields[9:10])


def _processor(stat: bytes) -> int | None:
    """The CPU a thread last ran on, from its stat file: field 39 (`processor`), counted after
    the last ')' as _page_faults counts (the command name may hold spaces and ')')."""
    return _int(stat[stat.rfind(b")") + 1:].split()[36:37])  # (fields[0] is field 3)


def _khz_to_mhz(raw: bytes | None) -> float | None:
    """A cpufreq file's kHz as MHz; None where empty, unparsable or not positive (an unknown
    clock is NA, never 0)."""
    khz = _int(raw.split()[:1]) if raw else None
    return khz / 1000.0 if khz is not None and khz > 0 else None


def cpu_max_mhz(root: str | None = None) -> float | None:
    """The machine's nominal maximum CPU clock (MHz): cpu0's cpufreq cpuinfo_max_freq; None
    where cpufreq is not exposed (for the metadata's host.cpu_max_mhz)."""
    try:
        with open(f"{CPUFREQ_ROOT if root is None else root}/cpu0/cpufreq/cpuinfo_max_freq",
                  "rb") as f:
            return _khz_to_mhz(f.read(64))
    except OSError:
        return None


class CpuFreq:
    """The current clock of a given CPU (cpufreq's scaling_cur_freq, kHz, as MHz): each CPU's
    file opened at its first read and held open (a read is one pread). Where the first file
    tried cannot be opened (no cpufreq on this machine, as on many virtual machines), `mhz()`
    gives None from then on without touching the file system: `exposed` is False. A CPU whose
    file is absent where others' opened reads None, at the cost of a dict lookup.

    Cost, 10k reads timed (Python 3.11): on the project's CPU test machine (a 2-core VM with
    no cpufreq) `mhz()` costs 0.08 us once the first open has failed (that open: ~6 us,
    once), and HostStat's whole addition to its ~10 ms reading 0.06 us (a flag test); the
    H100 host (a VM too, kernel 6.18) has no cpufreq either: 0.07 us there. Where cpufreq is
    exposed it adds the `processor` parse of the stat file HostStat reads anyway (1.4 us here)
    and one pread of the held file: 1.6 us through `mhz()` with a plain file standing in for
    scaling_cur_freq, 1.1 us for a plain sysfs attribute's pread; the cpufreq driver's own work
    behind scaling_cur_freq could not be timed on a machine here. All in the sampler process,
    never on the timed path."""

    def __init__(self, root: str | None = None):
        self._root = CPUFREQ_ROOT if root is None else root
        self._files: dict[int, _ProcFile] = {}
        self.exposed: bool | None = None  # None: nothing tried yet

    def mhz(self, cpu: int) -> float | None:
        if self.exposed is False:
            return None
        f = self._files.get(cpu)
        if f is None:
            if len(self._files) >= _MAX_HELD_FDS or cpu < 0:
                return None
            f = self._files[cpu] = _ProcFile(f"{self._root}/cpu{cpu}/cpufreq/scaling_cur_freq")
            if self.exposed is None:
                self.exposed = f.held
                if not f.held:  # (no cpufreq here: never tried again)
                    self._files.clear()
                    return None
        return _khz_to_mhz(f.read(32))

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _steal_ns(stat: bytes) -> int | None:
    """The machine's cumulative steal time (ns) from /proc/stat's `cpu ` line: its 8th value,
    in USER_HZ ticks (time a virtual machine's CPUs were runnable but the hypervisor ran
    something else)."""
    line = stat.split(b"\n", 1)[0].split()
    if not line or line[0] != b"cpu":
        return None
    ticks = _int(line[8:9])
    return None if ticks is None else ticks * 1_000_000_000 // _CLK_TCK


def _psi_some_total_us(path: str = "/proc/pressure/cpu") -> int | None:
    """Cumulative time (us) some runnable task waited for a CPU, machine-wide (PSI)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_cpu_stat(pid: int | str = "self") -> str | None:
    """The cpu.stat file of the cgroup that limits process `pid`'s CPU (cgroup v2, or v1's cpu
    controller); None where there is none."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            entries = [line.strip().split(":", 2) for line in f]
    except OSError:
        return None
    for hid, ctrls, path in sorted(entries, key=lambda e: e[0] == "0"):  # (v1's cpu first)
        base = ("/sys/fs/cgroup" + path) if hid == "0" else (
            f"/sys/fs/cgroup/{ctrls}{path}" if "cpu" in ctrls.split(",") else None)
        if base is not None and os.path.exists(base.rstrip("/") + "/cpu.stat"):
            return base.rstrip("/") + "/cpu.stat"
    return None


def _throttled_from(stat: bytes | None) -> int | None:
    """Cumulative time (us) a cgroup was throttled by its CPU quota, from its cpu.stat's text
    (v2 `throttled_usec`; v1 `throttled_time`, ns)."""
    if not stat:
        return None
    for line in stat.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"throttled_usec":
            return _int([value])
        if key == b"throttled_time":
            ns = _int([value])
            return None if ns is None else ns // 1000
    return None


class OtherThreads:
    """The CPU time of a process's threads but one (the recording thread), from each thread's
    schedstat (field 1, ns on a CPU).

    `scan()` gives their sum, kept monotonic: a thread that exited keeps its last value in it.
    Each thread's file is held open (a read is one pread; an exited thread's read fails, so a
    thread id the kernel reuses is seen as a new thread); the task directory is listed at each
    scan to find new threads. Measured here (2 cores, Python 3.11): a scan of 30 threads costs
    ~70 us, ~18 us of it the listing; at one scan per 10 ms that is ~0.7% of the sampler
    process's core, none of the recording process's.
    """

    def __init__(self, pid: int, exclude_tid: int):
        self._dir = f"/proc/{pid}/task"
        self._exclude = exclude_tid
        self._fds: dict[int, int] = {}  # tid -> its schedstat's descriptor (-1: not held)
        self.run_ns: dict[int, int] = {}  # live threads: their latest run time
        self._gone_ns = 0  # the last run time of every thread that exited
        self._gone: dict[int, int] = {}  # exited since the last thread_rows(): tid -> run ns
        self._reported: dict[int, int] = {}  # tid -> run ns in its latest thread row
        self._reported_name: dict[int, str | None] = {}  # tid -> the name in that row
        self._names: dict[int, str] = {}  # tid -> its name (Python's, else the kernel's comm)
        self._unnamed: set[int] = set()  # live threads with no Python name seen yet
        self.found_new = False  # a scan found a thread not seen before (see learn_names)

    def scan(self) -> int | None:
        """The other threads' total CPU time (ns), or None where the task list is unreadable."""
        for tid, fd in list(self._fds.items()):  # first the known ones: an exited thread's
            run = self._read(tid, fd)  # read fails, so a reused id is found new below
            if run is None:
                self._drop(tid)
            else:
                self.run_ns[tid] = run
        try:
            names = os.listdir(self._dir)
        except OSError:  # not Linux, or the process is gone
            return None
        for name in names:
            tid = int(name)
            if tid == self._exclude or tid in self._fds:
                continue
            fd = -1
            if len(self._fds) < _MAX_HELD_FDS:
                try:
                    fd = os.open(f"{self._dir}/{tid}/schedstat", os.O_RDONLY)
                except OSError:  # it exited meanwhile (or no scheduler statistics)
                    continue
            self._fds[tid] = fd
            self.found_new = True
            run = self._read(tid, fd)
            if run is None:
                self._drop(tid)
            else:
                self.run_ns[tid] = run
        return self._gone_ns + sum(self.run_ns.values())

    def _read(self, tid: int, fd: int) -> int | None:
        try:
            if fd >= 0:
                raw = os.pread(fd, 128, 0)
            else:
                with open(f"{self._dir}/{tid}/schedstat", "rb") as f:
                    raw = f.read(128)
            return int(raw.split(maxsplit=1)[0])
        except (OSError, ValueError, IndexError):
            return None

    def _drop(self, tid: int) -> None:
        fd = self._fds.pop(tid)
        if fd >= 0:
            os.close(fd)
        self._unnamed.discard(tid)
        last = self.run_ns.pop(tid, None)
        if last is not None:
            self._gone_ns += last
            self._gone[tid] = last

    @property
    def names_wanted(self) -> bool:
        """A thread is new, or has no Python name yet: call learn_names()."""
        return self.found_new or bool(self._unnamed)

    def learn_names(self, python_names: Mapping[int, str]) -> None:
        """Remember the names of the threads seen now (Python's, else the kernel's comm): a
        thread that ends before its first row keeps its name. A thread seen before Python
        listed it (a scan between its start and its entry in `threading`), or before its
        name was published to the sampler process, is asked again at each call until it has
        its Python name (native threads never do: one dict lookup each)."""
        tids = self.run_ns if self.found_new else list(self._unnamed)
        self.found_new = False
        for tid in tids:
            name = python_names.get(tid)
            if name is not None:
                self._names[tid] = name
                self._unnamed.discard(tid)
            elif tid not in self._names:
                comm = self._comm(tid)  # (~10 us, once a thread)
                if comm is not None:
                    self._names[tid] = comm
                self._unnamed.add(tid)

    def thread_rows(self, python_names: Mapping[int, str]) -> list[dict[str, Any]]:
        """`host_events` rows of kind `thread` (no gpu, t_ns: the sampler adds them): one per
        thread whose run time changed since its previous row (first seen: once it has run),
        exited ones with their last value, and one (same run time) for a thread whose Python
        name became known after its latest row carried the kernel's. `name`: the thread's
        Python name in `python_names` (native id -> name) where it is there, else the kernel's
        comm (Python before 3.14 does not name the OS thread: "python")."""
        rows = []
        for tid, run in self._gone.items():  # (before the live ones: a reused id comes after)
            name = python_names.get(tid) or self._names.get(tid)
            renamed = tid in self._reported_name and self._reported_name.pop(tid) != name
            if self._reported.pop(tid, 0) != run or renamed:
                rows.append({"kind": "thread", "tid": tid, "run_ns": run, "name": name})
            self._names.pop(tid, None)
        self._gone.clear()
        for tid, run in self.run_ns.items():
            name = python_names.get(tid)
            if self._reported.get(tid, 0) == run and (
                    name is None or self._reported_name.get(tid, name) == name):
                continue  # (no new time, and no Python name its row lacked)
            if name is None:
                name = self._names.get(tid) or self._comm(tid)
            if name is not None:
                self._names[tid] = name
            self._reported[tid], self._reported_name[tid] = run, name
            rows.append({"kind": "thread", "tid": tid, "run_ns": run, "name": name})
        return rows

    def _comm(self, tid: int) -> str | None:
        try:
            with open(f"{self._dir}/{tid}/comm", "rb") as f:
                return f.read().decode(errors="replace").rstrip("\n") or None
        except OSError:
            return None

    def close(self) -> None:
        for tid in list(self._fds):
            fd = self._fds.pop(tid)
            if fd >= 0:
                os.close(fd)


class HostStat:
    """The sampler's host readings, each only where available:
    - every call: the recording thread's schedstat (host_run_ns, host_wait_ns);
    - every `mid_every` calls (about every 10 ms): the other threads' CPU time, the machine's
      steal time, the recording thread's page faults and context switches (each a pread of a
      held-open file: ~8-14 us, ~100 us all together with 30 threads, in the sampler process),
      the recording process's cgroup's CPU-quota throttling, and the clock of the CPU the
      recording thread last ran on (its stat file's `processor`, that CPU's cpufreq
      scaling_cur_freq; not where cpufreq is not exposed: `cpufreq_root`, CPUFREQ_ROOT by
      default);
    - every `slow_every` calls (about once a second): the machine's CPU pressure (PSI), the
      1-minute load, and `thread` rows for `take_events()`.
    `names`: the recording process's Python thread names (native id -> name) for those rows."""

    def __init__(self, pid: int, tid: int, slow_every: int = 1000, mid_every: int = 10,
                 names: Callable[[], Mapping[int, str]] | None = None,
                 cpufreq_root: str | None = None):
        self.thread = ThreadSchedStat(pid, tid)
        self._status = _ProcFile(f"/proc/{pid}/task/{tid}/status")
        self._stat = _ProcFile(f"/proc/{pid}/task/{tid}/stat")
        self._cpu = _ProcFile("/proc/stat")
        self._freq = CpuFreq(cpufreq_root)
        # (other threads only where the recording thread's schedstat reads: else 0 would say
        # "nothing else ran" where the truth is unknown)
        self._others = OtherThreads(pid, tid) if self.thread._fd is not None else None
        self._names = names
        self._pid = pid
        # the recording process's cgroup (it may move: found again about once a second)
        self._cgroup_stat: str | None = None
        self._cgroup_file: _ProcFile | None = None
        self._events: list[dict[str, Any]] = []
        self._slow_every, self._mid_every, self._n = max(1, slow_every), max(1, mid_every), 0

    def read(self) -> dict[str, Any]:
        out = self.thread.read()
        slow = self._n % self._slow_every == 0
        if slow or self._n % self._mid_every == 0:
            self._read_mid(out)
        if slow:
            psi = _psi_some_total_us()
            if psi is not None:
                out["host_cpu_pressure_us"] = psi
            try:
                out["host_load1_tasks"] = os.getloadavg()[0]
            except OSError:
                pass
            if self._others is not None:
                self._events.extend(self._others.thread_rows(self._thread_names()))
        self._n += 1
        return out

    def _read_mid(self, out: dict[str, Any]) -> None:
        if self._others is not None:
            others = self._others.scan()
            if others is not None:
                out["host_others_run_ns"] = others
            if self._others.names_wanted:  # (names while they live: a dict, or a file's stat)
                self._others.learn_names(self._thread_names())
        # The recording process's cgroup is found again every 10th time (about every 100 ms:
        # a process moved between cgroups is followed; ~40 us), its cpu.stat read every time
        # through a held-open file (~10 us).
        if self._n % (10 * self._mid_every) == 0:
            path = _cgroup_cpu_stat(self._pid)
            if path != self._cgroup_stat or self._cgroup_file is None:
                if self._cgroup_file is not None:
                    self._cgroup_file.close()
                self._cgroup_stat = path
                self._cgroup_file = None if path is None else _ProcFile(path)
        thr = _throttled_from(self._cgroup_file.read(1024)) if self._cgroup_file else None
        if thr is not None:
            out["host_cpu_throttled_us"] = thr
        cpu = self._cpu.read(512)
        steal = _steal_ns(cpu) if cpu else None
        if steal is not None:
            out["host_steal_ns"] = steal
        stat = self._stat.read(1024)
        if stat:
            minflt, majflt = _page_faults(stat)
            if minflt is not None and majflt is not None:
                out["host_minflt"], out["host_majflt"] = minflt, majflt
            if self._freq.exposed is not False:
                # The CPU it last ran on, and that CPU's clock now (as the cpufreq driver
                # reports it; the thread may have moved since, or be asleep)
                ran_on = _processor(stat)
                mhz = self._freq.mhz(ran_on) if ran_on is not None else None
                if mhz is not None:
                    out["host_cpu_freq_mhz"] = mhz
        status = self._status.read(8192)
        if status:
            vol, nonvol = _ctxt_switches(status)
            if vol is not None:
                out["host_voluntary_switches"] = vol
            if nonvol is not None:
                out["host_involuntary_switches"] = nonvol

    def final_events(self) -> list[dict[str, Any]]:
        """At the end of the recording: what take_events() has, and `thread` rows for the
        threads that ran since the last ones (so the last second is not lost)."""
        if self._others is not None and self._others.scan() is not None:
            self._events.extend(self._others.thread_rows(self._thread_names()))
        return self.take_events()

    def _thread_names(self) -> Mapping[int, str]:
        try:
            return self._names() if self._names is not None else {}
        except Exception:  # (names are a nicety: the rows come without them)
            return {}

    def take_events(self) -> list[dict[str, Any]]:
        """The `host_events` rows made since the last call (kind `thread`; no gpu, t_ns)."""
        rows, self._events = self._events, []
        return rows

    def close(self) -> None:
        self.thread.close()
        for f in (self._status, self._stat, self._cpu, self._cgroup_file):
            if f is not None:
                f.close()
        self._freq.close()
        if self._others is not None:
            self._others.close()
