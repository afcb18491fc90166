"""Signals that land where raising them would lose them: in the import machinery, or in code
an extension module's initialisation called. The session's handlers (recorder) and the CLI's
while it loads its libraries (cli.loading) send such a signal again a moment later instead."""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["IMPORT_FRAMES", "REDELIVER_S", "deliver_later", "importing"]

IMPORT_FRAMES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
REDELIVER_S = 0.05  # a signal that landed in an import comes again this much later


def importing(frame: Any) -> bool:
    """Would an exception raised where a signal handler found the main thread (`frame`) be
    lost by an import? Where it is in the import machinery itself: importlib's module-lock
    callback prints and drops it (a Ctrl-C in pandas' lazy import during a recording was lost
    so: the recording ran on and exited 0). Where it is in code that an extension module's
    initialisation called (Python frames whose caller is importlib, with C in between): the
    extension may turn it into an ImportError, or drop it (a Ctrl-C in numpy.random's, in
    `<frozen abc>` register, was lost so). In a module's own body, as in a long `import
    torch` or a script's top level, it leaves the import as Python's would: not here."""
    f = frame
    if f is not None and f.f_code.co_filename in IMPORT_FRAMES:
        return True
    while f is not None:
        back = f.f_back
        if back is not None and back.f_code.co_filename in IMPORT_FRAMES:
            # `f` was called by the import machinery: a module's body (exec'd Python), or
            # whatever an extension's init (C, no frame of its own) called
            return f.f_code.co_name != "<module>"
        f = back
    return False


def deliver_later(signum: int) -> None:
    """Send `signum` to this process again after REDELIVER_S: the import it landed in is over
    by then, or it comes again (an import takes milliseconds; a press is never lost)."""
    pid = os.getpid()
    t = threading.Timer(REDELIVER_S, lambda: os.kill(pid, signum) if os.getpid() == pid else None)
    t.daemon = True
    t.start()
