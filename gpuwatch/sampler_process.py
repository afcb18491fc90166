"""The telemetry sampler in a process of its own: `python -m gpuwatch.sampler_process`.

The recording process starts it with `subprocess` and `sys.executable`, an explicit entry
point: nothing of the user's program is imported or run again there, whatever the program is
(a script without a `__main__` guard, `python -c`, a notebook kernel, a program that uses
multiprocessing with fork, spawn or forkserver). It never competes with the inference loop for
the GIL.

Protocol (parent <-> child):
- stdin: one JSON line of configuration, then "stop" (or EOF: the parent is gone).
- stdout: JSON lines: {"ready": pid} or {"error": text} at start, {"stats": {...}} at the end.
  Anything else the child prints goes to stderr, which is a log file in the trace's
  `.partial` directory (its last line names the failure if the child dies).
- a small shared file, `sampler.ctl` in `.partial`, mapped by both: byte 0 is the pause flag
  (parent writes), bytes 8..16 the latest SM clock as a float64 (child writes, for live
  displays). No system call on either side's hot path.

The child writes its samples as chunks into the trace's `.partial` directory (prefix "p"), so
they survive either process dying, and stops by itself if the recording process dies.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Sequence

from .clock import HostClock
from .helper_process import SamplerStartError, helper_command

__all__ = ["ProcessSampler", "SamplerStartError", "helper_command"]

CTL_NAME, LOG_NAME = "sampler.ctl", "sampler.log"
_CTL_BYTES = 16
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class ProcessSampler:
    """Runs a `sampler.Sampler` in a child process. `factory` ("module:function") is called
    there with `factory_args` (JSON values) to open the telemetry (NVML handles do not cross
    processes)."""

    def __init__(self, factory: str, factory_args: Sequence[Any], clock: HostClock,
                 partial_dir: Path, hz: float, costly_hz: float = 100.0,
                 start_timeout_s: float = START_TIMEOUT_S,
                 host_thread: tuple[int, int] | None = None):
        """`host_thread`: (pid, native thread id) whose run-queue wait to record, with its
        process's other threads (hoststat.HostStat; their Python names from the file
        hostevents.THREAD_NAMES_FILE in `partial_dir`, which the recording process keeps)."""
        self._config = {"factory": factory, "args": list(factory_args),
                        "anchor": [clock.anchor_perf_ns, clock.anchor_epoch_ns],
                        "partial_dir": str(partial_dir), "hz": hz, "costly_hz": costly_hz,
                        "parent_pid": os.getpid(),
                        "host_thread": list(host_thread) if host_thread else None}
        self._dir = Path(partial_dir)
        self.hz, self._timeout = hz, start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: mmap.mmap | None = None
        self._summary: dict[str, Any] | None = None
        self.pid: int | None = None

    def start(self) -> None:
        """Start the child and wait until it samples. Raises SamplerStartError, leaving no
        child behind, if it cannot."""
        ctl_path = self._dir / CTL_NAME
        ctl_path.write_bytes(b"\0" * _CTL_BYTES)
        with open(ctl_path, "r+b") as f:
            self._ctl = mmap.mmap(f.fileno(), _CTL_BYTES)
        self._ctl[8:16] = struct.pack("d", float("nan"))
        argv, env = helper_command("gpuwatch.sampler_process")
        log = open(self._dir / LOG_NAME, "ab")
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, env=env, close_fds=True)
        except OSError as e:
            raise SamplerStartError(f"could not start {argv[0]}: {e}") from e
        finally:
            log.close()
        self.pid = self._proc.pid
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(self._config).encode() + b"\n")
            self._proc.stdin.flush()
            msg = self._read(self._timeout)
        except (OSError, ValueError) as e:
            msg = {"error": f"{type(e).__name__}: {e}"}
        if msg is None or "ready" not in msg:
            why = ("it did not answer within %gs" % self._timeout if msg is None
                   else msg.get("error", msg))
            self._kill()
            raise SamplerStartError(f"the sampler process failed to start: {why}"
                                    + self._log_tail())

    def pause(self) -> None:
        if self._ctl is not None:
            self._ctl[0] = 1

    def resume(self) -> None:
        if self._ctl is not None:
            self._ctl[0] = 0

    @property
    def last_sm_clock_mhz(self) -> float | None:
        if self._ctl is None:
            return None
        v = struct.unpack("d", self._ctl[8:16])[0]
        return None if v != v else v

    def stop(self) -> None:
        """Ask the child to finish its chunks and report; raises RuntimeError if it failed."""
        proc = self._proc
        if proc is None:
            return
        msg: dict[str, Any] | None = None
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
            msg = self._read(STOP_TIMEOUT_S)
        except (OSError, ValueError) as e:
            msg = {"error": f"{type(e).__name__}: {e}"}
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close_ctl()
        if msg is None or "stats" not in msg:
            why = "no answer" if msg is None else msg.get("error", msg)
            raise RuntimeError(f"the sampler process failed: {why}{self._log_tail()}")
        self._summary = msg["stats"]

    def summary(self) -> dict[str, Any]:
        return {**(self._summary or {}), "mode": "process", "pid": self.pid}

    def _read(self, timeout_s: float) -> dict[str, Any] | None:
        """One JSON line from the child, or None on timeout / EOF."""
        out = self._proc.stdout if self._proc is not None else None
        if out is None:
            return None
        ready, _, _ = select.select([out], [], [], timeout_s)
        if not ready:
            return None
        line = out.readline()
        if not line:
            return None
        try:
            got = json.loads(line)
        except ValueError:
            return {"error": f"unexpected output {line[:200]!r}"}
        return got if isinstance(got, dict) else {"error": f"unexpected output {got!r}"}

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_ctl()

    def _close_ctl(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def _log_tail(self) -> str:
        try:
            lines = (self._dir / LOG_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f" (its log: {lines[-1].strip()})" if lines else ""


# -- the child ---------------------------------------------------------------------------------

def _send(out: IO[str], msg: dict[str, Any]) -> None:
    out.write(json.dumps(msg, default=str) + "\n")
    out.flush()


def main() -> None:
    """The child's entry point (`python -m gpuwatch.sampler_process`)."""
    # Ctrl-C and SIGTERM go to the whole process group: the parent decides when sampling stops
    # (it finalises the trace first, then says "stop"). A dead parent is noticed by EOF on
    # stdin or a new parent pid.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    proto = os.fdopen(os.dup(1), "w")  # the protocol channel...
    os.dup2(2, 1)  # ...and anything else printed goes to the log
    try:
        cfg = json.loads(sys.stdin.readline())
        sampler, writer, ctl = _open(cfg)
    except BaseException as e:  # noqa: BLE001 - whatever it is, the parent must hear it
        _send(proto, {"error": f"{type(e).__name__}: {e}"})
        return
    _send(proto, {"ready": os.getpid()})
    stop = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:  # "stop", or EOF when the parent closes or dies
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=read_stdin, name="gpuwatch-sampler-stdin", daemon=True).start()
    parent = cfg["parent_pid"]
    try:
        while not stop.wait(0.1):
            clk = sampler.last_sm_clock_mhz
            ctl[8:16] = struct.pack("d", float("nan") if clk is None else float(clk))
            if os.getppid() != parent:  # the recording process died: keep what we have
                break
        sampler.stop()
        writer.close()
        _send(proto, {"stats": sampler.summary()})
    except BaseException as e:  # noqa: BLE001
        _send(proto, {"error": f"{type(e).__name__}: {e}"})


