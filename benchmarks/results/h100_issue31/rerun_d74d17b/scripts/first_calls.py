"""Host time of the first s.infer calls of the process's first and second sessions (torch)."""
import time, tempfile, torch, gpuwatch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
fn = lambda x: x @ x
tmp = tempfile.mkdtemp()
with torch.inference_mode():
    for _ in range(20): fn(a)
    torch.cuda.synchronize()
    for k in range(3):
        t0 = time.perf_counter()
        with gpuwatch.session(out=f"{tmp}/a{k}.parquet") as s:
            print("session", k, "enter ms %.0f" % ((time.perf_counter() - t0) * 1e3), "torch read", s._timer._torch_path)
            ts = []
            for i in range(40):
                t0 = time.perf_counter(); s.infer(fn, a); ts.append((time.perf_counter() - t0) * 1e6)
                torch.cuda.synchronize()
        g = s.trace.measured()["gpu_ms"].round(3).tolist()
        print("session", k, "host us", [round(t) for t in ts])
        print("session", k, "gpu ms", g[:12], "... p50", sorted(g)[20])
