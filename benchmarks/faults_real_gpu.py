"""Issue 30's signal and exit faults on a real GPU (the sampler in its own process, NVML, CUDA):
what tests/test_fault_replay.py checks on the stand-in and sim devices, made on the device.

    python benchmarks/faults_real_gpu.py --out DIR       # about two minutes

Each case runs a small PyTorch program under `gpuwatch run` (or a session), stops it as a user
would, and records: exit status, whether the trace or a .partial is left, rows kept, stderr's
last line. Writes DIR/faults.json and prints one line per case. Never changes the GPU."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import sys, time, torch
    x = torch.randn(64, 64, device="cuda")
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()).cuda()
    print("started", flush=True)
    for i in range(100000):
        with torch.no_grad():
            y = net(x)
        torch.cuda.synchronize()
        time.sleep(0.002)
""")

SESSION = textwrap.dedent("""
    import os, torch, gpuwatch
    x = torch.randn(64, 64, device="cuda")
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()).cuda()
    s = gpuwatch.session(out="s.parquet")
    s.start()
    for _ in range(300):
        with torch.no_grad():
            s.infer(net, x)
        torch.cuda.synchronize()
    {end}
""")


def _load(path: Path):
    import gpuwatch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gpuwatch.load(path)
        except Exception:
            return None


def status(path: Path) -> str | None:
    t = _load(path)
    return None if t is None else t.meta.get("status")


def rows(path: Path) -> int | None:
    t = _load(path)
    return None if t is None else len(t.measured())


def run_and_signal(d: Path, presses: list[tuple[int, float]]) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    (d / "prog.py").write_text(PROGRAM)
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "run", "-q", "-o", "t.parquet",
                          "prog.py"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None
    p.stdout.readline()
    time.sleep(2.0)
    for sig, after_s in presses:
        time.sleep(after_s)
        p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    out = d / "t.parquet"
    return {"exit": p.returncode, "trace": out.exists(), "partial": (d / "t.parquet.partial").exists(),
            "rows": rows(out) if out.exists() else rows(d / "t.parquet.partial"),
            "traceback": "Traceback" in err.split("KeyboardInterrupt")[-1],
            "stderr_last": err.strip().splitlines()[-1][:200] if err.strip() else ""}


def session_end(d: Path, end: str) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", SESSION.format(end=end)], cwd=d,
                       capture_output=True, text=True, timeout=120)
    out = d / "s.parquet"
    return {"exit": r.returncode, "trace": out.exists(), "rows": rows(out) if out.exists() else None,
            "status": status(out) if out.exists() else None,
            "stderr_last": r.stderr.strip().splitlines()[-1][:200] if r.stderr.strip() else ""}


def startup_ctrl_c(d: Path, trials: int, rng: random.Random) -> dict:
    """`record --device auto` given one Ctrl-C at a random moment of its first 2 s (loading
    CUDA, NVML and the engine; the first regions), `trials` times: every run must exit as
    Ctrl-C does (130, or -2 before Python's handler), with no traceback. A press an import
    swallows lets the recording run on and exit 0."""
    d.mkdir(parents=True, exist_ok=True)
    exits: dict[str, int] = {}
    bad = []
    for k in range(trials):
        out = d / f"s{k}.parquet"
        p = subprocess.Popen([sys.executable, "-m", "gpuwatch.record", "--device", "auto",
                              "--gap", "5", "--iters", "3000", "--quiet", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        at = rng.uniform(0.1, 2.0)
        time.sleep(at)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        exits[str(p.returncode)] = exits.get(str(p.returncode), 0) + 1
        if p.returncode not in (130, -2) or "Traceback" in err:
            bad.append({"at_s": round(at, 3), "exit": p.returncode, "stderr": err[-300:]})
    return {"trials": trials, "exits": exits, "bad": bad}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--startup", type=int, default=20, help="start-up Ctrl-C trials")
    args = ap.parse_args()
    rng = random.Random(30)
    results = {}
    for k in range(3):
        results[f"two_ctrl_c_{k}"] = run_and_signal(
            args.out / f"two{k}", [(signal.SIGINT, 0.0), (signal.SIGINT, rng.uniform(0.01, 0.1))])
    results["four_ctrl_c"] = run_and_signal(args.out / "four", [(signal.SIGINT, 0.003)] * 4)
    results["sigterm"] = run_and_signal(args.out / "term", [(signal.SIGTERM, 0.0)])
    results["sighup"] = run_and_signal(args.out / "hup", [(signal.SIGHUP, 0.0)])
    results["os_exit_0"] = session_end(args.out / "exit0", "os._exit(0)")
    results["os_exit_4"] = session_end(args.out / "exit4", "os._exit(4)")
    results["never_closed"] = session_end(args.out / "open", "")
    # never closed, ended by Ctrl-C (dies by SIGINT: -2) and by SIGTERM (143), both interrupted
    results["never_closed_ctrl_c"] = session_end(args.out / "open_int", "raise KeyboardInterrupt")
    results["never_closed_sigterm"] = session_end(args.out / "open_term",
                                                  "os.kill(os.getpid(), 15)")
    results["startup_ctrl_c"] = startup_ctrl_c(args.out / "startup", args.startup, rng)
    for name, r in results.items():
        print(f"{name:16s} {json.dumps(r)}")
    (args.out / "faults.json").write_text(json.dumps(results, indent=1))
    for d in args.out.glob("*/"):  # (keep the results, not the traces)
        for f in d.glob("*.parquet"):
            f.unlink()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
