"""`python -m gpuwatch.analyze`: layers, attribution and a verdict for traces."""

if __name__ == "__main__":
    from gpuwatch.cli import main
    from gpuwatch.cli.analyze import AnalyzeCommand

    raise SystemExit(main(AnalyzeCommand()))
