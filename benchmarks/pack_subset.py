"""Copy a balanced subset of a clip folder's train/val high-res clips into a compact folder, for
carrying to a GPU machine whose upload is limited (64 MiB here).

    python benchmarks/pack_subset.py data/speech .gpu/speech --train-mb 50 --val-mb 5

Clips are taken round-robin over talks (speakers) in a seeded random order, so every training talk
contributes about equally; only high-res files travel (train with ``training.lowres_methods`` set, which
makes the low-res input on the fly). With ``--data`` the test split's source recordings go too, as
``OUT/test/<corpus>/...`` for ``bench_quality.py --test-dir``: utterances whole, talks as an excerpt of
``--test-talk-seconds`` after the 30 s trim (models too large to bring back are scored there).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf


def balanced(rows: pd.DataFrame, root: Path, budget_bytes: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    queues = {talk: list(rng.permutation(group.index)) for talk, group in rows.groupby("talk", sort=True)}
    chosen, used = [], 0
    while queues and used < budget_bytes:
        for talk in list(queues):
            if not queues[talk]:
                del queues[talk]
                continue
            i = queues[talk].pop()
            size = (root / rows.at[i, "hr_path"]).stat().st_size
            if used + size > budget_bytes:
                queues.clear()
                break
            chosen.append(i)
            used += size
    return rows.loc[sorted(chosen)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train-mb", type=float, default=50)
    ap.add_argument("--val-mb", type=float, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, help="the shared data folder: also pack the test split's recordings")
    ap.add_argument("--test-talk-seconds", type=float, default=150.0)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "splits").mkdir(parents=True)
    kept = []
    for name, mb in (("train", args.train_mb), ("val", args.val_mb)):
        rows = pd.read_csv(args.clips / "splits" / f"{name}.csv", dtype={"talk": str, "clip_id": str})
        subset = balanced(rows, args.clips, int(mb * 2**20), args.seed)
        subset.to_csv(args.out / "splits" / f"{name}.csv", index=False)
        kept.append(subset)
        for rel in subset.hr_path:
            (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.clips / rel, args.out / rel)
        print(f"{name}: {len(subset)} of {len(rows)} clips, {subset.seconds.sum() / 60:.1f} min, {subset.talk.nunique()} talks/speakers")
    pd.concat(kept).to_csv(args.out / "manifest.csv", index=False)
    if args.data is not None:
        test = pd.read_csv(args.clips / "splits" / "test.csv", dtype={"source": str})
        for source in test["source"].unique():
            target = args.out / "test" / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.startswith("talks/"):
                x, rate = sf.read(str(args.data / "speech" / source), dtype="int16")
                start = 30 * rate
                sf.write(str(target), x[start : start + int(args.test_talk_seconds * rate)], rate)
            else:
                shutil.copyfile(args.data / "speech" / source, target)
        print(f"test: {test['source'].nunique()} source recordings (talks cut to {args.test_talk_seconds:g} s)")


if __name__ == "__main__":
    main()
