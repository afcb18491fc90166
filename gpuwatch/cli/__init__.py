"""Command-line plumbing: each command is a small class; errors carry their exit status."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Protocol, Sequence

from ..errors import GpuwatchError


class Command(Protocol):
    name: str
    description: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def make_parser(command: Command, prog: str | None = None) -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(prog=prog or f"python -m gpuwatch.{command.name}",
                     description=command.description)
    parser.add_argument("-V", "--version", action="version", version=f"gpuwatch {__version__}")
    command.prepare_parser(parser)
    return parser


def main(command: Command, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse, run, and turn gpuwatch errors into one line on stderr plus their exit status."""
    parser = make_parser(command, prog)
    split = getattr(command, "split_argv", None)  # (gpuwatch run: the program's own options)
    args = parser.parse_args(split(list(argv if argv is not None else sys.argv[1:]))
                             if split is not None else argv)
    try:
        return command.run(args)
    except GpuwatchError as e:
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"{parser.prog}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def entry(argv: Sequence[str] | None = None) -> int:
    """`gpuwatch COMMAND ...` / `python -m gpuwatch COMMAND ...`."""
    from .analyze import AnalyzeCommand
    from .finish import FinishCommand
    from .record import RecordCommand
    from .run import RunCommand

    commands: dict[str, Command] = {c.name: c for c in (RecordCommand(), AnalyzeCommand(),
                                                        FinishCommand(), RunCommand())}
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-V"], ["--version"]):
        from .._version import __version__

        print(f"gpuwatch {__version__}")
        return 0
    if not argv or argv[0] not in commands:
        names = ", ".join(commands)
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: gpuwatch {{{names}}} ...  (gpuwatch COMMAND --help for each)")
            return 0
        print(f"gpuwatch: error: give a command: {names} (e.g. gpuwatch record --gap 20)",
              file=sys.stderr)
        return 2
    return main(commands[argv[0]], argv[1:], prog=f"gpuwatch {argv[0]}")
