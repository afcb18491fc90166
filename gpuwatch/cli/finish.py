"""The `finish` command: turn an unfinished recording (`OUT.partial/`, left by a crash, a
kill -9 or a full disk) into a trace file, with the same care as `record`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from ..trace import LOCK_NAME, _lock_owner, check_output, finish_partial


class FinishCommand:
    name = "finish"
    description = ("Write the trace file of an unfinished recording (a .partial directory left "
                   "by a crash or a full disk); the .partial is removed once the trace is "
                   "written.")

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("partial", metavar="OUT.partial", help="the unfinished recording")
        p.add_argument("out", nargs="?", metavar="OUT",
                       help="trace file to write (default: the name without .partial)")
        p.add_argument("-f", "--force", action="store_true", help="replace OUT if it exists")

    def run(self, args: argparse.Namespace) -> int:
        partial = Path(args.partial)
        if not partial.is_dir() or not (partial / "meta.json").is_file():
            raise UsageError(f"{partial} is not an unfinished gpuwatch recording (a directory "
                             f"with meta.json and chunk files)")
        owner = _lock_owner(partial) if (partial / LOCK_NAME).exists() else None
        if owner is not None:
            raise UsageError(f"{partial} is still being recorded by {owner}; let it finish")
        default = partial.with_name(partial.name.removesuffix(".partial"))
        out = Path(args.out) if args.out else default
        if out == partial or out.name == partial.name:
            raise UsageError("give the trace file to write, not the .partial directory itself")
        check_output(out, args.force, check_partial=False)
        rows = finish_partial(partial, out)
        print(json.dumps({"trace": str(out), "rows": rows}))
        return 0
