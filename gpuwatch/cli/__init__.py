"""Command-line plumbing: each command is a small class; errors carry their exit status."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Iterator, NoReturn, Protocol, Sequence

from ..errors import GpuwatchError, UsageError
from ..interrupts import deliver_later, importing  # (here: loading() imports nothing before
# its handler is in place, where a press would land as a traceback)

# Traces this command has finished writing: a later failure (stdout on a full disk) says they
# are there, so nobody records again for nothing.
WRITTEN: list[str] = []


class Command(Protocol):
    name: str
    description: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_probe_options(p: argparse.ArgumentParser, what: str = "inferences") -> None:
    """--probe/--no-probe and --probe-every: the in-band SM clock's stamps (record, run)."""
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                   help=f"stamp the in-band SM clock around {what} "
                        "(sm_clock_inband_mhz: a tiny kernel before and after one); "
                        "default: on wherever the device can stamp (off, with the reason "
                        "in the metadata, where it cannot start)")
    p.add_argument("--probe-every", type=float, default=None, metavar="MS",
                   help=f"stamp one of the {what} once MS milliseconds have passed since the "
                        "last stamped one began and those since lasted ~10 ms of GPU time "
                        "(0: every one; default 5 on real GPUs, 0 on sim:); the rest borrow "
                        "the nearest stamp's clock, labelled as such")


def check_probe_options(args: argparse.Namespace) -> None:
    """--no-probe with --probe-every asks for no stamps and for stamps at a rate: refused."""
    if args.probe is False and args.probe_every is not None:
        raise UsageError("--no-probe turns the in-band clock's stamps off, and --probe-every "
                         "sets how often they are taken: give one of them")


def make_parser(command: Command, prog: str | None = None) -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(prog=prog or f"python -m gpuwatch.{command.name}",
                     description=command.description)
    parser.add_argument("-V", "--version", action="version", version=f"gpuwatch {__version__}")
    command.prepare_parser(parser)
    return parser


