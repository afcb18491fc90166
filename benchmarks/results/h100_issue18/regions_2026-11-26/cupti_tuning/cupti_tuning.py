"""How the kernel tracer's record conversion disturbs a launch-bound program: `gpuwatch run
--regions kernels` of benchmarks/run_app.py with the tracer's batching constants set here
(bindings/cupti.py: CHUNK records converted per GIL hold, YIELD_S handed back between chunks,
FALLBACK_FLUSH_NS between flushes). Prints, per setting, the bursts found, the GPU idle gaps
inside the back-to-back phase, and the tracer's own host cost.

    python benchmarks/cupti_tuning.py OUT_DIR CHUNK YIELD_US FLUSH_MS [N [NATIVE_FLUSH]]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    out, chunk, yield_us, flush_ms = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
        float(sys.argv[4])
    n = sys.argv[5] if len(sys.argv) > 5 else "100"
    native = sys.argv[6] != "0" if len(sys.argv) > 6 else True
    from gpuwatch.bindings import cupti
    from gpuwatch.cli import entry as cli

    cupti.CHUNK, cupti.YIELD_S, cupti.NATIVE_FLUSH = chunk, yield_us / 1e6, native
    cupti.FALLBACK_FLUSH_NS = int(flush_ms * 1e6)
    trace = out / f"kernels_c{chunk}_y{yield_us:g}_f{flush_ms:g}_n{int(native)}.parquet"
    code = cli(["run", "-q", "--regions", "kernels", "-f", "-o", str(trace),
                "benchmarks/run_app.py", n, "0.02"])
    import numpy as np

    import gpuwatch

    tr = gpuwatch.load(trace)
    k = tr.kernels[tr.kernels["kind"] != "cuda_event"].sort_values("start_ns")
    s = k["start_ns"].to_numpy(np.int64)
    e = np.maximum.accumulate(k["end_ns"].to_numpy(np.int64))
    idle = (s[1:] - e[:-1]) / 1e6
    inf = tr.inferences
    res = {"chunk": chunk, "yield_us": yield_us, "flush_ms": flush_ms,
           "native_flush": tr.meta["kernel_trace"].get("native_flush"), "exit": code,
           "bursts": len(inf), "bursts_after_gaps_over_15ms": int((inf["gap_ms"] > 15).sum()),
           "idle_1_5ms": int(((idle > 1) & (idle <= 5)).sum()),
           "idle_5_15ms": int(((idle > 5) & (idle <= 15)).sum()),
           "gap_burst_p50_ms": float(inf[inf["gap_ms"] > 15]["gpu_ms"].median()),
           "host_cost": tr.meta["kernel_trace"].get("host_cost")}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
