# A plain loop with sleeps and no markers: nothing for `gpuwatch run` to find.
import time

for i in range(5):
    time.sleep(0.001)
print("plain done")
