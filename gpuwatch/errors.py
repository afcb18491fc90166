"""Errors that carry their own exit status, so the CLIs can print one line and exit cleanly."""

from __future__ import annotations


class GpuwatchError(Exception):
    """Base class for gpuwatch errors a user can act on (shown as one line, no traceback)."""

    exit_code: int = 1


class UsageError(GpuwatchError):
    """Bad input from the user: a wrong flag, device spec, path or value. CLI exit status 2."""

    exit_code = 2


class DeviceUnavailable(UsageError):
    """The requested device cannot be opened here (no GPU, no driver, library missing)."""


class TraceFormatError(UsageError):
    """A file is not a gpuwatch trace, is corrupt, or was written by a newer schema."""


class TraceWriteError(GpuwatchError):
    """The trace could not be written (disk full, I/O error, quota): recording stopped; what was
    written before is kept. CLI exit status 1."""


class SessionError(GpuwatchError):
    """The session API was used in a way it does not support (e.g. nested sessions)."""


class Terminated(SystemExit):
    """SIGTERM (or SIGHUP: the terminal closed) arrived while a session was recording. Raised
    in the main thread, so the session closes its trace (status "interrupted") on the way out;
    exits with status 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP), as the
    signal's default action would report it to a shell."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def described(e: BaseException) -> str:
    """An exception as a trace's metadata and messages give it: "ValueError: boom", or the
    type alone where it carries no message ("KeyboardInterrupt", not "KeyboardInterrupt: ")."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def damaged_page_advice(e: BaseException) -> str:
    """What a Parquet read error means when a data page failed its CRC (trace.schema's page
    checksums): its bytes changed after gpuwatch wrote them. "" for any other error."""
    if "checksum" not in str(e).lower():
        return ""
    return ("; a page's bytes changed after gpuwatch wrote them (a disk or copy error): copy "
            "the trace again from where it was recorded")
