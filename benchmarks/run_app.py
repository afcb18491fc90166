"""An ordinary PyTorch program, written with no thought of gpuwatch: a small fp16 conv net on
one frame, 300 inferences back to back, then 300 with a 20 ms `time.sleep` after each (a video
pipeline's idle gaps). Each inference waits for its result (torch.cuda.synchronize), as the
field report's program did. `make()` builds the same model for `record --torch`.

    python benchmarks/run_app.py                         # the program itself
    python -m gpuwatch run benchmarks/run_app.py         # profiled, unmodified
    python -m gpuwatch.record --torch benchmarks.run_app:make --gap 0,20 --iters 300
    python benchmarks/run_app.py 300 0.02 nvtx           # each inference an NVTX range
"""

import sys
import time

import torch
from torch import nn


def make():
    layers, c = [], 3
    for out in (16, 32, 32, 64, 64, 64, 64, 64):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
        c = out
    net = nn.Sequential(*layers).cuda().half().eval()
    x = torch.randn(1, 3, 448, 768, device="cuda", dtype=torch.half)
    return net, x


def main(n: int = 300, gap_s: float = 0.02, marks: str = "") -> None:
    net, x = make()
    mark = torch.cuda.nvtx.range if marks == "nvtx" else None
    with torch.inference_mode():
        for _ in range(20):  # warm-up
            net(x)
        torch.cuda.synchronize()
        for gap in (0.0, gap_s):
            for _ in range(n):
                if mark is not None:
                    with mark("infer"):
                        net(x)
                else:
                    net(x)
                torch.cuda.synchronize()
                if gap:
                    time.sleep(gap)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]) if a else 300, float(a[1]) if len(a) > 1 else 0.02, a[2] if len(a) > 2 else "")
