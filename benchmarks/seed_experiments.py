"""The field report's three experiments (../shared/seed, summarised in DESIGN.md), recorded
with gpuwatch: one command per experiment, one trace per configuration.

    python benchmarks/seed_experiments.py 1 --out results/   # large model: stream vs loop vs back-to-back
    python benchmarks/seed_experiments.py 2 --out results/   # small model, 20 ms gap, 800 iterations
    python benchmarks/seed_experiments.py 3 --out results/   # all presets x 2 sizes; gap sweep
    python benchmarks/seed_report.py results/                # tables, verdicts, plots (needs ruptures)

Every configuration runs through `python -m gpuwatch.record`'s own code (in this process, so
PyTorch is imported once); `commands.txt` lists each as the exact `record` command line that
reproduces it alone. `--device sim:t4` runs the same plan on the simulated T4 (PyTorch
configurations are skipped there).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from gpuwatch.cli import main
from gpuwatch.cli.record import RecordCommand

TORCH = "gpuwatch.bindings.torch:convnet"
SMALL, LARGE = "768x448", "1024x576"  # the seed's small and large models' input sizes
SIZES = (SMALL, "1280x720")  # experiment 3's two input sizes
SWEEP = (0, 2, 5, 10, 20, 50, 100)  # gap ms
SWEEP_ITERS = 120


def engines(preset: str, size: str, dtype: str = "fp16") -> dict[str, list[str]]:
    """The four ways each model runs: built-in and PyTorch, eager and as one CUDA graph."""
    b = [f"--engine=builtin:{preset},size={size}"]
    t = [f"--torch={TORCH},depth={preset},size={size},dtype={dtype}"]
    return {"builtin": b, "builtin+graph": b + ["--cuda-graph"],
            "torch": t, "torch+graph": t + ["--cuda-graph"]}


def plan(experiment: int) -> list[tuple[str, list[str]]]:
    """(name, record arguments) for every configuration of one experiment."""
    runs: list[tuple[str, list[str]]] = []
    if experiment == 1:  # a large model: the online-like stream vs the loop vs back-to-back
        for eng, args in engines("large", LARGE).items():
            for wait in ("sleep", "spin"):
                runs.append((f"e1_{eng}_{wait}_steps", args + [
                    "--pre-post", "--gap=0,20", "--fps=30", "--iters=200", f"--wait={wait}"]))
            runs.append((f"e1_{eng}_b2b", args + ["--gap=0", "--iters=200"]))
    elif experiment == 2:  # a small model at 768x448, 20 ms gap, 800 iterations
        # First, where the time goes inside each inference (CUPTI). These come first: CUPTI's
        # event timestamps need it started before the process's CUDA context (torch keeps its).
        for eng in ("builtin", "torch"):
            runs.append((f"e2_{eng}_sleep_kernels", engines("small", SMALL)[eng] + [
                "--gap=20", "--iters=800", "--kernels"]))
        for eng, args in engines("small", SMALL).items():
            for wait in ("sleep", "spin"):
                runs.append((f"e2_{eng}_{wait}", args + ["--gap=20", "--iters=800",
                                                         f"--wait={wait}"]))
    elif experiment == 3:
        for preset in ("small", "large"):  # every preset at two sizes: b2b and 20 ms gap
            for size in SIZES:
                for eng, args in engines(preset, size).items():
                    runs.append((f"e3_{eng}_{preset}_{size}", args + ["--gap=0,20", "--iters=400"]))
                for eng in ("builtin", "torch"):  # eager with a spin-wait too
                    runs.append((f"e3_{eng}_{preset}_{size}_spin", engines(preset, size)[eng] + [
                        "--gap=0,20", "--iters=400", "--wait=spin"]))
        sweep = [f"--gap={','.join(map(str, SWEEP))}", f"--iters={SWEEP_ITERS}"]
        for eng, args in engines("small", SMALL).items():  # the gap sweep
            for wait in ("sleep", "spin"):
                runs.append((f"e3_sweep_{eng}_{wait}", args + sweep + [f"--wait={wait}"]))
        # a mitigation: a trivial GPU op every 2 ms of each gap (a keep-alive)
        runs.append(("e3_sweep_builtin_keepalive", engines("small", SMALL)["builtin"] + sweep
                     + ["--keepalive=2"]))
    return runs


def run(experiment: int, out: Path, device: str, only: str | None = None) -> None:
    d = out / f"experiment{experiment}"
    d.mkdir(parents=True, exist_ok=True)
    done, log = [], []
    configs = [(n, a) for n, a in plan(experiment) if only is None or re.search(only, n)]
    if device.startswith("sim:"):
        configs = [(n, a) for n, a in configs if not any(x.startswith("--torch") for x in a)]
    t0 = time.monotonic()
    for i, (name, args) in enumerate(configs):
        argv = [f"--device={device}", *args, f"--out={d / name}.parquet", "--quiet"]
        log.append("python -m gpuwatch.record " + " ".join(shlex.quote(a) for a in argv))
        t = time.monotonic()
        with redirect_stdout(io.StringIO()):
            code = main(RecordCommand(), argv)
        done.append({"name": name, "exit": code, "seconds": round(time.monotonic() - t, 1)})
        print(f"[{i + 1}/{len(configs)}] {name}: exit {code} in {done[-1]['seconds']} s "
              f"({time.monotonic() - t0:.0f} s so far)", file=sys.stderr, flush=True)
    with open(d / "commands.txt", "a") as f:  # appended: a plan may run in parts
        f.write("\n".join(log) + "\n")
    with open(d / "runs.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in done)


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=int, choices=(1, 2, 3))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--only", metavar="REGEX",
                    help="run only the configurations whose name matches REGEX (e.g. _sweep_), "
                         "to fit a time limit; the rest can run in a later call")
    a = ap.parse_args()
    run(a.experiment, a.out, a.device, a.only)


if __name__ == "__main__":
    main_()
