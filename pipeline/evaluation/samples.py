"""The sample folders of an evaluation: for a few files, an excerpt of every signal as 16-bit WAV
(high-res, low-res, sinc, cubic, model) and their spectrograms side by side, in the same order, so
that the report plays and shows the same signals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from audio_superres.preprocessing.audio import atomic_path, write_audio

from .metrics import power_spectrogram

SIGNALS = ("highres", "lowres", "sinc", "cubic", "model")  # what a sample folder holds, in this order
SIGNAL_LABELS = {"highres": "high-res", "lowres": "low-res", "sinc": "sinc", "cubic": "cubic", "model": "model"}


def _excerpt(x: np.ndarray, rate: int, seconds: float, middle_at: float) -> np.ndarray:
    """``seconds`` of ``x`` centred on ``middle_at`` (a fraction of its length)."""
    n = round(seconds * rate)
    if n >= len(x):
        return x
    start = int(max(0, min(len(x) - n, middle_at * len(x) - n / 2)))
    return x[start : start + n]


def save_spectrograms(signals: dict[str, np.ndarray], high_rate: int, low_rate: int, path: Path, title: str = "") -> None:
    """The spectrograms of :data:`SIGNALS` (high-res, low-res, sinc, cubic, model: the same signals
    as the sample's audio) side by side, one colour scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(SIGNAL_LABELS[key], key, low_rate if key == "lowres" else high_rate) for key in SIGNALS]
    fig, axes = plt.subplots(1, len(panels), figsize=(20, 3.6), sharey=True, constrained_layout=True)
    image = None
    for ax, (label, key, rate) in zip(axes, panels):
        x = signals[key]
        n_fft = 512 * rate // high_rate  # the same time resolution at either rate
        db = 10 * np.log10(power_spectrogram(x, n_fft=n_fft, hop=n_fft // 4)).T
        image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=20, extent=(0, len(x) / rate, 0, rate / 2000))
        ax.set_ylim(0, high_rate / 2000)
        ax.set_facecolor(plt.get_cmap("magma")(0))  # above the low-res band: nothing, drawn as the floor
        ax.set_title(label)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    fig.colorbar(image, ax=axes, label="power (dB)", shrink=0.9)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def sample_folder_name(index: int, name: str) -> str:
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(name).with_suffix('').as_posix())[-60:]}"


def save_sample(signals: dict[str, np.ndarray], high_rate: int, low_rate: int, folder: Path, title: str, seconds: float) -> None:
    """An excerpt (the middle ``seconds``) of every signal as 16-bit WAV, and its spectrograms."""
    excerpt = {k: _excerpt(signals[k], low_rate if k == "lowres" else high_rate, seconds, 0.5) for k in SIGNALS}
    for key, x in excerpt.items():
        write_audio(folder / f"{key}.wav", x, low_rate if key == "lowres" else high_rate)
    save_spectrograms(excerpt, high_rate, low_rate, folder / "spectrogram.png", title)


def pick_indices(n_files: int, n_figures: int) -> set[int]:
    """``n_figures`` files spread evenly over the list (first and last included)."""
    if n_figures <= 0 or n_files == 0:
        return set()
    return {int(i) for i in np.linspace(0, n_files - 1, min(n_figures, n_files)).round()}
