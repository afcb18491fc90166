"""Where a recording goes and who owns it: the output path's policy (never replace what
another process made), the `.partial` directory's lock, and publishing the final file."""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import TraceWriteError, UsageError
from .schema import TABLES


def partial_path(path: Path) -> Path:
    """Where a recording to `path` keeps its chunks until it is finished."""
    return path.with_name(path.name + ".partial")


def check_output(path: Path, overwrite: bool = False, check_partial: bool = True,
                 option: str = "session(out=...)",
                 force: str = "session(..., overwrite=True)") -> None:
    """Refuse, with one line saying what to do, an output gpuwatch must not write: a directory
    or any other non-regular file (a device such as /dev/null: the final rename would replace
    it), an existing trace unless `overwrite`, a place that cannot be written, or one where an
    unfinished recording is (see _claim_partial). `option` and `force` name, in the advice,
    the caller's own argument for the path and for replacing a file."""
    if len(path.name.encode()) + len(".partial") > 255:
        raise UsageError(f"output file name is too long ({len(path.name)} characters): the "
                         f"recording needs room for a '.partial' suffix; pick a shorter {option}")
    if path.is_dir():
        raise UsageError(f"output {path} is a directory; give a file name like run.parquet")
    if os.path.lexists(path):
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:  # a dangling link: it would be replaced, not followed
            regular = False
        if not regular:
            raise UsageError(f"output {path} exists and is not a regular file (a device, pipe, "
                             f"socket or broken link); give a trace file name like run.parquet")
        if not overwrite:
            raise UsageError(f"output {path} already exists; pick another {option}, or replace "
                             f"it with {force}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist; create it or pick another "
                         f"{option}")
    why = refuses_new_file(parent)
    if why is not None:
        raise UsageError(f"output directory {parent} cannot take a new file ({why}); "
                         f"pick another {option}")
    partial = partial_path(path)
    if check_partial and partial.exists():
        _refuse_partial(partial, path)


def refuses_new_file(folder: Path) -> str | None:
    """Why `folder` cannot take a new file (the error's text), or None where it can. A file is
    tried: access() says yes to root everywhere, /proc included."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return str(e.strerror or e)


def _refuse_partial(partial: Path, path: Path) -> None:
    """An unfinished recording to `path` is in `partial`: another process writing it now
    (its lock is held), or one that crashed. Never deleted here: say what to do."""
    owner = _lock_owner(partial)
    if owner is not None:
        raise UsageError(f"another gpuwatch process ({owner}) is recording to {path} now; "
                         f"pick another --out, or wait for it to finish")
    if not any(partial.glob("*.parquet")):  # it recorded nothing (it failed at its start)
        remove_partial(partial)
        if not partial.exists():
            return
    raise UsageError(f"{partial} holds an unfinished recording (a crash?), which gpuwatch will "
                     f"not delete: analyse it as it is (python -m gpuwatch.analyze {partial}), "
                     f"finish it into a trace (python -m gpuwatch.finish {partial}), or "
                     f"remove it, then record again")


LOCK_NAME = "lock"  # in .partial: locked (lockf) by the recording process, names it


def _lock_owner(partial: Path) -> str | None:
    """'pid N on HOST' if a live process holds `partial`'s lock, else None (no lock file, or
    a stale one: its process is gone, as the kernel drops a dead process's flock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: a lock cannot be tested; treat the directory as stale
        return None
    try:
        fd = os.open(partial / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1)
    except OSError:  # held by a live process
        try:
            who = os.pread(fd, 200, 0).decode(errors="replace").split()
        except OSError:
            who = []
        return f"pid {who[0]} on {who[1]}" if len(who) >= 2 else "another process"
    finally:
        os.close(fd)
    return None


