# Marks each inference with an NVTX range (the nvtx package), gaps alternating 2 and 20 ms.
import sys
import time

import nvtx

for i in range(40):
    with nvtx.annotate("infer"):
        time.sleep(0.0005)
    nvtx.push_range("post")  # (not nested in infer: a region of its own)
    nvtx.pop_range()
    time.sleep(0.02 if i % 2 else 0.002)
print("nvtx done", sys.argv[1:])