class _NoPandas(importlib.abc.MetaPathFinder):
    """Refuses pandas to this process (see _open)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("the sampler process does not use pandas")
        return None


def _open(cfg: dict[str, Any]) -> tuple[Any, Any, mmap.mmap]:
    # This process never needs pandas, but pyarrow imports it (where installed) on the first
    # pa.array(): ~40 MB and ~0.3 s more in a process that only writes sample chunks. Its
    # import fails here, and pyarrow then does without pandas (its shim catches ImportError).
    sys.meta_path.insert(0, _NoPandas())
    from .sampler import Sampler
    from .trace import ChunkWriter, use_system_allocator

    use_system_allocator()  # this process only writes chunks (see trace.writer)
    mod, _, fn = cfg["factory"].partition(":")
    telemetry = getattr(importlib.import_module(mod), fn)(*cfg["args"])
    clock = HostClock(anchor=tuple(cfg["anchor"]))  # the parent's anchor: one time base
    partial = Path(cfg["partial_dir"])
    with open(partial / CTL_NAME, "r+b") as f:
        ctl = mmap.mmap(f.fileno(), _CTL_BYTES)
    writer = ChunkWriter(partial, prefix="p")
    stat = None
    if cfg.get("host_thread"):  # the recording thread's run-queue wait, and more (hoststat)
        from .hostevents import THREAD_NAMES_FILE, ThreadNames
        from .hoststat import HostStat

        pid, tid = cfg["host_thread"]
        stat = HostStat(int(pid), int(tid), slow_every=max(1, round(cfg["hz"])),
                        mid_every=max(1, round(cfg["hz"] / 100)),  # ~10 ms
                        names=ThreadNames(partial / THREAD_NAMES_FILE).read)
    sampler = Sampler(telemetry, clock, writer.add, hz=cfg["hz"], costly_hz=cfg["costly_hz"],
                      is_paused=lambda: ctl[0] == 1, host=stat.read if stat else None,
                      own_pid=cfg["parent_pid"],
                      host_events=stat.take_events if stat else None,
                      host_final=stat.final_events if stat else None)
    sampler.start()
    return sampler, writer, ctl


if __name__ == "__main__":
    main()
