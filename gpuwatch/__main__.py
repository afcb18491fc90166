from gpuwatch.cli import entry

raise SystemExit(entry())
