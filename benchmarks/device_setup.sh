# Sourced by the benchmarks/h100_*.sh scripts on the GPU machine, from the repository root:
# install gpuwatch offline and the cupti-python wheels carried in .whl (see DEVICE.md).
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    .whl/cupti_python-*.whl .whl/pyelftools-*.whl 2>/dev/null || exit 1
export PYTHONPATH=/tmp/site
