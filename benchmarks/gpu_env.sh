# Sourced by the GPU recipes (gpu_train.sh, gpu_sweep.sh): the package importable as `audio_superres`
# without installing it (links from a folder on PYTHONPATH to the repository's folders, as the
# pyproject's package-dir maps them), unbuffered output, and the wheels carried in .whl (soundfile,
# soxr, pydantic, ...) installed first when present: the GPU machine's python has torch but not those.
ns=/tmp/ns/audio_superres
mkdir -p "$ns"
for d in settings preprocessing models pipeline; do ln -sfn "$PWD/$d" "$ns/$d"; done
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/ns${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ] && ! python3 -c "import soundfile, soxr, pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
