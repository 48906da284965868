"""A checkpoint's weights and settings alone, without optimiser, scheduler and RNG state: what ships
inside the package, and small enough to bring back from a GPU machine.

    python benchmarks/export_weights.py runs/bwe/best.pt bwe_weights.pt [--half]

``--half`` stores the weights as float16 (half the size; ``load_model`` casts them back to float32),
for models that are only scored, not shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio_superres.models.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402

TRAINING_STATE = ("train_state", "optimizer", "scheduler", "rng")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--half", action="store_true", help="float16 weights")
    args = ap.parse_args()
    checkpoint = {k: v for k, v in read_checkpoint(args.checkpoint).items() if k not in TRAINING_STATE}
    if args.half:
        checkpoint["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["model_state"].items()}
    save_checkpoint(args.out, checkpoint)


if __name__ == "__main__":
    main()
