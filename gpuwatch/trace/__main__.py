"""`python -m gpuwatch.trace PARTIAL_DIR DEST [MAY_REPLACE]`: a big recording's final merge, in a
helper process of its own (trace.finish._merge_in_helper starts it)."""

import sys

from .finish import _helper_main

if __name__ == "__main__":
    _helper_main(sys.argv[1:])
