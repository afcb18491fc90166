"""gpuwatch's diagnostics go through one logger, `logging.getLogger("gpuwatch")`.

By default they are written to the process's stderr as they always were ("gpuwatch: ..."), by
a handler of the package's own, so a program that configures nothing still sees them. To take
them over: `logging.getLogger("gpuwatch").propagate = True` and remove `DEFAULT_HANDLER` from it
(your handlers and levels then apply), or raise its level to quiet them:
`logging.getLogger("gpuwatch").setLevel(logging.ERROR)`.

(The messages printed from signal handlers during a Ctrl-C stay prints: logging takes locks,
which a signal handler must not.)
"""

from __future__ import annotations

import logging
import sys

__all__ = ["DEFAULT_HANDLER", "logger"]


class _Stderr(logging.Handler):
    """Writes to sys.stderr as it is at the time (a test's or a notebook's capture sees it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


logger = logging.getLogger("gpuwatch")
DEFAULT_HANDLER = _Stderr()
DEFAULT_HANDLER.setFormatter(logging.Formatter("gpuwatch: %(message)s"))
if not logger.handlers:
    logger.addHandler(DEFAULT_HANDLER)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # (once, not twice where the root logger also prints)
