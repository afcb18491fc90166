"""A detection post-processing + scoring service, as its user wrote it. Each request turns the
detector's raw boxes into Box objects and their features (pre-processing, timed as
`with s.span("preprocess")`), then runs a small fp16 MLP on the features and copies the scores to
the host (`s.infer(lambda: ...)`, ending with `.cpu()`: the host has the result).

From --cycles-at seconds into the measured loop, for --cycles-seconds, the same pre-processing
links every box back to its frame (frame.boxes holds the boxes, box.frame the frame): reference
cycles, so each request's boxes are no longer freed by reference counting and the cyclic garbage
collector runs several times per request, inside pre-processing, with now and then a full
collection over the service's long-lived catalogue. Outside that window the boxes are the same
but keep no reference to the frame, and are freed as they go.

    python gc_preprocess.py --out gc.parquet --seconds 20 --cycles-at 6 --cycles-seconds 8 \
        --gc-log gc.csv

Prints "serving" when the measured loop starts, the window as `cause gc_cycles start_ns=... /
end_ns=...`, and (--gc-log) every collection the interpreter ran during the session, from
gc.callbacks (CSV: start_ns, end_ns, generation, collected). --latency-log: the user's own
per-request latency (epoch ns at the result, ms).
"""
import argparse
import gc
import random
import time

import torch

from userclock import report  # (the benchmark's own clock, beside this file)

import gpuwatch


class Frame:
    def __init__(self, frame_id):
        self.id = frame_id
        self.boxes = []


class Box:
    def __init__(self, raw, frame):
        self.x, self.y, self.w, self.h, self.score = raw
        self.frame = frame  # the cycle, when the frame also holds the box
        if frame is not None:
            frame.boxes.append(self)

    def features(self):
        return (self.x + self.w / 2, self.y + self.h / 2, self.w * self.h, self.score)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--cycles-at", type=float, default=6.0)
    p.add_argument("--cycles-seconds", type=float, default=8.0)
    p.add_argument("--boxes", type=int, default=2000)
    p.add_argument("--catalogue", type=int, default=300_000,
                   help="long-lived objects the service keeps (what a full collection walks)")
    p.add_argument("--gap-ms", type=float, default=0.0)
    p.add_argument("--sample-hz", type=float, default=200.0)
    p.add_argument("--gc-log", default=None)
    p.add_argument("--latency-log", default=None)
    args = p.parse_args()

    rng = random.Random(0)
    raw = [(rng.random() * 768, rng.random() * 448, rng.random() * 64, rng.random() * 64,
            rng.random()) for _ in range(args.boxes)]
    catalogue = {i: {"label": f"class{i % 1000}", "attrs": [i, i % 7]}
                 for i in range(args.catalogue)}
    n_in = 4 * args.boxes
    model = torch.nn.Sequential(torch.nn.Linear(n_in, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10)).cuda().half().eval()

    collections, open_gc = [], {}

    def on_gc(phase, info):
        if phase == "start":
            open_gc["t"] = time.time_ns()
        else:
            collections.append((open_gc.pop("t", 0), time.time_ns(), info["generation"],
                                info["collected"]))

    def request(s, frame_id, cyclic):
        with s.span("preprocess"):
            frame = Frame(frame_id)
            feats = []
            for r in raw:
                feats.extend(Box(r, frame if cyclic else None).features())
            x = torch.tensor(feats).view(1, n_in).to("cuda").half()
        scores = s.infer(lambda: model(x).float().cpu())
        return scores

    log = []
    with torch.inference_mode(), gpuwatch.session(out=args.out, sample_hz=args.sample_hz) as s:
        s.set_condition(f"gap={args.gap_ms:g}ms", gap_ms=args.gap_ms)
        s.warmup = True
        for i in range(30):
            request(s, i, False)
        s.warmup = False
        gc.callbacks.append(on_gc)
        t_start = time.monotonic()
        print(f"serving start_ns={time.time_ns()} catalogue={len(catalogue)} "
              f"gc_threshold={gc.get_threshold()}", flush=True)
        w0, w1 = t_start + args.cycles_at, t_start + args.cycles_at + args.cycles_seconds
        end, i, state = t_start + args.seconds, 0, "before"
        while time.monotonic() < end:
            now = time.monotonic()
            cyclic = w0 <= now < w1
            if cyclic and state == "before":
                state = "during"
                print(f"cause gc_cycles start_ns={time.time_ns()} boxes={args.boxes}", flush=True)
            elif not cyclic and state == "during":
                state = "after"
                print(f"cause gc_cycles end_ns={time.time_ns()}", flush=True)
            t0 = time.perf_counter_ns()
            request(s, i, cyclic)
            log.append((time.time_ns(), (time.perf_counter_ns() - t0) / 1e6))
            i += 1
            if args.gap_ms > 0:
                time.sleep(args.gap_ms / 1e3)
        if state == "during":
            print(f"cause gc_cycles end_ns={time.time_ns()}", flush=True)
        gc.callbacks.remove(on_gc)
        print(f"stopped end_ns={time.time_ns()}", flush=True)

    gens = [sum(1 for c in collections if c[2] == g) for g in range(3)]
    report(log, args.latency_log)
    print(f"collections by generation {gens}, longest "
          f"{max((c[1] - c[0] for c in collections), default=0) / 1e6:.2f} ms")
    if args.gc_log:
        with open(args.gc_log, "w") as f:
            f.write("start_ns,end_ns,generation,collected\n")
            f.writelines(f"{a},{b},{g},{n}\n" for a, b, g, n in collections)


if __name__ == "__main__":
    main()
