"""Starting gpuwatch's own helper processes (the sampler's, the trace merge's): the command
line and environment, and the error when none can be started. Shared by trace.finish and
sampler_process.py, so that neither imports the other."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["SamplerStartError", "helper_command"]


class SamplerStartError(RuntimeError):
    """A helper process (the sampler's, the trace merge's) could not start; the message says
    why (the session falls back to the thread sampler, the merge to this process)."""


def helper_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment to run `python -m module args...` with this process's Python and
    this copy of gpuwatch (put first on PYTHONPATH: the program may have found gpuwatch on a
    path it added itself)."""
    exe = sys.executable
    if not exe or not os.path.exists(exe):
        raise SamplerStartError(f"no Python interpreter to start helpers with "
                                f"(sys.executable is {exe!r})")
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != root])
    return [exe, "-m", module, *args], env
