#!/usr/bin/env bash
# A/B of the timed path, old (the commit before the lean fast path, in abtest/old) vs new (the
# working tree), in one device call, alternating:  ORDER="new old new old" OUT=... bash abtest/run.sh
# The old tree is imported from PYTHONPATH with the editable install removed (its import hook
# would win otherwise); the new one is installed editable.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
cp bindings/_native*.so abtest/old/gpuwatch/bindings/
installed=new
i=0
for v in ${ORDER:-new old}; do
  i=$((i + 1))
  if [ "$v" = old ] && [ "$installed" = new ]; then
    python3 -m pip uninstall -y -q gpuwatch >/dev/null 2>&1; installed=old
  elif [ "$v" = new ] && [ "$installed" = old ]; then
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1
    installed=new
  fi
  if [ "$v" = old ]; then export PYTHONPATH="$PWD/abtest/old"; else unset PYTHONPATH; fi
  python3 -c "import gpuwatch; print('$v$i', gpuwatch.__file__)"
  timeout 200 python3 benchmarks/user_overhead.py --out "$OUT/$v$i" --pairs "${PAIRS:-300}" \
      --cases "eager, gap 20" > "$OUT/$v$i.txt" 2>&1
  rm -f "$OUT/$v$i"/*.parquet
  python3 -c "
import pandas as pd; d=pd.read_csv('$OUT/$v$i/user_overhead_summary.csv')
print('$v$i', d[['pairs','gpu_ms_ratio_p50','gpu_ms_ratio_iqr','wall_ratio_p50','wall_ratio_iqr','wall_bare_ms','wall_gpuwatch_ms']].to_string(index=False, header=False))"
done
