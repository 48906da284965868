#!/usr/bin/env bash
# Issue 5 on one GPU: bwe variants (SNR-hinge weight) and the train-method x test-method matrix,
# all trained side by side for a time box on every training clip, then scored on the validation
# clips (to choose); the weights come back to score the test speakers (to report) with every input method.
#
#   python benchmarks/prepare_speech.py
#   python benchmarks/pack_subset.py data/speech .gpu/full --train-mb 100 --val-mb 3 --data ../shared/data
#   bash benchmarks/gpu_sweep.sh 7          # on the GPU machine: 7 minutes of training, then scoring
#
# The upload limit (64 MiB a call) can split .gpu/full over two calls (the second finds the first's
# files still there); clips whose files did not arrive are left out of the splits, and said so.
# Env: DEVICE (cuda), DATA (.gpu/full), RUNS (runs/sweep), OUT (logs, scores, weights), VARIANTS
# (the SNR-hinge weights, "2 4 8"), SWEEP (other runs instead: "name:--set k=v ...;name2:..."),
# BWE_DECAY_STEPS (7000), RESUME (set: continue the runs in RUNS, on a machine still warm from the last call), VAL_TIMEOUT (150 s of validation scoring there; 0: none, score where the
# weights come back); SIZE=tiny MAX_FILES=2 for a dry run on a CPU.
set -u
minutes=$1
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.gpu/full}
RUNS=${RUNS:-runs/sweep}
OUT=${OUT:-$RUNS/out}
mkdir -p "$OUT" "$RUNS"
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

# splits of what arrived, and the validation clips as files for bench_quality
python3 - "$DATA" <<'EOF' || exit 1
import sys
from pathlib import Path
import pandas as pd
root = Path(sys.argv[1])
for name in ("train", "val"):
    path = root / "splits" / f"{name}.csv"
    rows = pd.read_csv(path, dtype={"talk": str, "clip_id": str})
    here = rows[[(root / p).is_file() for p in rows.hr_path]]
    print(f"{name}: {len(here)} of {len(rows)} clips here, {here.seconds.sum() / 60:.1f} min, {here.talk.nunique()} talks/speakers")
    here.to_csv(path, index=False)
    if name == "val":
        for p in here.hr_path:
            link = root / "valfiles" / p.split("/")[0] / Path(p).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((root / p).resolve())
EOF

if [ "${SIZE:-full}" = tiny ]; then
    size="--set model.bwe.hidden=16 --set model.bwe.blocks=1"; batch=4; workers=0
else
    size=""; batch=16; workers=2
fi
all='["soxr","decimate","butterworth","subsample"]'
common="--quiet --set data.output_dir=$DATA --set training.device=$DEVICE --set training.max_minutes=$minutes
 --set training.num_workers=$workers --set training.epochs=1000 --set training.batch_size=$batch $size --set model.name=bwe
 --set training.gain_db=[-12,0] --set training.learning_rate=1e-3 --set training.lr_decay_steps=${BWE_DECAY_STEPS:-7000}"
train() {  # name, then settings
    local name=$1
    shift
    python3 -m audio_superres.pipeline.cli train ${RESUME:+--resume} $common --set training.run_dir=$RUNS/$name "$@" > "$OUT/train_$name.log" 2>&1 &
}
if [ -n "${SWEEP:-}" ]; then
    # SWEEP="name1:--set a=1 --set b=2;name2:..." trains these instead, every method each
    IFS=';' read -ra specs <<< "$SWEEP"
    for spec in "${specs[@]}"; do
        train "${spec%%:*}" --set training.lowres_methods=$all ${spec#*:}
    done
else
    # every variant on every method (what ships), by SNR-hinge weight; then one method each (the matrix)
    for w in ${VARIANTS:-2 4 8}; do
        train all_w$w --set model.bwe.snr_weight=$w --set training.lowres_methods=$all
    done
    for m in soxr decimate butterworth subsample; do
        train only_$m --set training.lowres_methods="[\"$m\"]"
    done
fi
wait
for log in "$OUT"/train_*.log; do echo "$log: $(tail -n 1 "$log")"; done

# the weights alone (no optimiser state), small enough to bring back: the SNR-weight variants (one of
# them ships) in float32, the one-method models (for the matrix) in float16; a model too big to come
# back (over 16 MiB: the research anchors at the paper's size) stays in $RUNS, to be scored there
for d in "$RUNS"/*/; do
    n=$(basename "$d"); [ -f "$d/best.pt" ] || continue
    half=""; case $n in only_*) half=--half;; esac
    python3 benchmarks/export_weights.py "$d/best.pt" "$OUT/${n}_best.pt" $half
    [ "$(stat -c %s "$OUT/${n}_best.pt")" -le $((16 << 20)) ] || mv "$OUT/${n}_best.pt" "$d/weights.pt"
done
models=$(for d in "$RUNS"/*/; do n=$(basename "$d"); [ -f "$d/best.pt" ] && printf -- "--model %s=%s " "$n" "$d/best.pt"; done)
[ "${VAL_TIMEOUT:-150}" = 0 ] || timeout ${VAL_TIMEOUT:-150} python3 benchmarks/bench_quality.py --test-dir "$DATA/valfiles" --device "$DEVICE" $models --no-rtf \
    ${MAX_FILES:+--max-files $MAX_FILES} --out "$OUT/val" > "$OUT/val.txt" 2>&1
[ -f "$OUT/val.txt" ] && tail -n 14 "$OUT/val.txt"
# TEST=1: the test speakers too, every input method (slow: the scoring runs on one CPU core; the
# matrix can be scored on any machine from the weights brought back)
if [ -n "${TEST:-}" ]; then
    python3 benchmarks/bench_quality.py --test-dir "$DATA/test" --device "$DEVICE" $models --no-rtf ${MAX_FILES:+--max-files $MAX_FILES} \
        --methods soxr,decimate,butterworth,subsample --out "$OUT/test" > "$OUT/test.txt" 2>&1
    tail -n 40 "$OUT/test.txt"
fi
# everything else in one file (the tool brings back at most 8)
for d in "$RUNS"/*/; do [ -f "$d/history.csv" ] && cp "$d/history.csv" "$OUT/history_$(basename "$d").csv"; done
(cd "$OUT" && tar czf /tmp/sweep_logs.tgz --exclude='*.pt' . && find . -mindepth 1 ! -name '*.pt' -exec rm -rf {} + && mv /tmp/sweep_logs.tgz logs.tgz)
ls -la "$OUT"