def _claim_partial(partial: Path, path: Path) -> int | None:
    """Create `partial` and hold its lock for this recording (released by close()/abandon()).
    Returns the lock's file descriptor (None where flock does not exist)."""
    try:
        partial.mkdir()
    except FileExistsError:  # another recording started between the check and now
        _refuse_partial(partial, path)
    except OSError as e:
        raise UsageError(f"cannot create {partial} for the recording: {e.strerror}; pick "
                         f"another --out") from e
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(partial / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        # A POSIX record lock (lockf): held by this process alone, not by a child it forks (a
        # DataLoader worker must not keep the path locked after this process is gone), and
        # dropped by the kernel when the process dies.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
    except OSError as e:  # cannot happen unless another process raced us into the directory
        os.close(fd)
        raise UsageError(f"another process is recording to {path} now; pick another --out") from e
    try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError as e:  # a full disk or quota from the start: nothing to keep
        os.close(fd)
        remove_partial(partial)
        raise TraceWriteError(f"cannot write the trace to {partial}: {e.strerror or e}; free "
                              f"some space or pick another --out") from None
    return fd


# What a recording puts in its .partial besides its chunks (PREFIXnnnnnnn-TABLE.parquet):
# only these are ever removed from it; anything else there is someone else's and stays.
PARTIAL_FILES = ("meta.json", "meta.json.tmp", LOCK_NAME, "threads.json", "threads.json.tmp",
                 "sampler.ctl", "sampler.log")


_CHUNK_NAME = re.compile(r"[A-Za-z]+\d{7}-(%s)\.(parquet|tmp)" % "|".join(TABLES))


def remove_partial(partial: Path) -> list[str]:
    """Remove what gpuwatch wrote into `partial` (its chunks and PARTIAL_FILES), then the
    directory if that leaves it empty. Returns the names of what was left (not ours)."""
    try:
        entries = list(partial.iterdir())
    except OSError:
        return []
    left = []
    for f in entries:
        if _CHUNK_NAME.fullmatch(f.name) or f.name in PARTIAL_FILES:
            try:
                f.unlink()
            except IsADirectoryError:
                left.append(f.name)
            except OSError:
                pass
        else:
            left.append(f.name)
    try:
        partial.rmdir()
    except OSError:
        pass
    return sorted(left)


def _proc_start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat field 22); None
    if it is not running (a zombie included) or there is no /proc. With the pid it names one process for good: a
    pid the kernel hands out again belongs to a process that started later."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        # (field 2, the command, is in parentheses and may hold spaces or ')': split after it)
        fields = raw[raw.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):  # (field 3, the state: a zombie, killed and not yet
            return None  # reaped by its parent, runs no more and never will)
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def live_writer(meta: Mapping[str, Any]) -> str | None:
    """'pid N on HOST' if the process that wrote a .partial's metadata is still running on
    this host (its lock file may have been removed), else None."""
    w = meta.get("writer")
    if not isinstance(w, dict) or w.get("hostname") != socket.gethostname():
        return None
    pid, ticks = w.get("pid"), w.get("pid_start_ticks")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return None
    now = _proc_start_ticks(pid)
    if now is None or (isinstance(ticks, int) and ticks != now):
        return None
    return f"pid {pid} on {w['hostname']}"


Identity = tuple[int, int, int]  # (st_dev, st_ino, st_mtime_ns) of a file


def file_identity(path: Path) -> Identity | None:
    """Which file is at `path` (device, inode, change time), None where none is: a file
    renamed over it is another."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class _NotOurs(Exception):
    """(close(): the .partial's lock file is no longer the one this recording holds.)"""


class OutputTakenError(OSError):
    """The output path holds a file gpuwatch may not replace (put there after the start)."""


def publish(tmp: Path, dest: Path, may_replace: Identity | None | bool = None) -> None:
    """Put the finished file `tmp` at `dest` atomically, never over a file we may not replace:
    `may_replace` is the identity of the file that was there when we began (the one
    --force/overwrite allowed), True for any, None for none. A file found there otherwise
    raises OutputTakenError and `tmp` is left for the caller to remove."""
    if may_replace is True:
        os.replace(tmp, dest)
        return
    current = file_identity(dest)
    if current is not None or os.path.lexists(dest):
        if may_replace is None or current != may_replace:
            raise OutputTakenError(f"{dest} was created or changed by another process while "
                                   f"gpuwatch was writing it")
        os.replace(tmp, dest)  # (the very file --force allowed)
        return
    try:  # a hard link fails if dest appeared since: no check-then-replace race
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputTakenError(f"{dest} was created by another process while gpuwatch was "
                               f"writing it") from None
    except OSError:  # a file system without hard links: the check above must do
        if os.path.lexists(dest):
            raise OutputTakenError(f"{dest} was created by another process while gpuwatch "
                                   f"was writing it") from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


def _release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # (closing the descriptor drops the flock)
        except OSError:
            pass


def default_out(prefix: str = "gpuwatch") -> Path:
    """A fresh trace name in the working directory, e.g. gpuwatch-20261124-101500.parquet;
    where that is taken (two runs in one second), with this process's id added."""
    p = Path(f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.parquet")
    if os.path.lexists(p) or os.path.lexists(partial_path(p)):
        p = p.with_name(f"{p.stem}-{os.getpid()}.parquet")
    return p
