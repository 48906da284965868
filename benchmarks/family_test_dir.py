"""The test files of the model-family table: the first N test recordings (sorted) of each speech corpus
of ``data/speech``'s test split, the test talks cut to 150 s after the 30 s trim, and the test
pieces of ``data/piano``; copied into one folder that ``bench_quality.py --test-dir`` scores as it is.

    python benchmarks/prepare_speech.py && python benchmarks/prepare_speech.py --set piano --out data/piano
    python benchmarks/family_test_dir.py .gpu/eval          # then: bash benchmarks/bench_family.sh .gpu/eval
    python benchmarks/family_test_dir.py .gpu/eval --split val   # the same of the validation split (to choose on)

Everything written is cut from the shared recordings: never commit it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-corpus", type=int, default=15)
    ap.add_argument("--talk-seconds", type=float, default=150.0)
    ap.add_argument("--split", choices=("test", "val"), default="test", help="written to OUT/SPLIT (the pieces to OUT/piano or OUT/piano_val)")
    args = ap.parse_args()
    rows = pd.read_csv(REPO / "data" / "speech" / "splits" / f"{args.split}.csv", dtype=str)
    for corpus in ("talks", "utterances/speechocean762", "utterances/ravdess"):
        sources = sorted(s for s in rows.source.unique() if s.startswith(corpus + "/"))[: args.per_corpus]
        for s in sources:
            dst = args.out / args.split / corpus.split("/")[-1] / Path(s).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if corpus == "talks":
                x, rate = sf.read(str(args.data / "speech" / s), dtype="int16")
                sf.write(str(dst), x[30 * rate : int((30 + args.talk_seconds) * rate)], rate)
            else:
                shutil.copyfile(args.data / "speech" / s, dst)
        print(f"{corpus}: {len(sources)} files")
    pieces = pd.read_csv(REPO / "data" / "piano" / "piano" / "splits" / f"{args.split}.csv", dtype=str).source.unique()
    for s in sorted(pieces):
        dst = args.out / ("piano" if args.split == "test" else f"piano_{args.split}") / "piano" / Path(s).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.data / "music" / "piano" / Path(s).name, dst)
    print(f"piano: {len(pieces)} pieces")


if __name__ == "__main__":
    main()
