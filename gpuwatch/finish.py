"""`python -m gpuwatch.finish OUT.partial [OUT] [--force]`: write the trace of an unfinished
recording (see gpuwatch/cli/finish.py)."""

if __name__ == "__main__":
    from gpuwatch.cli import main
    from gpuwatch.cli.finish import FinishCommand

    raise SystemExit(main(FinishCommand()))
