#!/usr/bin/env bash
# The GPU recipe behind the figures in the README: train bwe, audiounet and tfnet side by side on
# one GPU for a time box, then (phase "resume") go on and score them on the carried test subset.
#
#   python benchmarks/prepare_speech.py
#   python benchmarks/pack_subset.py data/speech .gpu/speech --train-mb 38 --val-mb 3 --data ../shared/data
#   bash benchmarks/gpu_train.sh start 8      # on the GPU machine: 8 minutes of training
#   bash benchmarks/gpu_train.sh resume 6     # then 6 more, and bench_quality on .gpu/speech/test
#   bash benchmarks/gpu_train.sh once 4.5     # or: train 4.5 minutes from scratch, then score and time
#
# Env: DEVICE (cuda), RUNS (runs/gpu), OUT (where logs and results go; the device tool's $OUT),
# SIZE=tiny for a dry run on a CPU. gpu_env.sh installs the wheels carried in .whl first (the GPU
# machine's python has torch but not soundfile, soxr, pydantic).
set -u
phase=$1
minutes=$2
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-runs/gpu}
OUT=${OUT:-$RUNS/out}
mkdir -p "$OUT" "$RUNS"
source "$(dirname "$0")/gpu_env.sh"
if [ "${SIZE:-paper}" = tiny ]; then
    unet="--set model.width=4 --set model.depth=2"; bwe="--set model.bwe.hidden=16 --set model.bwe.blocks=1"; batch=4; workers=0
else
    unet="--set model.width=128 --set model.depth=4"; bwe=""; batch=16; workers=4
fi
resume=""
[ "$phase" = resume ] && resume=--resume
common="--quiet --set data.output_dir=.gpu/speech --set training.device=$DEVICE --set training.max_minutes=$minutes
 --set training.num_workers=$workers --set training.epochs=1000 --set training.batch_size=$batch"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

# the research anchors, faithfully: MSE on the waveform, soxr input (made on the fly from the clips);
# ONLY=bwe trains ours alone
models="bwe=$RUNS/bwe/best.pt"
if [ -z "${ONLY:-}" ]; then
models="$models audiounet=$RUNS/audiounet/best.pt tfnet=$RUNS/tfnet/best.pt"
python3 -m audio_superres.pipeline.cli train $resume $common $unet --set model.name=audiounet --set training.lowres_methods='["soxr"]' \
    --set training.lr_decay_steps=2500 --set training.run_dir=$RUNS/audiounet > "$OUT/train_audiounet.log" 2>&1 &
python3 -m audio_superres.pipeline.cli train $resume $common $unet --set model.name=tfnet --set training.lowres_methods='["soxr"]' \
    --set training.lr_decay_steps=1500 --set training.run_dir=$RUNS/tfnet > "$OUT/train_tfnet.log" 2>&1 &
fi
# ours: every low-res method and a random gain, so that it does not learn one resampler's fingerprint
python3 -m audio_superres.pipeline.cli train $resume $common $bwe --set model.name=bwe \
    --set training.lowres_methods='["soxr","decimate","butterworth","subsample"]' --set training.gain_db='[-12,0]' \
    --set training.learning_rate=1e-3 --set training.lr_decay_steps=${BWE_DECAY_STEPS:-6000} --set training.run_dir=$RUNS/bwe > "$OUT/train_bwe.log" 2>&1 &
wait
for m in audiounet tfnet bwe; do
    tail -n 3 "$OUT/train_$m.log"
    cp "$RUNS/$m/history.csv" "$OUT/history_$m.csv" 2>/dev/null
done
# the weights and settings alone (no optimiser state): what ships, small enough to bring back
python3 benchmarks/export_weights.py "$RUNS/bwe/best.pt" "$OUT/bwe_best_weights.pt"

if [ "$phase" != start ]; then
    python3 benchmarks/bench_quality.py --test-dir .gpu/speech/test --device "$DEVICE" \
        $(for m in $models; do printf -- "--model %s " "$m"; done) ${RTF_BF16:+--bf16} \
        --rtf-seconds ${RTF_SECONDS:-600} --rtf-copies ${RTF_COPIES:-8} ${MAX_FILES:+--max-files $MAX_FILES} --out "$OUT/quality" 2>&1 | tail -n 40
    # what limits training: the loader or the step (one process each, alone on the GPU)
    for m in "audiounet $unet" "tfnet $unet" "bwe $bwe"; do
        set -- $m
        [ -n "${ONLY:-}" ] && [ "$1" != "$ONLY" ] && continue
        timeout 60 python3 benchmarks/bench_train.py --set data.output_dir=.gpu/speech --set model.name=$1 "${@:2}" \
            --set training.device=$DEVICE --set training.batch_size=$batch --set training.lowres_methods='["soxr"]' --workers 4 --steps 15 2>&1 | tail -n 4
    done
    timeout ${UPSAMPLE_BENCH_S:-60} python3 benchmarks/bench_upsample.py --device "$DEVICE" --seconds 120 --repeats 1 2>&1 | tail -n 8
fi
