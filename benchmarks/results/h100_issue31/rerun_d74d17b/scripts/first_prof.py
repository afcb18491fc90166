import cProfile, pstats, time, tempfile, torch, gpuwatch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
fn = lambda x: x @ x
for _ in range(5): fn(a)
torch.cuda.synchronize()
with gpuwatch.session(out=tempfile.mkdtemp() + "/a.parquet") as s:
    pr = cProfile.Profile(); pr.enable(); t0 = time.perf_counter()
    s.infer(fn, a)
    dt = time.perf_counter() - t0; pr.disable()
    print("first s.infer %.1f ms" % (dt * 1e3))
    pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
