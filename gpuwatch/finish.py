"""`python -m gpuwatch.finish OUT.partial [OUT] [--force]`: write the trace of an unfinished
recording (see gpuwatch/cli/finish.py)."""

if __name__ == "__main__":
    import sys

    try:  # (a Ctrl-C while the command's libraries load: no traceback through them)
        from gpuwatch.cli import module_main
    except KeyboardInterrupt:
        print("python -m gpuwatch.finish: interrupted before it began; nothing was done", file=sys.stderr)
        sys.exit(130)
    module_main("finish")
