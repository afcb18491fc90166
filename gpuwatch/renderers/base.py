from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

from ..analysis.pipeline import Analysis


class Renderer:
    """Turns an Analysis into one output document."""

    def render(self, analysis: Analysis) -> str:
        raise NotImplementedError

    def write(self, analysis: Analysis, path: str | Path) -> Path:
        return write_text(path, [self.render(analysis)])


def write_text(path: str | os.PathLike[str], chunks: Iterable[str]) -> Path:
    """Write `chunks` to `path` whole or not at all: into a new file beside it, renamed over it
    once complete, so that a failed or interrupted write (a full disk, Ctrl-C) leaves whatever
    was there before. A path that is not a regular file (a pipe, /dev/stdout) is written to
    as it is."""
    p = Path(path)
    try:
        special = not stat.S_ISREG(os.stat(p).st_mode)
    except OSError:  # (nothing there yet, or a dangling link: replaced)
        special = False
    if special:
        with open(p, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
        return p
    tmp = p.with_name(f".{p.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        # (O_EXCL: a file of its own; mode 0666 less the umask, as any new file)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w",
                  encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
