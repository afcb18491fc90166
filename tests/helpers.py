"""The CLI as tests run it: in a subprocess, as a user does (`gw`), or in this process
(`gw_here`), where the test is about the command's own logic (its usage errors, what it makes
of a bad file), not about the process (signals, exit paths, streams, the interpreter's exit).

A subprocess costs ~0.5-1 s of CPU before the command runs (an interpreter importing numpy,
pyarrow and pandas); the suite runs a few hundred of them on 2 cores (docs/install.md)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import warnings
from typing import Iterator, Mapping

from gpuwatch.cli import entry, main


def gw(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
       env: Mapping[str, str] | None = None, module: str = "gpuwatch",
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` in a subprocess (MODULE: gpuwatch, or gpuwatch.record and the
    like): its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=None if env is None else dict(env),
                          timeout=timeout)


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gw_here(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            env: Mapping[str, str] | None = None,
            module: str = "gpuwatch") -> subprocess.CompletedProcess[str]:
    """What `gw` gives, from the same command run in this process by the console script's
    own entry points (`gpuwatch.cli.entry`, or gpuwatch.X's `main(XCommand())`). Warnings print
    to its stderr as in a fresh process (not to pytest's record); the working directory, the
    environment and the warnings machinery are given back."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    formatwarning = warnings.formatwarning
    try:
        with _environment(env), warnings.catch_warnings(), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()  # (Python's defaults: pytest's filters and record off)
            warnings.simplefilter("default")
            warnings.showwarning = _print_warning
            if cwd is not None:
                os.chdir(cwd)
            try:
                if module == "gpuwatch":
                    code = entry(argv)
                else:  # (python -m gpuwatch.X: its own prog in messages, as there)
                    name = module.split(".", 1)[1]
                    cls = getattr(importlib.import_module(f"gpuwatch.cli.{name}"),
                                  f"{name.capitalize()}Command")
                    code = main(cls(), argv)
            except SystemExit as e:  # (argparse: --help, a usage error)
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        os.chdir(here)
        warnings.formatwarning = formatwarning  # (the CLI sets its one-line format)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _print_warning(message: Warning | str, category: type[Warning], filename: str,
                   lineno: int, file: object = None, line: str | None = None) -> None:
    """Python's own showwarning, to the stderr of the moment (the redirected one)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


