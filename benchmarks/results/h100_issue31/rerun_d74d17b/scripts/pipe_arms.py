"""Pipelined program (inference N+1 enqueued before host post-processing of N): the bare loop
against sessions with parts of gpuwatch turned off, arms rotated each round, one process."""
import sys, time, tempfile, json
import numpy as np, torch, gpuwatch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
fn = lambda x: x @ x
post_s = 1.2e-3
def pipeline(n, s=None):
    t0 = time.perf_counter(); prev = None
    for _ in range(n):
        y = s.infer(fn, a) if s is not None else fn(a)
        done = torch.cuda.Event(); done.record()
        if prev is not None:
            prev.synchronize(); end = time.perf_counter() + post_s
            while time.perf_counter() < end: pass
        prev = done; del y
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)
ARMS = {"default": {}, "probe off": {"probe": False}, "sampler off": {"sampler": "off"},
        "checks off": {"check_every": 0}, "all off": {"probe": False, "sampler": "off", "check_every": 0}}
tmp = tempfile.mkdtemp()
rate = {k: [] for k in ["bare", *ARMS]}
first = None
names = list(rate)
with torch.inference_mode():
    pipeline(50)
    for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 10):
        order = names[r % len(names):] + names[:r % len(names)]
        for arm in order:
            if arm == "bare":
                pipeline(20); rate[arm].append(pipeline(100)); continue
            with gpuwatch.session(out=f"{tmp}/{arm.replace(' ', '_')}{r}.parquet", **ARMS[arm]) as s:
                pipeline(20); v = pipeline(100, s)
            if first is None: first = (arm, v); continue  # the process's first session
            rate[arm].append(v)
b = np.array(rate["bare"])
out = {"first_session": first, "bare_rate_p50": float(np.median(b)), "arms": {}}
for arm in ARMS:
    v = np.array(rate[arm]); n = min(len(v), len(b))
    ratio = v[-n:] / b[-n:]  # each round's arm over that round's bare
    q = np.percentile(ratio, [25, 50, 75])
    out["arms"][arm] = {"ratio_p50": q[1], "iqr": [q[0], q[2]], "n": int(n), "ratios": ratio.round(4).tolist()}
    print(f"{arm:12s} ratio p50 {q[1]:.4f} IQR {q[0]:.4f}..{q[2]:.4f} n={n}")
print("first session", first, "bare p50 it/s", out["bare_rate_p50"])
json.dump(out, open(sys.argv[1], "w"), indent=1)
