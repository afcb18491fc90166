"""How the host waits for the GPU: blocking sync against spin. The same model, run by gpuwatch's
torch engine (`s.engine("torch:...")`, each inference followed by `engine.synchronize()`, which
records when the host learnt the result), in a CUDA context whose scheduling flag the program set
with cuda-python before anything created the context:

    python sched_flags.py --out spin.parquet --sched spin          # CU_CTX_SCHED_SPIN
    python sched_flags.py --out block.parquet --sched blocking     # CU_CTX_SCHED_BLOCKING_SYNC
    python sched_flags.py --out both.parquet --sched switch        # both in one process: the
        # context starts as spin; cuCtxSetFlags switches it between conditions

Each gap in --gaps (ms) runs --seconds-per seconds per schedule; conditions are named
`spin gap=0ms`, `blocking gap=5ms`, .... The truth for each condition (the flag, read back from
the driver with cuCtxGetFlags) is printed as `cause sched=... start_ns=... end_ns=...
flags=0x..`, with the host thread's CPU time over wall time inside infer + synchronize (spin
keeps the waiting thread on the CPU: near 1; blocking sync lets it sleep: well under 1 when the
GPU part is long). --latency-log writes the user's own per-inference latency (infer + synchronize).

With GPUWATCH_DEVICE=standin (a dry run with no GPU) no flag is set and a pure-Python stand-in
replaces the engine.
"""
import argparse
import os
import time

import gpuwatch

STANDIN = os.environ.get("GPUWATCH_DEVICE", "") == "standin"
SPIN, BLOCKING = 0x1, 0x4  # CU_CTX_SCHED_SPIN, CU_CTX_SCHED_BLOCKING_SYNC


def _ok(result):
    err, *rest = result
    if int(getattr(err, "value", err)) != 0:
        raise RuntimeError(f"CUDA driver call failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def set_primary_flags(flag):
    """Before torch or gpuwatch creates the primary context: its scheduling flag."""
    from cuda.bindings import driver as cu

    _ok(cu.cuInit(0))
    dev = _ok(cu.cuDeviceGet(0))
    _ok(cu.cuDevicePrimaryCtxSetFlags(dev, flag))
    flags, active = _ok(cu.cuDevicePrimaryCtxGetState(dev))
    return int(flags), bool(active)


def current_flags():
    if STANDIN:
        return -1
    from cuda.bindings import driver as cu

    return int(_ok(cu.cuCtxGetFlags()))


def switch_flags(flag):
    """Change the scheduling flag of the (current, primary) context while it is alive."""
    from cuda.bindings import driver as cu

    flags = current_flags()
    new = (flags & ~0x7) | flag
    try:
        _ok(cu.cuCtxSetFlags(new))
        how = "cuCtxSetFlags"
    except Exception as e:  # an older driver: the primary context's flags instead
        _ok(cu.cuDevicePrimaryCtxSetFlags(_ok(cu.cuDeviceGet(0)), new))
        how = f"cuDevicePrimaryCtxSetFlags (cuCtxSetFlags: {e})"
    return how


class _StandInEngine:  # the dry run's engine: host time only
    def infer(self):
        t = time.perf_counter_ns() + 300_000
        while time.perf_counter_ns() < t:
            pass

    def synchronize(self):
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--sched", choices=("spin", "blocking", "switch"), required=True)
    p.add_argument("--model", default="torch:gpuwatch.bindings.torch:convnet,size=1280x720")
    p.add_argument("--eager", action="store_true", help="no CUDA graph (default: one graph "
                   "launch per inference, so the host waits for most of it)")
    p.add_argument("--gaps", default="0,5")
    p.add_argument("--seconds-per", type=float, default=3.0)
    p.add_argument("--sample-hz", type=float, default=200.0)
    p.add_argument("--latency-log", default=None)
    args = p.parse_args()
    gaps = [float(g) for g in args.gaps.split(",")]
    scheds = ["spin", "blocking"] if args.sched == "switch" else [args.sched]

    if not STANDIN:
        flags, active = set_primary_flags(BLOCKING if args.sched == "blocking" else SPIN)
        print(f"primary context flags set to 0x{flags:x} (active before: {active})", flush=True)

    log = []
    with gpuwatch.session(out=args.out, sample_hz=args.sample_hz) as s:
        if STANDIN:
            eng = gpuwatch.timed(_StandInEngine())
        else:
            eng = s.engine(args.model, cuda_graph=not args.eager)
        s.warmup = True
        for _ in range(100):
            eng.infer()
            eng.synchronize()
        s.warmup = False
        print(f"serving start_ns={time.time_ns()} context flags=0x{current_flags():x}",
              flush=True)
        for gap in gaps:
            for sched in scheds:
                how = ""
                if args.sched == "switch" and not STANDIN:
                    how = " via " + switch_flags(BLOCKING if sched == "blocking" else SPIN)
                name = f"{sched} gap={gap:g}ms"
                s.set_condition(name, gap_ms=gap)
                for _ in range(20):  # settle after the switch
                    eng.infer()
                    eng.synchronize()
                start, n, cpu, wall = time.time_ns(), 0, 0, 0
                end = time.monotonic() + args.seconds_per
                while time.monotonic() < end:
                    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                    eng.infer()
                    eng.synchronize()
                    t1 = time.perf_counter_ns()
                    cpu += time.thread_time_ns() - c0
                    wall += t1 - t0
                    log.append((time.time_ns(), (t1 - t0) / 1e6, name))
                    n += 1
                    if gap > 0:
                        time.sleep(gap / 1e3)
                ms = sorted(v for _, v, c in log if c == name)
                print(f"cause sched={sched} start_ns={start} end_ns={time.time_ns()} "
                      f"condition={name!r} flags=0x{current_flags():x}{how} n={n} "
                      f"p50={ms[len(ms) // 2]:.3f}ms p99={ms[int(len(ms) * 0.99)]:.3f}ms "
                      f"thread_cpu/wall={cpu / wall:.2f}", flush=True)
        print(f"stopped end_ns={time.time_ns()}", flush=True)

    if args.latency_log:
        with open(args.latency_log, "w") as f:
            f.write("end_ns,ms,condition\n")
            f.writelines(f"{t},{v:.4f},{c}\n" for t, v, c in log)


if __name__ == "__main__":
    main()
