# Sourced by the benchmarks/h100_*.sh scripts on the GPU machine, from the repository root:
# install gpuwatch offline and the cupti-python wheels carried in .whl (see DEVICE.md).
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    .whl/cupti_python-*.whl .whl/pyelftools-*.whl 2>/dev/null || exit 1
export PYTHONPATH=/tmp/site

# run_overhead DIR MODE PAIRS GAP_PAIRS TIMEOUT_S: benchmarks/run_overhead.py under gpuwatch run
# (MODE calls, nvtx or kernels), its summary and the trace's region metadata in DIR.
run_overhead() {
    local d=$1 mode=$2 opt=()
    mkdir -p "$d"
    case "$mode" in nvtx|kernels) opt=(--regions "$mode") ;; esac  # (calls, aa: the default)
    timeout "$5" python3 -m gpuwatch run -q "${opt[@]}" -o "$d/run.parquet" \
        benchmarks/run_overhead.py "$d" "$3" "$mode" "$4" 2> "$d/run_stderr.txt"
    python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
    python3 -c "import gpuwatch, json; t = gpuwatch.load('$d/run.parquet'); print(json.dumps({k: t.meta.get(k) for k in ('regions', 'kernel_trace')}, default=str))" > "$d/meta.json" 2>&1
    rm -f "$d/run.parquet"
}
