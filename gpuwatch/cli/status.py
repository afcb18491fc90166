"""One self-overwriting line on stderr for a long command's progress, on a terminal only.

A pipe or a file gets nothing (a log keeps the answer, not the progress). The line is drawn
with a carriage return and spaces, no escape sequences (a dumb terminal shows it too), cut to
the terminal's width (stderr's own: stdout may be a file), and cleared before a warning and
before the command prints its answer, so that both start at the left margin."""

from __future__ import annotations

import os
import sys
import time
import warnings
from types import TracebackType
from typing import Any, TextIO

MIN_INTERVAL_S = 0.1  # (a counter's updates are drawn at most this often; steps always)


class StatusLine:
    """`show(text)` redraws the line; `throttle=True` (a counter's frequent updates) skips a
    draw within MIN_INTERVAL_S of the last. `clear()` leaves the cursor at the start of an
    empty line. Used as a context manager it also clears the line before each warning and
    at the end. Disabled (stderr not a terminal): nothing is written."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last_s = float("-inf")
        self._drawn = 0  # (the characters on the line now)
        self._showwarning: Any = None

    def width(self) -> int:
        """Characters a line may have: the terminal's columns less one (a line that filled
        them would wrap on some terminals, and a carriage return goes back one row only)."""
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            cols = 80
        return max(1, (cols or 80) - 1)

    def show(self, text: str, throttle: bool = False) -> None:
        if not self.enabled:
            return
        t = time.monotonic()
        if throttle and t - self._last_s < MIN_INTERVAL_S:
            return
        self._last_s = t
        line = _cut(" ".join(text.split()), self.width())
        pad = " " * max(0, self._drawn - len(line))  # (over what a longer line left)
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._drawn = len(line)

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._showwarning = warnings.showwarning

            def showwarning(*args: Any, **kwargs: Any) -> None:
                self.clear()  # (the warning's own line, then the next step redraws)
                self._showwarning(*args, **kwargs)

            warnings.showwarning = showwarning
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.clear()
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` characters: its middle left out where it is longer (a file
    name's end and a step's count are at the ends)."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[:width]
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]
