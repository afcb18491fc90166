import sys

try:  # (a Ctrl-C while the command's libraries load: no traceback through them)
    from gpuwatch.cli import entry
except KeyboardInterrupt:
    sys.exit(130)
raise SystemExit(entry())
