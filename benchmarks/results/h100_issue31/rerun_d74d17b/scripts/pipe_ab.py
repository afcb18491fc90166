"""Pipelined program: session vs bare, with and without a warm-up after the session's start."""
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
tmp = tempfile.mkdtemp()
res = {"unwarmed": [], "warmed": []}
with torch.inference_mode():
    pipeline(50)
    for i in range(24):
        warm = i % 2 == 1
        with gpuwatch.session(out=f"{tmp}/p{i}.parquet") as s:
            if warm: pipeline(20)
            w = pipeline(100, s)
        if warm: pipeline(20)
        b = pipeline(100)
        res["warmed" if warm else "unwarmed"].append(w / b)
for k, v in res.items():
    q = np.percentile(v, [25, 50, 75])
    print(k, "ratio p50 %.4f IQR %.4f..%.4f" % (q[1], q[0], q[2]), [round(x, 3) for x in v])
json.dump(res, open(sys.argv[1], "w"), indent=1)
