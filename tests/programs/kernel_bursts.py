# GPU work no hook sees (a library gpuwatch does not know launching kernels), with idle gaps:
# `gpuwatch run --regions kernels` finds the inferences as bursts of kernels. On the simulated
# GPU the work is a simulated engine's raw launches, and its idle time passes on the simulated
# GPU's clock (what time.sleep does to a real GPU). With the argument "nosync" it never waits
# for its results.
import sys

from gpuwatch import recorder

s = recorder.active()
backend = s._backend
model = backend.engine("builtin:small", backend.runtime.stream())
for i in range(40):
    model.infer()
    if "nosync" not in sys.argv:
        model.synchronize()
    backend.clock.sleep_ns(2_000_000 if i % 2 else 30_000_000)  # 2 ms, then 30 ms
print("bursts done", *sys.argv[1:])
