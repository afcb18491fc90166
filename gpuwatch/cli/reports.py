"""The report files a command writes (`--html`, `--perfetto`): checked before any work, so that
a long analysis or a whole program's run does not end in a refusal, and never written over a
file the user did not give up (`-f/--force`) nor over a trace being analysed."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

from ..errors import UsageError
from ..trace.paths import refuses_new_file


def check_reports(reports: dict[str, str | None], force: bool, inputs: Iterable[str] = (),
                  examples: dict[str, str] | None = None) -> None:
    """Refuse, with one line saying what to do, each report file of `reports` (flag -> path,
    None where not asked for) that cannot or must not be written: no name, a directory, a
    folder that does not exist or cannot take a new file, an existing file without `force`,
    one of the `inputs` (the traces read or written) whatever `force` says, or a file two flags
    share."""
    examples = examples or {}
    seen: dict[str, str] = {}
    for flag, path in reports.items():
        if path is None:
            continue
        example = examples.get(flag, "report.html")
        if not str(path).strip() or Path(path).is_dir():
            raise UsageError(f"{flag} takes a file name (e.g. {example}), not {path!r}, which "
                             f"is a directory or empty")
        p = Path(path)
        parent = p.resolve().parent
        if not parent.is_dir():
            raise UsageError(f"cannot write {flag} {path}: directory {parent} does not exist; "
                             f"create it or pick another place")
        key = os.path.normcase(str(p.resolve()))
        if key in seen:
            raise UsageError(f"{seen[key]} and {flag} name the same file {path}; give each its "
                             f"own")
        seen[key] = flag
        for t in inputs:
            if _same_file(p, Path(t)):
                raise UsageError(f"{flag} {path} is the trace itself; pick another file name "
                                 f"for the report")
        if os.path.lexists(p):
            if _regular(p) and not force:
                raise UsageError(f"{flag} {path} already exists; pick another file name, or "
                                 f"replace it with -f/--force")
            continue  # (a device or pipe, /dev/stdout say: written to as it is)
        why = refuses_new_file(parent)
        if why is not None:
            raise UsageError(f"cannot write {flag} {path}: {why} in {parent}; pick another "
                             f"place")


def _regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(p).st_mode)
    except OSError:  # (a dangling link: replaced, not followed)
        return True


def _same_file(a: Path, b: Path) -> bool:
    """The same file: one name, or two names (links) of one file."""
    if os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve())):
        return True  # (a file not written yet: the trace a run will record, say)
    try:
        return os.path.samefile(a, b)
    except OSError:  # (either is missing)
        return False
