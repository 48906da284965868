#!/usr/bin/env bash
# The model-family table: every shipped model on the test files of benchmarks/family_test_dir.py,
# beside sinc and cubic of the same input (soxr HQ, 16-bit), one process per model at once.
#   bash benchmarks/bench_family.sh .gpu/eval [cuda|cpu]      # prints the tables; OUT= keeps the logs
set -u
dir=$(realpath "$1"); device=${2:-cuda}; OUT=${OUT:-$(mktemp -d)}
cd "$(dirname "$0")"
[ -f gpu_env.sh ] && [ "$device" = cuda ] && source gpu_env.sh
M=../models/pretrained
B="python3 bench_quality.py --device $device --no-rtf"
$B --test-dir "$dir/test" --model speech-4k=$M/bwe_speech_4k_16k.pt > "$OUT/q4.txt" 2>&1 &
$B --test-dir "$dir/test" --model speech-8k=$M/bwe_speech_8k_16k.pt > "$OUT/q8.txt" 2>&1 &
$B --test-dir "$dir/test" --model speech-2k=$M/bwe_speech_2k_16k.pt > "$OUT/q2.txt" 2>&1 &
$B --test-dir "$dir/piano" --model piano-4k=$M/bwe_piano_4k_16k.pt --model speech-4k=$M/bwe_speech_4k_16k.pt > "$OUT/qp.txt" 2>&1 &
wait
for f in "$OUT"/q*.txt; do echo "== $f"; sed -n '/^talks\|^speechocean762\|^ravdess\|^piano\|^all files/,/^$/p' "$f"; done
