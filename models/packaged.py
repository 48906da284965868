"""The models that ship inside the package (their card: ``models/pretrained/MODEL_CARD.md``).

Each is named by what it takes and gives (``speech-8k``: 8 kHz speech in, 16 kHz out). Wherever a
checkpoint is named (``--checkpoint``, ``upsampling.checkpoint``, ``training.init_from``), a shipped
model's name or ``packaged`` (the default, ``speech-4k``) may stand for its file; loading one needs
no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PACKAGED_ALIAS = "packaged"
FULL_BAND = 0.85  # content to this fraction of the output's Nyquist or more: already wideband (recorders' own edges sit at 0.90-0.96)


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    low_rate: int  # the input rate it was trained on: its input band ends at low_rate / 2
    high_rate: int
    material: str  # what it was trained on: speech or piano

    @property
    def path(self) -> Path:
        return PRETRAINED_DIR / self.file

    @property
    def input_band_hz(self) -> float:
        return self.low_rate / 2


SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel("speech-8k", "bwe_speech_8k_16k.pt", 8000, 16000, "speech"),
    ShippedModel("speech-4k", "bwe_speech_4k_16k.pt", 4000, 16000, "speech"),
    ShippedModel("speech-2k", "bwe_speech_2k_16k.pt", 2000, 16000, "speech"),
    ShippedModel("piano-4k", "bwe_piano_4k_16k.pt", 4000, 16000, "piano"),
)
DEFAULT_MODEL = "speech-4k"
PACKAGED_CHECKPOINT = next(m.path for m in SHIPPED if m.name == DEFAULT_MODEL)


def installed() -> list[ShippedModel]:
    """The shipped models whose files are here (an install may leave some out)."""
    return [m for m in SHIPPED if m.path.is_file()]


def checkpoint_path(name: str | Path) -> Path:
    """``name`` as a path: ``packaged`` is the default model, a shipped model's name its file,
    anything else a file of its own."""
    if str(name) == PACKAGED_ALIAS:
        return PACKAGED_CHECKPOINT
    for model in SHIPPED:
        if str(name) == model.name:
            return model.path
    return Path(name)


def choose_model(cutoff_hz: float, sample_rate: int, output_rate: int = 16000, material: str = "speech") -> ShippedModel | None:
    """The shipped model for a recording whose real band ends at ``cutoff_hz`` (measured by
    :func:`preprocessing.bandwidth.measure_file_bandwidth`, about the band edge's -3 dB point): the
    narrowest one whose input band reaches the cut-off, so that no real band is thrown away (an 8 kHz
    call, or a 16 kHz file whose content stops near 4 kHz, goes to the 8 kHz model). ``None`` when no
    model's input band reaches it (the recording is already wideband at the output rate, or wider
    than any model takes: it is then copied in band, never re-invented), or no model of this
    material and output rate is installed."""
    if sample_rate >= output_rate and cutoff_hz >= FULL_BAND * output_rate / 2:
        return None
    fitting = [m for m in installed() if m.material == material and m.high_rate == output_rate and m.input_band_hz >= cutoff_hz]
    return min(fitting, key=lambda m: m.low_rate) if fitting else None
