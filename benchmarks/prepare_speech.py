"""Splice and split the real recordings of ``../shared/data`` into one clip folder for training and benchmarks.

    python benchmarks/prepare_speech.py [--data ../shared/data] [--out data/speech]
    python benchmarks/prepare_speech.py --set piano --out data/piano

The corpora are grouped differently, so each is spliced and split on its own (60/20/20 by duration),
then merged; a corpus's speakers (talks, actors, pieces) are each whole in one split:

* ``speech/talks`` (10 long talks, one speaker each): ``talk_from=file``, 30 s trimmed at each end.
* ``speech/utterances/speechocean762`` (33 speakers) and ``speech/utterances/ravdess`` (24 actors),
  short utterances: ``talk_from=parent`` (the folder is the speaker), no trimming.
* ``--set piano``: ``music/piano`` (34 pieces), split by piece, 1 s trimmed at each end.

``OUT/manifest.csv`` and ``OUT/splits/{train,val,test}.csv`` then list both, with paths relative to
``OUT``, so ``--set data.output_dir=OUT`` trains on both, and no speaker of the test split is heard
in training. Everything under ``OUT`` is cut from the shared recordings: never commit it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from audio_superres.preprocessing.splice import splice
from audio_superres.preprocessing.split import SPLIT_NAMES, split, split_table
from audio_superres.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]
# name in OUT -> (folder under the data folder, splice settings)
SETS = {
    "speech": {
        "talks": ("speech/talks", {"talk_from": "file", "trim_seconds": 30.0}),
        "speechocean762": ("speech/utterances/speechocean762", {"talk_from": "parent", "trim_seconds": 0.0}),
        "ravdess": ("speech/utterances/ravdess", {"talk_from": "parent", "trim_seconds": 0.0}),
    },
    "piano": {"piano": ("music/piano", {"talk_from": "file", "trim_seconds": 1.0})},
}


def prepare(data: Path, out: Path, lowres: str = "soxr", quiet: bool = False, which: str = "speech") -> dict[str, pd.DataFrame]:
    merged: dict[str, list[pd.DataFrame]] = {name: [] for name in ("manifest", *SPLIT_NAMES)}
    for corpus, (folder, changes) in SETS[which].items():
        settings = DataSettings(input_dir=data / folder, output_dir=out / corpus, lowres=lowres, **changes)
        splice(settings, quiet=quiet)
        split(settings.output_dir, settings.splits, settings.split_by, settings.seed, quiet=quiet)
        for name in merged:
            csv = out / corpus / ("manifest.csv" if name == "manifest" else f"splits/{name}.csv")
            df = pd.read_csv(csv, dtype={"talk": str, "clip_id": str, "source": str})
            df["hr_path"] = corpus + "/" + df["hr_path"]
            df["lr_path"] = corpus + "/" + df["lr_path"]
            df["source"] = folder.removeprefix("speech/") + "/" + df["source"]
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
    ap.add_argument("--set", dest="which", choices=sorted(SETS), default="speech", help="speech (default) or piano")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    prepare(args.data, args.out, args.lowres, args.quiet, args.which)


if __name__ == "__main__":
    main()
