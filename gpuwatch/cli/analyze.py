"""The `analyze` command: layers, attribution and a verdict for one or more traces."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.threads import one_blas_thread_at_load
from ..errors import UsageError
from . import loading


class AnalyzeCommand:
    name = "analyze"
    description = ("Answer, for each trace: are there latency layers, when do they start and "
                   "settle, and what explains them (SM/memory clock, throttling, host launch "
                   "delay, or nothing measured).")

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("traces", nargs="+", metavar="TRACE",
                       help="trace files (.parquet) or unfinished recordings (.partial dirs); "
                            "or one directory of traces (a fleet dataset): streamed, answered "
                            "per GPU model and gap")
        p.add_argument("--json", action="store_true", help="print JSON instead of the summary")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="print the overall verdict only (one line; for a directory: the "
                            "group with the largest late/early ratio)")
        p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
        p.add_argument("--png", metavar="DIR", help="write the plots as PNG files into DIR")
        p.add_argument("--perfetto", metavar="FILE",
                       help="write a timeline for ui.perfetto.dev (Chrome trace-event JSON)")
        p.add_argument("-f", "--force", action="store_true",
                       help="replace --html and --perfetto files that exist")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")

    def run(self, args: argparse.Namespace) -> int:
        one_blas_thread_at_load()  # (before numpy loads: analysis/threads.py)
        if args.json and args.quiet:
            raise UsageError("--json prints everything and -q the overall verdict only: give "
                             "one of them")
        if args.seed < 0:
            raise UsageError(f"--seed takes a whole number >= 0, got {args.seed}")
        if args.png is not None and not str(args.png).strip():
            raise UsageError("--png takes a directory for the PNG files (e.g. plots), not ''")
        if args.png is not None and Path(args.png).exists() and not Path(args.png).is_dir():
            raise UsageError(f"--png takes a directory for the PNG files; {args.png} is a file")
        if any(not t.strip() for t in args.traces):
            raise UsageError("an empty path was given as a trace; give a .parquet file or a "
                             "directory of traces")
        dirs = [t for t in args.traces if Path(t).is_dir() and not t.rstrip("/").endswith(".partial")]
        if dirs:
            return self._fleet(args, dirs)
        from .reports import check_reports  # (here: `--help` imports no other module of cli/)

        check_reports({"--html": args.html, "--perfetto": args.perfetto}, args.force,
                      inputs=args.traces, examples={"--perfetto": "trace.json"})
        with loading():  # (pandas and the rest: only once the input is good; a fleet needs
            # neither the pipeline nor the renderers)
            from ..analysis.pipeline import analyze
            from ..renderers import HtmlRenderer, JsonRenderer, PerfettoRenderer, TextRenderer

        from .status import StatusLine  # (here: `--help` imports no other module of cli/)

        # (a terminal sees each step of a long analysis, a pipe nothing; the line is cleared
        # before a warning, an error's one line and the answer)
        with StatusLine() as status:
            a = analyze(*args.traces, seed=args.seed, progress=status.show)
            try:
                if args.html:
                    status.show(f"writing the HTML report {args.html}")
                    HtmlRenderer().write(a, args.html)
                if args.png:
                    from ..analysis.plots import save_pngs

                    status.show(f"writing the plots into {args.png}")
                    save_pngs(a, args.png)
                if args.perfetto:
                    status.show(f"writing the Perfetto timeline {args.perfetto}")
                    PerfettoRenderer().write(a, args.perfetto)
            except OSError as e:  # read-only filesystem, full disk, permissions
                raise UsageError(f"cannot write the report to {e.filename or 'its file'}: "
                                 f"{e.strerror or e}; pick another place") from e
        if args.quiet and not args.json:
            print(a.verdict)
            return 0
        sys.stdout.write((JsonRenderer() if args.json else TextRenderer()).render(a))
        if not args.json:
            for what, path in (("html", args.html), ("png", args.png),
                               ("perfetto", args.perfetto)):
                if path:
                    print(f"{what}: {path}")
        return 0

    def _fleet(self, args: argparse.Namespace, dirs: list[str]) -> int:
        from ..analysis.fleet import fleet, format_fleet

        if len(args.traces) != 1:
            raise UsageError("give one directory of traces, or trace files, not both")
        for flag in ("html", "png", "perfetto"):
            if getattr(args, flag):
                raise UsageError(f"--{flag} is for trace files; for a directory use --json")
        from .status import StatusLine

        with StatusLine() as status:
            f = fleet(dirs[0], progress=lambda done, total: status.show(
                f"{done}/{total} traces", throttle=done < total))
        if args.json:
            import json

            sys.stdout.write(json.dumps(f.to_dict(), indent=1) + "\n")
        elif args.quiet:
            print(f.headline())
        else:
            sys.stdout.write(format_fleet(f))
        return 0
