import sys

import nvtx

for _ in range(3):
    with nvtx.annotate("step"):
        pass
print("module argv:", sys.argv[1:], __name__)
