"""`python -m gpuwatch.run [OPTIONS] app.py [ARGS...]` (or `-m MODULE`): profile an unmodified
program (see gpuwatch/cli/run.py), as `gpuwatch run` does."""

if __name__ == "__main__":
    import sys

    try:  # (a Ctrl-C while the command's libraries load: no traceback through them)
        from gpuwatch.cli import module_main
    except KeyboardInterrupt:
        print("python -m gpuwatch.run: interrupted before it began; nothing was done", file=sys.stderr)
        sys.exit(130)
    module_main("run")
