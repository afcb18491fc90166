"""The `finish` command: turn an unfinished recording (`OUT.partial/`, left by a crash, a
kill -9 or a full disk) into a trace file, with the same care as `record`: it never writes
inside the directory it finishes, never replaces a file it was not told to, and removes only
what gpuwatch wrote there."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import Terminated, TraceWriteError, UsageError
from ..trace import (LOCK_NAME, OutputTakenError, _lock_owner, _release, check_output,
                     claim_for_finish, finish_partial, live_writer, read_partial_meta)


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False


class FinishCommand:
    name = "finish"
    description = ("Write the trace file of an unfinished recording (a .partial directory left "
                   "by a crash or a full disk); the .partial is removed once the trace is "
                   "written.")

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("partial", metavar="OUT.partial", help="the unfinished recording")
        p.add_argument("out", nargs="?", metavar="OUT",
                       help="trace file to write (default: the name without .partial)")
        p.add_argument("-f", "--force", action="store_true", help="replace OUT if it exists")
        p.add_argument("--json", action="store_true",
                       help="print what was done as one JSON object (trace, rows, "
                            "skipped_chunks, left_in_partial) instead of a sentence")

    def run(self, args: argparse.Namespace) -> int:
        partial = Path(args.partial)
        if not partial.is_dir() or not (partial / "meta.json").is_file():
            raise UsageError(f"{partial} is not an unfinished gpuwatch recording (a directory "
                             f"with meta.json and chunk files)")
        meta = read_partial_meta(partial)
        owner = _lock_owner(partial) if (partial / LOCK_NAME).exists() else None
        if owner is not None:
            raise UsageError(f"{partial} is being recorded or finished by {owner} now; let "
                             f"it finish")
        owner = live_writer(meta)  # (its lock file removed: the process that wrote it lives)
        if owner is not None:
            raise UsageError(f"{partial} is still being recorded by {owner}; let it finish")
        default = partial.with_name(partial.name.removesuffix(".partial"))
        out = Path(args.out) if args.out else default
        if out == partial or out.name == partial.name or _inside(out, partial):
            raise UsageError(f"{out} is inside the recording being finished; give a trace file "
                             f"outside {partial} (default: {default})")
        check_output(out, args.force, check_partial=False, option="OUT", force="-f/--force")
        lock = claim_for_finish(partial)
        previous = _catch_termination()
        try:
            result = finish_partial(partial, out, overwrite=args.force, meta=meta)
        except OutputTakenError as e:
            raise UsageError(f"{e}; gpuwatch did not replace it, and {partial} is kept: finish "
                             f"it under another name") from None
        except (Terminated, KeyboardInterrupt):
            print(f"gpuwatch finish: stopped; {out} was not written and {partial} is kept as "
                  f"it was", file=sys.stderr)
            raise
        except OSError as e:
            raise TraceWriteError(f"cannot write {out}: {e.strerror or e}; {partial} is kept "
                                  f"as it was: finish it once there is room, or elsewhere"
                                  ) from None
        finally:
            _release(lock)
            _restore(previous)
        if result["skipped_chunks"]:
            print(f"gpuwatch finish: left out {len(result['skipped_chunks'])} unreadable chunk(s) "
                  f"(cut by the crash, or damaged since): "
                  f"{', '.join(result['skipped_chunks'][:5])}",
                  file=sys.stderr)
        if result["left_in_partial"]:
            print(f"gpuwatch finish: {partial} is kept: it holds files gpuwatch did not write "
                  f"({', '.join(result['left_in_partial'][:5])})", file=sys.stderr)
        if args.json:
            print(json.dumps({"trace": str(out), **result}))
        else:
            rows = result["rows"]
            n = sum(rows.values()) if isinstance(rows, dict) else rows
            print(f"gpuwatch finish: wrote {out} ({_rows_text(rows)}); analyse it with: "
                  f"python -m gpuwatch.analyze {shlex.quote(str(out))}" if n else
                  f"gpuwatch finish: wrote {out}; it holds no rows (the recording stopped "
                  f"before its first region)")
        return 0


def _rows_text(rows: Any) -> str:
    """'rows: inferences 1,000, samples 20,512' from finish_partial's rows per table (tables
    with none left out), or the one count it gave."""
    if not isinstance(rows, dict):
        return f"{int(rows):,} rows"
    return "rows: " + ", ".join(f"{table} {int(n):,}" for table, n in rows.items() if n)


def _catch_termination() -> dict[int, Any]:
    """SIGTERM and SIGHUP during the merge unwind like Ctrl-C (the temporary file is removed,
    the .partial kept), instead of killing the process mid-write."""
    def stop(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread
            pass
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
