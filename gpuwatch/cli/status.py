"""One self-overwriting line on stderr for a long command's progress, on a terminal only.

A pipe or a file gets nothing (a log keeps the answer, not the progress); the line is cleared
before the command prints its answer, so that the answer starts at the left margin."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

MIN_INTERVAL_S = 0.1  # (a faster stream of updates is drawn at most this often)


class StatusLine:
    """`show(text)` redraws the line (at most every MIN_INTERVAL_S unless `now`); `clear()`
    leaves the cursor at the start of an empty line. Disabled: both do nothing."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last_s = float("-inf")
        self._drawn = False

    def show(self, text: str, now: bool = False) -> None:
        if not self.enabled:
            return
        t = time.monotonic()
        if not now and t - self._last_s < MIN_INTERVAL_S:
            return
        self._last_s = t
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        line = text if len(text) <= width else text[:width - 3] + "..."
        self.stream.write("\r" + line + "\x1b[K")  # (erase what a longer line left)
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
