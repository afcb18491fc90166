"""The core must import, and analyse, on a machine with no GPU library loaded."""

import subprocess
import sys


def test_import_loads_no_vendor_gpu_library():
    code = (
        "import sys, gpuwatch\n"
        "bad = [m for m in ('pynvml', 'cuda', 'tensorrt', 'pycuda', 'torch', 'cupti') "
        "if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_public_surface_is_explicit():
    import gpuwatch

    assert "session" in gpuwatch.__all__ and "load" in gpuwatch.__all__
    for name in gpuwatch.__all__:
        assert hasattr(gpuwatch, name)


def test_importing_the_analyze_command_keeps_gpuwatch_analyze_callable(t4_sweep):
    """`import gpuwatch.analyze` (the `python -m gpuwatch.analyze` module) replaces the package
    attribute with the module: the module is callable, so the API keeps working either way."""
    code = ("import gpuwatch.analyze, gpuwatch, sys\n"
            "from gpuwatch import analyze\n"
            "a = gpuwatch.analyze(sys.argv[1]); b = analyze(sys.argv[1])\n"
            "print(type(a).__name__, a.verdict == b.verdict)")
    r = subprocess.run([sys.executable, "-c", code, str(t4_sweep.path)], capture_output=True,
                       text=True, check=True)
    assert r.stdout.split() == ["Analysis", "True"]


def test_the_command_line_and_the_recorder_import_no_pandas():
    """pandas (~0.3 s, ~40 MB) only where a table is read: `--help`, a usage error and the
    recording modules (imported into a program under `gpuwatch run`) do without it."""
    code = ("import sys, gpuwatch, gpuwatch.recorder, gpuwatch.engines, gpuwatch.trace\n"
            "import gpuwatch.cli.record, gpuwatch.cli.run, gpuwatch.cli.analyze, "
            "gpuwatch.cli.finish\n"
            "print('pandas' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False", r.stderr
    h = subprocess.run([sys.executable, "-X", "importtime", "-m", "gpuwatch.analyze", "--help"],
                       capture_output=True, text=True, check=True)
    assert "usage:" in h.stdout and "| pandas\n" not in h.stderr


def test_gpuwatch_help_version_and_a_mistyped_command_import_no_command():
    """`gpuwatch --help`, `-V` and `gpuwatch frobnicate` answer without importing a command
    (record's imports numpy and pyarrow: ~0.3 s); `gpuwatch analyze --help` imports only
    analyze's."""
    code = ("import sys\nfrom gpuwatch.cli import entry\n"
            "codes = [entry(a) for a in (['--help'], ['-V'], ['frobnicate'])]\n"
            "print('A', codes, sorted(m for m in ('numpy', 'pyarrow', 'gpuwatch.cli.record', "
            "'gpuwatch.cli.run', 'gpuwatch.cli.analyze', 'gpuwatch.cli.finish') "
            "if m in sys.modules))\n"
            "try:\n    entry(['analyze', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('B', sorted(m for m in sys.modules if m.startswith('gpuwatch.cli.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = {ln[0]: ln[2:] for ln in r.stdout.splitlines() if ln[:2] in ("A ", "B ")}
    assert lines["A"] == "[0, 0, 2] []", r.stdout
    assert lines["B"] == "['gpuwatch.cli.analyze']", r.stdout
