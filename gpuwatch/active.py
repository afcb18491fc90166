"""The session recording in this process now, if any: one at a time. The recorder sets it when
a session starts and clears it when the session ends; the engines and `timed()` (which time
through whichever session is active) read it. A module of its own so that the engines need not
import the recorder, which makes them (`Session.engine()`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recorder import Session

session: "Session | None" = None
lock = threading.Lock()  # (held while a session claims or gives up `session`)
