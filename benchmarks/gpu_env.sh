# Sourced by the GPU recipes (gpu_train.sh, gpu_sweep.sh): this repo on PYTHONPATH, unbuffered output,
# and the wheels carried in .whl (soundfile, soxr, pydantic, ...) installed first when present: the
# GPU machine's python has torch but not those.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ] && ! python3 -c "import soundfile, soxr, pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
