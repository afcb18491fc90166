# Ranges the program leaves open: two nested at the end (how = "exit"), or one it raises inside
# (how = "raise"), as push/pop calls (no context manager to close them).
import sys

import nvtx

how = sys.argv[1]
for i in range(5):
    nvtx.push_range("step")
    nvtx.pop_range()
nvtx.push_range("outer")
nvtx.push_range("inner")
if how == "raise":
    raise RuntimeError("inside a range")
