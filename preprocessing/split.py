"""``pipeline split``: divide ``manifest.csv`` into train / val / test.

By default (``split_by="talk"``) every talk goes whole into one split, so that no talk (and, with
``talk_from="parent"``, no speaker) is heard both in training and in the test. The talks are assigned
to meet the fractions as closely as whole talks allow, by audio duration, with a small weight on the
number of talks as a tie-break (ten talks of similar length at 0.6/0.2/0.2 give 6/2/2). The result
depends only on the manifest and ``seed``.

``split_by="clip"`` shuffles clips (the leaky behaviour of the research code: neighbouring clips of one
talk end up on both sides); kept for comparison, not recommended.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audio_superres.settings import Splits

from .audio import atomic_write_text
from .tables import read_table

SPLIT_NAMES = ("train", "val", "test")


def _cost(durations: np.ndarray, assignment: np.ndarray, targets: np.ndarray, count_targets: np.ndarray) -> float:
    sums = np.bincount(assignment, weights=durations, minlength=3)
    counts = np.bincount(assignment, minlength=3)
    total, n = durations.sum(), len(durations)
    return float(np.abs(sums - targets).sum() / total + 0.25 * np.abs(counts - count_targets).sum() / n)


def assign_groups(durations: np.ndarray, fractions: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """Split index (0, 1, 2) for each group of ``durations`` so that the split durations approach
    ``fractions`` of the total: a greedy start (longest group to the split furthest below its target,
    ties in a seeded random order), then single moves and pairwise swaps while they lower the cost."""
    durations = np.asarray(durations, dtype=np.float64)
    n = len(durations)
    fr = np.asarray(fractions, dtype=np.float64)
    targets, count_targets = fr * durations.sum(), fr * n
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(-durations[order], kind="stable")]
    assignment = np.zeros(n, dtype=np.int64)
    sums = np.zeros(3)
    for i in order:
        deficit = np.where(fr > 0, (targets - sums) / np.maximum(targets, 1e-12), -np.inf)
        s = int(np.argmax(deficit))
        assignment[i] = s
        sums[s] += durations[i]

    best = _cost(durations, assignment, targets, count_targets)
    improved = True
    while improved:
        improved = False
        for i in rng.permutation(n):
            for s in range(3):
                if s == assignment[i] or fr[s] == 0:
                    continue
                old = assignment[i]
                assignment[i] = s
                c = _cost(durations, assignment, targets, count_targets)
                if c < best - 1e-12:
                    best, improved = c, True
                else:
                    assignment[i] = old
        if n <= 300:  # swaps are O(n^2); with many talks single moves already get close
            for i in range(n):
                for j in range(i + 1, n):
                    if assignment[i] == assignment[j]:
                        continue
                    assignment[i], assignment[j] = assignment[j], assignment[i]
                    c = _cost(durations, assignment, targets, count_targets)
                    if c < best - 1e-12:
                        best, improved = c, True
                    else:
                        assignment[i], assignment[j] = assignment[j], assignment[i]
    return assignment


def split_manifest(manifest: pd.DataFrame, splits: Splits, split_by: str = "talk", seed: int = 0) -> dict[str, pd.DataFrame]:
    """The rows of ``manifest`` for each split, in manifest order."""
    fractions = (splits.train, splits.val, splits.test)
    if manifest.empty:
        return {name: manifest.copy() for name in SPLIT_NAMES}
    if split_by == "talk":
        per_talk = manifest.groupby("talk", sort=True)["seconds"].sum()
        assignment = assign_groups(per_talk.to_numpy(), fractions, seed)
        split_of = dict(zip(per_talk.index, assignment))
        which = manifest["talk"].map(split_of).to_numpy()
    elif split_by == "clip":
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(manifest))
        cum = np.cumsum(manifest["seconds"].to_numpy()[order]) / manifest["seconds"].sum()
        bounds = np.cumsum(fractions)
        which = np.empty(len(manifest), dtype=np.int64)
        which[order] = np.searchsorted(bounds[:-1], cum - 1e-12, side="left")
    else:
        raise ValueError(f"split_by must be 'talk' or 'clip', got {split_by!r}")
    return {name: manifest[which == i].reset_index(drop=True) for i, name in enumerate(SPLIT_NAMES)}


def split_table(parts: dict[str, pd.DataFrame]) -> str:
    lines = [f"{'split':<6} {'talks':>6} {'clips':>7} {'hours':>7}"]
    for name, df in parts.items():
        lines.append(f"{name:<6} {df['talk'].nunique():>6} {len(df):>7} {df['seconds'].sum() / 3600:>7.3f}")
    return "\n".join(lines)


def split(output_dir: str | Path, splits: Splits, split_by: str = "talk", seed: int = 0, quiet: bool = False) -> dict[str, Path]:
    """Read ``output_dir/manifest.csv``, write ``output_dir/splits/{train,val,test}.csv``."""
    output_dir = Path(output_dir)
    manifest_path = output_dir / "manifest.csv"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no manifest; run `pipeline splice` first")
    manifest = read_table(manifest_path, text=("talk", "clip_id", "source"), numbers=("seconds",), remake="re-run `pipeline splice` into an empty folder")
    parts = split_manifest(manifest, splits, split_by, seed)
    paths = {}
    for name, df in parts.items():
        paths[name] = output_dir / "splits" / f"{name}.csv"
        atomic_write_text(paths[name], df.to_csv(index=False))
    if not quiet:
        print(split_table(parts))
        print(f"split: {manifest['talk'].nunique()} talks, {len(manifest)} clips -> {output_dir / 'splits'} (by {split_by}, seed {seed})")
    return paths
