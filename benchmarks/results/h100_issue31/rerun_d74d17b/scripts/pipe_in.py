"""Pipelined program: (a) inside one session, s.infer against the bare call, alternating;
(b) a session per arm against a bare arm that also follows 0.5 s idle."""
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
def q(v):
    v = np.asarray(v); p = np.percentile(v, [25, 50, 75]); return {"p50": p[1], "iqr": [p[0], p[2]], "ratios": v.round(4).tolist()}
tmp = tempfile.mkdtemp(); out = {}
with torch.inference_mode():
    pipeline(50)
    with gpuwatch.session(out=f"{tmp}/one.parquet") as s:
        pipeline(50)
        r = []
        for i in range(16):
            if i % 2: b = pipeline(100); w = pipeline(100, s)
            else: w = pipeline(100, s); b = pipeline(100)
            r.append(w / b)
    out["one session, alternating"] = q(r)
    r = []
    for i in range(10):
        with gpuwatch.session(out=f"{tmp}/s{i}.parquet") as s:
            pipeline(20); w = pipeline(100, s)
        time.sleep(0.5); pipeline(20); b = pipeline(100)
        r.append(w / b)
    out["session per arm, bare after 0.5 s idle"] = q(r[1:])
for k, v in out.items():
    print(f"{k}: ratio p50 {v['p50']:.4f} IQR {v['iqr'][0]:.4f}..{v['iqr'][1]:.4f} {v['ratios']}")
json.dump(out, open(sys.argv[1], "w"), indent=1)
