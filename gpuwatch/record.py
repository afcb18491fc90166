"""`python -m gpuwatch.record`: run inference with idle gaps and record a trace."""

if __name__ == "__main__":
    from gpuwatch.cli import main
    from gpuwatch.cli.record import RecordCommand

    raise SystemExit(main(RecordCommand()))
