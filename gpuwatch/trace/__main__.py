"""`python -m gpuwatch.trace PARTIAL_DIR DEST [MAY_REPLACE]`: a big recording's final merge, in a
helper process of its own (trace.finish._merge_in_helper starts it)."""

import sys

from .finish import _helper_main

if __name__ == "__main__":
    if len(sys.argv) < 3:  # (someone who found it by hand: it is not a command)
        print("python -m gpuwatch.trace is gpuwatch's own merge helper, started by a recording; "
              "to finish a recording left behind, run: python -m gpuwatch.finish OUT.partial",
              file=sys.stderr)
        raise SystemExit(2)
    _helper_main(sys.argv[1:])