def main(command: Command, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse, run, and turn gpuwatch errors into one line on stderr plus their exit status."""
    WRITTEN.clear()  # (this command's traces only: main() may run many times in a process)
    try:  # (a Ctrl-C this early: nothing started, nothing to say but that)
        parser = make_parser(command, prog)
        split = getattr(command, "split_argv", None)  # (gpuwatch run: the program's options)
        args = parser.parse_args(split(list(argv if argv is not None else sys.argv[1:]),
                                       parser) if split is not None else argv)
    except KeyboardInterrupt:
        print(f"{prog or f'python -m gpuwatch.{command.name}'}: interrupted before it began; "
              f"nothing was done", file=sys.stderr)
        return 130
    if command.name != "run":  # (run's program keeps Python's own streams and warnings)
        _one_line_warnings(parser.prog)
        for stream in (sys.stdout, sys.stderr):  # a name a terminal's encoding lacks: escaped
            try:
                stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                pass
    try:
        code = command.run(args)
        if code == 130:
            _ignore_sigint()
        return code
    except GpuwatchError as e:
        msg = " ".join(str(e).split())  # one line, whatever the message held
        if e.exit_code == 130:
            _ignore_sigint()
        print(f"{parser.prog}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        _ignore_sigint()
        if not getattr(e, "gpuwatch_said", False):  # (the command said what it kept)
            print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # (`| head`, `| true`: the reader left; as other tools, quietly)
        _silence_stdout()
        return 141
    except OSError as e:  # (a full disk under stdout, an I/O error: one line, not a traceback)
        _silence_stdout()
        where = f" ({e.filename})" if e.filename else " while writing the output"
        kept = f"; the trace was written: {', '.join(WRITTEN)}" if WRITTEN else ""
        try:
            print(f"{parser.prog}: error: {e.strerror or e}{where}{kept}", file=sys.stderr)
        except OSError:
            pass
        return 1


def _ignore_sigint() -> None:
    """The command was stopped by Ctrl-C and has said what it kept: more presses (a user
    pressing on and on) are moot now. Left to the default handler, which the interpreter
    restores while it exits, one would kill the process by the signal instead of exit 130."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # (not the main thread)
        pass


def _silence_stdout() -> None:
    """After stdout failed, point it at /dev/null, so the interpreter's own flush at exit
    does not fail (and print) again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _one_line_warnings(prog: str) -> None:
    """gpuwatch's own warnings as one line each (`PROG: warning: ...`), not Python's two (the
    second is a line of gpuwatch's source, of no use to a user)."""
    import warnings

    def fmt(message: Warning | str, category: type[Warning], filename: str, lineno: int,
            line: str | None = None) -> str:
        return f"{prog}: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = fmt


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around imports of the commands' libraries: a Ctrl-C meanwhile exits 130, with no
    traceback through them. Python raises the KeyboardInterrupt wherever the import was, and
    a C extension's may turn it into an ImportError (numpy's: "PyCapsule_Import could not
    import module 'datetime'"); a press seen during the block makes either an interruption."""
    import signal

    pressed: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        if importing(frame):  # (raised there, it is printed as "Exception ignored" and
            deliver_later(signum)  # dropped: it comes again a moment later)
            return
        pressed.append(signum)
        raise KeyboardInterrupt

    previous = None
    try:  # (only over Python's own handler: an ignored SIGINT stays ignored)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous = signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError):  # (not the main thread)
        pass
    try:
        yield
    except KeyboardInterrupt:
        _interrupted_while_loading()
    except ImportError:
        if not pressed:
            raise
        _interrupted_while_loading()
    else:  # (a KeyboardInterrupt raised in an importlib callback is printed and dropped)
        if pressed:
            _interrupted_while_loading()
    finally:
        if previous is not None and not pressed:
            signal.signal(signal.SIGINT, previous)


def _interrupted_while_loading() -> NoReturn:
    _ignore_sigint()
    if WRITTEN:  # (record's summary was loading: the trace itself is done)
        print(f"interrupted; the trace was written: {', '.join(WRITTEN)}", file=sys.stderr)
    else:
        print("gpuwatch: interrupted before it began; nothing was done", file=sys.stderr)
    sys.exit(130)


def module_main(name: str) -> NoReturn:
    """`python -m gpuwatch.NAME` (record, analyze, finish, run): that command alone, as
    `gpuwatch NAME` runs it, with its own name in its messages."""
    import importlib

    try:  # (a press as loading() begins, before its handler is in place: the same line)
        with loading():
            module, cls = COMMANDS[name]
            command: Command = getattr(importlib.import_module(module, __name__), cls)()
    except KeyboardInterrupt:
        _interrupted_while_loading()
    raise SystemExit(main(command))


def entry(argv: Sequence[str] | None = None) -> int:
    """`gpuwatch COMMAND ...` / `python -m gpuwatch COMMAND ...`. Only the command named is
    imported (`gpuwatch --help`, `-V` and a mistyped command import none: ~0.3 s less)."""
    commands = COMMANDS
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] in (["-V"], ["--version"]):
            from .._version import __version__

            print(f"gpuwatch {__version__}", flush=True)
            return 0
        if not argv or argv[0] not in commands:
            names = ", ".join(commands)
            if argv and argv[0] in ("-h", "--help"):
                print(f"usage: gpuwatch {{{names}}} ...  (gpuwatch COMMAND --help for each)",
                      flush=True)
                return 0
            unknown = f"unknown command {argv[0]!r}; " if argv else ""
            print(f"gpuwatch: error: {unknown}give a command: {names} (e.g. gpuwatch record "
                  f"--gap 20)", file=sys.stderr)
            return 2
    except BrokenPipeError:  # (as main(): quietly)
        _silence_stdout()
        return 141
    except OSError as e:  # (stdout on a full disk: one line)
        _silence_stdout()
        print(f"gpuwatch: error: {e.strerror or e} while writing the output", file=sys.stderr)
        return 1
    import importlib

    try:  # (a press as loading() begins, before its handler is in place: the same line)
        with loading():
            module, cls = COMMANDS[argv[0]]
            command: Command = getattr(importlib.import_module(module, __name__), cls)()
    except KeyboardInterrupt:
        _interrupted_while_loading()
    return main(command, argv[1:], prog=f"gpuwatch {argv[0]}")


# gpuwatch's commands, in the order --help lists them: the module and class of each
COMMANDS: dict[str, tuple[str, str]] = {"record": (".record", "RecordCommand"),
                                        "analyze": (".analyze", "AnalyzeCommand"),
                                        "finish": (".finish", "FinishCommand"),
                                        "run": (".run", "RunCommand")}
