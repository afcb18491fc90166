# Runs until it is stopped: NVTX-marked inferences every 5 ms.
import sys
import time

import nvtx

print("started", flush=True)
while True:
    with nvtx.annotate("infer"):
        time.sleep(0.0002)
    time.sleep(0.005)
