"""Splice and split the real speech of ``../shared/data`` into one clip folder for training and benchmarks.

    python benchmarks/prepare_speech.py [--data ../shared/data] [--out data/speech]

The two corpora are grouped differently, so each is spliced and split on its own, then merged:

* ``speech/talks`` (10 long talks, one speaker each): ``talk_from=file``, 30 s trimmed at each end;
  split by talk (6/2/2 talks).
* ``speech/utterances`` (33 speakers, short utterances): ``talk_from=parent`` (the folder is the
  speaker), no trimming; split by speaker.

``OUT/manifest.csv`` and ``OUT/splits/{train,val,test}.csv`` then list both, with paths relative to
``OUT``, so ``--set data.output_dir=OUT`` trains on both, and no speaker of the test split is heard
in training. Everything under ``OUT`` is cut from the shared recordings: never commit it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.settings import DataSettings
from preprocessing.splice import splice
from preprocessing.split import SPLIT_NAMES, split, split_table

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"talks": {"talk_from": "file", "trim_seconds": 30.0}, "utterances": {"talk_from": "parent", "trim_seconds": 0.0}}


def prepare(data: Path, out: Path, lowres: str = "soxr", quiet: bool = False) -> dict[str, pd.DataFrame]:
    merged: dict[str, list[pd.DataFrame]] = {name: [] for name in ("manifest", *SPLIT_NAMES)}
    for corpus, changes in CORPORA.items():
        settings = DataSettings(input_dir=data / "speech" / corpus, output_dir=out / corpus, lowres=lowres, **changes)
        splice(settings, quiet=quiet)
        split(settings.output_dir, settings.splits, settings.split_by, settings.seed, quiet=quiet)
        for name in merged:
            csv = out / corpus / ("manifest.csv" if name == "manifest" else f"splits/{name}.csv")
            df = pd.read_csv(csv, dtype={"talk": str, "clip_id": str, "source": str})
            df["hr_path"] = corpus + "/" + df["hr_path"]
            df["lr_path"] = corpus + "/" + df["lr_path"]
            df["source"] = corpus + "/" + df["source"]
            merged[name].append(df)
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in merged.items()}
    frames["manifest"].to_csv(out / "manifest.csv", index=False)
    (out / "splits").mkdir(exist_ok=True)
    for name in SPLIT_NAMES:
        frames[name].to_csv(out / "splits" / f"{name}.csv", index=False)
    if not quiet:
        print(split_table({name: frames[name] for name in SPLIT_NAMES}))
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "speech")
    ap.add_argument("--lowres", default="soxr")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    prepare(args.data, args.out, args.lowres, args.quiet)


if __name__ == "__main__":
    main()
