#!/usr/bin/env bash
# After the region engine moved to gpuwatch/regions/ (f0fac84, c40c57f): the extension builds and loads as
# gpuwatch.regions._native on the GPU machine, and the GPU tests of the engine pass on both engines.
set -uo pipefail
R="$OUT/layout_gpu"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$R/install.txt" 2>&1 || echo "install failed"
python3 setup.py build_ext --inplace > "$R/build.txt" 2>&1 || echo "build failed"
python3 -c "from gpuwatch.bindings.cuda import native_module, CudaRuntime; m = native_module(); print('native:', m); print('event calls native:', CudaRuntime(0).native_calls)" 2>&1 | tee "$R/native.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -rs tests/test_native.py tests/test_region.py tests/test_autoregions.py tests/test_gpu_run.py tests/test_gpu_user_code.py > "$R/gpu_tests.txt" 2>&1; echo "rc=$?" >> "$R/gpu_tests.txt"
tail -15 "$R/gpu_tests.txt"
