import sys

try:  # (a Ctrl-C while the command's libraries load: no traceback through them)
    from gpuwatch.cli import entry
except KeyboardInterrupt:
    print("gpuwatch: interrupted before it began; nothing was done", file=sys.stderr)
    sys.exit(130)
raise SystemExit(entry())
