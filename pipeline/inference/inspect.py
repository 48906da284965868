"""``pipeline inspect``: what each recording holds (rate, channels, duration, where its spectrum really
ends) and the shipped model that ``upsample`` would choose for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from audio_superres.models.packaged import choose_model
from audio_superres.preprocessing.audio import atomic_write_text, audio_files_in, audio_info
from audio_superres.preprocessing.bandwidth import measure_file_bandwidth

COLUMNS = ["file", "sample_rate", "channels", "seconds", "cutoff_hz", "full_band", "model", "error"]


def inspect_paths(inputs: list[str | Path], output_rate: int = 16000, quiet: bool = True) -> pd.DataFrame:
    """One row per audio file under ``inputs`` (files, or folders searched recursively); a file that
    cannot be read gets its one-line problem in ``error`` and the others go on."""
    rows = []
    found: list[Path] = []
    for src in map(Path, inputs):
        problems: list[tuple[str, str]] = []
        found += audio_files_in(src, problems=problems) if src.is_dir() else [src]
        rows += [{"file": path, "error": f"{path}: {why}"} for path, why in problems]
    for path in tqdm(found, desc="inspect", unit="file", disable=quiet or len(found) < 20 or not sys.stderr.isatty(), leave=False):
        try:
            audio_info(path)  # the project's own checks: truncated, damaged, not audio
            band = measure_file_bandwidth(path)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            rows.append({"file": str(path), "error": f"{path}: not a readable audio file ({str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__})"})
            continue
        except Exception as e:  # noqa: BLE001  (AudioError and kin: one line, the rest go on)
            rows.append({"file": str(path), "error": str(e)})
            continue
        model = None if band.silent else choose_model(band.cutoff_hz, band.sample_rate, output_rate)
        rows.append({
            "file": str(path), "sample_rate": band.sample_rate, "channels": band.channels, "seconds": round(band.seconds, 3),
            "cutoff_hz": round(band.cutoff_hz), "full_band": band.full_band,
            "model": model.name if model else ("none (silent)" if band.silent else "none (already wideband)"), "error": "",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, table.to_csv(index=False))
