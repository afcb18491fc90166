import time, tempfile, statistics, torch, gpuwatch
from gpuwatch.region import RegionTimer
a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
learn = RegionTimer.learn_streams
tmp = tempfile.mkdtemp(); res = {"learn at start": [], "learn at first region": []}
with gpuwatch.session(out=f"{tmp}/w.parquet") as s: s.infer(lambda: a @ a)
for i in range(30):
    arm = "learn at start" if i % 2 else "learn at first region"
    RegionTimer.learn_streams = learn if i % 2 else (lambda self: None)
    t0 = time.perf_counter()
    with gpuwatch.session(out=f"{tmp}/s{i}.parquet") as s:
        t1 = time.perf_counter(); s.infer(lambda: a @ a); torch.cuda.synchronize(); t2 = time.perf_counter()
    res[arm].append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
for k, v in res.items():
    q = statistics.quantiles([x[0] for x in v], n=4); print(k, "enter ms p50 %.0f IQR %.0f..%.0f" % (q[1], q[0], q[2]), "first call->result ms p50 %.2f" % statistics.median(x[1] for x in v))
