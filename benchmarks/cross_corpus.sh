#!/usr/bin/env bash
# Issue 18's cross-corpus test on one GPU: speech-4k recipes trained with a whole corpus held out of
# training (and used alone for validation, so the best checkpoint is chosen on voices and a channel
# never trained on), beside the same recipe on every corpus; all side by side for a time box.
#
#   python benchmarks/prepare_speech.py
#   python benchmarks/pack_subset.py data/speech .gpu/speech --train-mb 30 --val-mb 3 --data ../shared/data
#   bash benchmarks/cross_corpus.sh 7        # on the GPU machine: 7 minutes of training, weights to $OUT
#   then, where ../shared/data is, each model on the full test split, per corpus:
#   python benchmarks/bench_quality.py --device cpu --no-rtf --model all=OUT/all_aug_best.pt ...
#
# Runs: all_{aug,plain} (every corpus; aug is the shipped recipe), no_ravdess_{aug,plain} and no_speechocean762_{aug,plain}
# (that corpus out of training, its validation speakers alone as the validation split; with and without
# channel augmentation). The in-corpus against cross-corpus gap of a corpus is then read on its test
# speakers: all_aug (trained on the corpus) against no_<corpus>_aug (never heard it).
# Env: DATA (.gpu/speech), RUNS (runs/cross), OUT, as gpu_sweep.sh; AUG_SCALE (1); EXTRA (settings for every
# run, e.g. "--set training.max_steps=4400" to compare runs of one length); BENCH_STEPS (30): then
# benchmarks/bench_train.py on the whole GPU, the 1-GPU training throughput (0: skip).
# FINETUNE="name:settings;name2:settings" (with INIT, a folder of the runs' weights, all_aug_best.pt and
# no_<corpus>_aug_best.pt from an earlier call): instead, continue each of those three models under each
# recipe (the augmentation as above, plus the recipe's settings), named <name>_all, <name>_no_ravdess, ...:
# a fine-tuning recipe judged as a training one is, on the corpus its starting point never heard.
set -u
minutes=$1
DATA=${DATA:-.gpu/speech}
RUNS=${RUNS:-runs/cross}
OUT=${OUT:-$RUNS/out}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"

# one data folder per held-out corpus: links to the clips, train without it, validation of it alone
python3 - "$DATA" ravdess speechocean762 <<'EOF' || exit 1
import sys
from pathlib import Path
import pandas as pd
root = Path(sys.argv[1]).resolve()
for held in sys.argv[2:]:
    out = root.parent / f"{root.name}_no_{held}"
    (out / "splits").mkdir(parents=True, exist_ok=True)
    for corpus in root.iterdir():
        if corpus.is_dir() and corpus.name != "splits" and not (out / corpus.name).exists():
            (out / corpus.name).symlink_to(corpus)
    for name in ("train", "val"):
        rows = pd.read_csv(root / "splits" / f"{name}.csv", dtype={"talk": str, "clip_id": str})
        of_held = rows.hr_path.str.startswith(held + "/")
        kept = rows[~of_held] if name == "train" else rows[of_held]
        kept.to_csv(out / "splits" / f"{name}.csv", index=False)
        print(f"{out.name} {name}: {len(kept)} clips, {kept.talk.nunique()} speakers, {kept.seconds.sum() / 60:.1f} min")
EOF

# the packaged recipe's augmentation, its probabilities times AUG_SCALE (capped at 1; other than 1 names the
# runs *_aug<scale>); PLAIN=1 (the default at AUG_SCALE=1) adds the same runs without augmentation
scale=${AUG_SCALE:-1}
aug="${EXTRA:-} "$(python3 -c "import sys; s = float(sys.argv[1]); print(' '.join(f'--set training.augment.p_{k}={min(1.0, p * s):g}' for k, p in dict(tilt=0.3, eq=0.3, room=0.15, noise=0.3, level=0.5).items()))" "$scale")
tag=aug; [ "$scale" = 1 ] || tag=aug$scale
plain=${PLAIN:-1}; [ "$scale" = 1 ] || plain=${PLAIN:-0}
if [ -n "${FINETUNE:-}" ]; then
    sweep=""
    IFS=';' read -ra recipes <<< "$FINETUNE"
    for recipe in "${recipes[@]}"; do
        for run in all no_ravdess no_speechocean762; do
            d=""; [ $run = all ] || d="--set data.output_dir=${DATA}_$run"
            sweep="$sweep${sweep:+;}${recipe%%:*}_$run:$d $aug --set training.init_from=$INIT/${run}_aug_best.pt ${recipe#*:}"
        done
    done
else
    sweep="all_$tag:$aug"
    [ "$plain" = 1 ] && sweep="$sweep;all_plain:${EXTRA:-}"
    for held in ravdess speechocean762; do
        d="--set data.output_dir=${DATA}_no_$held"
        sweep="$sweep;no_${held}_$tag:$d $aug"
        [ "$plain" = 1 ] && sweep="$sweep;no_${held}_plain:$d ${EXTRA:-}"
    done
fi
SWEEP="$sweep" VAL_TIMEOUT=0 DATA=$DATA RUNS=$RUNS OUT=$OUT bash "$(dirname "$0")/gpu_sweep.sh" "$minutes"

if [ "${BENCH_STEPS:-30}" != 0 ]; then
    python3 benchmarks/bench_train.py --set data.output_dir=$DATA --set training.device=${DEVICE:-cuda} --set training.batch_size=16 --set training.lowres_methods=soxr,decimate,butterworth,subsample \
        --steps "${BENCH_STEPS:-30}" --workers 4 > "$OUT/bench_train.txt" 2>&1
    cat "$OUT/bench_train.txt"
fi
