"""Where an audio file's spectrum really ends: the cut-off frequency of its content.

The sample rate says where a spectrum *could* end; this module measures where it *does*. A 16 kHz
file may hold an 8 kHz telephone call resampled up, an MP3 is cut at 16 kHz inside its 44.1 kHz
container. ``pipeline upsample`` uses the measure to pick the model for the real band, and
``pipeline inspect`` prints it.

Method (``_measure``):

1. Power spectra of frames of at least ``rate / _BIN_HZ`` samples: bins of 4 Hz or less, fine enough
   to see between the harmonics of 50 Hz hum. Blackman-Harris window: what leaks across an edge
   stays 92 dB down, under any real floor.
2. Only active frames count: those within ``ACTIVE_RANGE_DB`` of the loudest (99th percentile), so
   pauses over a noise floor, fades and digital silence do not dilute the content. Their spectra
   are averaged (Welch) and summed over channels.
3. The dB spectrum is smoothed across frequency by a low percentile filter: it keeps steep edges in
   place and removes narrow peaks, even a dense comb of hum harmonics or a whine above the band.
4. Feet of edges: frequencies that stand ``EDGE_MARGIN_DB`` above everything from a quarter higher up
   to Nyquist. A noise floor (white, pink, dither) is flat or gently sloping, so it never has one.
5. From each foot, highest first, walk down to the top of the edge (where the fall gets slower than
   ``STEEP_DB_PER_OCTAVE``), and keep the first edge that a filter made (``_is_band_limit``):
   sharp, or falling onto a floor. A strong formant or a natural roll-off (a microphone's) can drop
   15-38 dB too, but never that way. The cut-off is the top of that edge, about the filter's -3 dB
   point (soxr's round trip through 4 kHz measures 1.88 kHz; its own -3 dB point is at 1.89 kHz).
   With no such edge the content reaches Nyquist: full band. That includes content fading gently
   into its own noise floor, filters gentler than about 90 dB/octave, and a file of pure tones.

Channels: their power spectra are summed, not their signals mixed. The band is then that of the
widest channel, and opposite-phase channels cannot cancel as in a down-mix; a channel far quieter
than the others (hiss on an unused channel) stays under the loud ones' floor instead of making the
whole file full band.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike

import numpy as np
import soundfile as sf

from .audio import sound_source

# frames this far below the loudest frames are pauses, fades or digital silence
ACTIVE_RANGE_DB = 45.0
# active frames quieter than this are dither or LSB noise, not content: the input counts as silent
SILENCE_DBFS = -90.0
# how far above everything beyond it a frequency must stand to be the foot of an edge
EDGE_MARGIN_DB = 15.0
# the top of an edge is where the fall gets slower than this
STEEP_DB_PER_OCTAVE = 60.0
# what tells a filter's edge from a natural roll-off (see _is_band_limit)
SHARP_FALL_DB = 30.0
FLOOR_FALL_DB = 18.0
GENTLE_FALL_DB = 25.0
GENTLE_DEPTH_DB = 35.0
# what a noise floor looks like (see _is_floor)
FLOOR_SLOPES_DB_PER_OCTAVE = (-4.5, 1.5)
FLAT_FLOOR_DB = 3.0
MIN_FLOOR_OCTAVES = 1 / 6
# a cut-off at or above this fraction of Nyquist is full band
FULL_BAND_FRACTION = 0.85
# frequency resolution: at most this many Hz per bin
_BIN_HZ = 4.0
# the smoothing filter spans at least this many bins (a tone's main lobe is 8) and 1% of the band
_MIN_SMOOTH_BINS = 25
# the smoothing keeps this percentile: a comb of tones must cover over 70% of the bins to survive
_SMOOTH_PERCENTILE = 30
# the walk down an edge looks this far below
_WALK_OCTAVES = 1 / 12
# frames per FFT call: bounds the memory for long inputs
_FRAMES_PER_BLOCK = 256


@dataclass(frozen=True)
class Bandwidth:
    """What ``measure_bandwidth`` found.

    ``cutoff_hz`` is where the content ends: the top of the highest edge that a filter made
    (a resampler's, a codec's low-pass), about its -3 dB point. It is Nyquist (``sample_rate / 2``)
    when there is no such edge, and 0.0 when the input is ``silent``. ``full_band`` is a cut-off at
    ``FULL_BAND_FRACTION`` of Nyquist or above: recorders' and resamplers' own anti-alias edges sit
    at 0.90-0.96 of Nyquist (the lowest of 2 142 real 16 kHz recordings measured 0.897).
    """

    cutoff_hz: float
    sample_rate: int
    channels: int
    seconds: float  # duration of the whole input (the whole file, not just what was read)
    analysed_seconds: float  # how much of it was read and analysed
    active_seconds: float  # how much of that was loud enough to count (not pauses or silence)
    level_dbfs: float  # RMS level of the active frames per channel; -200 for digital silence
    edge_db: float  # how far the spectrum beyond the cut-off lies under its top; 0 with no edge
    silent: bool  # nothing to measure: no samples, digital zero, or quieter than SILENCE_DBFS

    @property
    def nyquist_hz(self) -> float:
        return self.sample_rate / 2

    @property
    def full_band(self) -> bool:
        """The content reaches (close to) Nyquist: there is no missing band at this sample rate."""
        return not self.silent and self.cutoff_hz >= FULL_BAND_FRACTION * self.nyquist_hz

    def __str__(self) -> str:
        head = f"{self.sample_rate} Hz, {self.channels} ch, {self.seconds:.1f} s"
        if self.silent:
            return f"{head}: silent ({self.level_dbfs:.0f} dBFS)"
        band = "full band" if self.full_band else f"{self.cutoff_hz / self.nyquist_hz:.0%} of Nyquist, edge {self.edge_db:.0f} dB"
        return f"{head}: content to {self.cutoff_hz / 1000:.2f} kHz ({band}), level {self.level_dbfs:.0f} dBFS"


def measure_bandwidth(x: np.ndarray, rate: int) -> Bandwidth:
    """The real bandwidth of ``x``, shape (n,) or (n, channels), float in [-1, 1], at ``rate`` Hz."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    x = _as_frames_by_channels(x)
    return _measure([x], int(rate), x.shape[1], len(x) / rate)


def measure_file_bandwidth(path: str | PathLike, max_seconds: float = 30.0, excerpt_seconds: float = 3.0) -> Bandwidth:
    """The real bandwidth of an audio file, from at most ``max_seconds`` of it.

    A longer file is sampled by excerpts of ``excerpt_seconds`` spread evenly from start to end
    (seek, then read), so time and memory stay bounded whatever its length; ``seconds`` is still the
    whole file's duration. About 0.05 s for a 10-minute 16 kHz mono FLAC. Errors from soundfile
    propagate unchanged."""
    with sound_source(path) as source, sf.SoundFile(source) as f:
        rate, channels, n_frames = f.samplerate, f.channels, f.frames
        budget = max(1, int(max_seconds * rate))
        if n_frames <= budget:
            segments = [f.read(dtype="float32", always_2d=True)]
        else:
            length = max(1, min(int(excerpt_seconds * rate), budget))
            starts = np.linspace(0, n_frames - length, budget // length).astype(np.int64)
            segments = []
            for start in starts:
                f.seek(int(start))
                segments.append(f.read(length, dtype="float32", always_2d=True))
    return _measure([_as_frames_by_channels(s) for s in segments], rate, channels, n_frames / rate)


def _as_frames_by_channels(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (n,) or (n, channels), got {x.shape}")
    if not np.isfinite(x).all():  # one NaN would poison the whole average: count it as silence
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def _measure(segments: list[np.ndarray], rate: int, channels: int, seconds: float) -> Bandwidth:
    """The bandwidth of ``segments`` (each (n, channels)), separate pieces of one input."""
    segments = [s for s in segments if len(s)]
    analysed_seconds = sum(len(s) for s in segments) / rate
    longest = max((len(s) for s in segments), default=0)
    if longest < 64:
        return Bandwidth(0.0, rate, channels, seconds, analysed_seconds, 0.0, -200.0, 0.0, True)
    # an input shorter than a frame gets shorter frames rather than zero padding (a padded end is a click)
    n_fft = min(_frame_length(rate), 1 << int(np.log2(longest)))
    segments = [s for s in segments if len(s) >= n_fft]
    power, n_active, mean_square = _active_power_spectrum(segments, n_fft)
    level_dbfs = float(10 * np.log10(max(mean_square, 1e-20)))
    active_seconds = n_active * (n_fft // 2) / rate
    if n_active == 0 or level_dbfs < SILENCE_DBFS:
        return Bandwidth(0.0, rate, channels, seconds, analysed_seconds, active_seconds, level_dbfs, 0.0, True)
    spectrum_db = 10 * np.log10(np.maximum(power, power.max() * 1e-20))
    smooth_bins = max(_MIN_SMOOTH_BINS, len(spectrum_db) // 100) | 1
    smoothed = percentile_filter(spectrum_db, _SMOOTH_PERCENTILE, smooth_bins)
    cutoff_bin, edge_db = _find_edge(smoothed, lowest_bin=smooth_bins)
    cutoff_hz = rate / 2 if cutoff_bin is None else cutoff_bin * rate / n_fft
    return Bandwidth(float(cutoff_hz), rate, channels, seconds, analysed_seconds, active_seconds, level_dbfs, edge_db, False)


def _frame_length(rate: int) -> int:
    """The shortest power of two with bins of at most ``_BIN_HZ``."""
    return 1 << max(6, int(np.ceil(np.log2(rate / _BIN_HZ))))


# numpy only, no scipy: importing scipy.signal, .ndimage and .fft took 1.3 s of every `pipeline upsample`
# start-up (a fifth of the whole command on a 10-minute talk). The window below and percentile_filter are
# scipy's, tested equal. The 4-term Blackman-Harris window, periodic (get_window("blackmanharris", n) to 1e-7):
_BLACKMAN_HARRIS = (0.35875, -0.48829, 0.14128, -0.01168)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    phase = 2 * np.pi * np.arange(n_fft) / n_fft
    return sum(a * np.cos(k * phase) for k, a in enumerate(_BLACKMAN_HARRIS)).astype(np.float32)


def percentile_filter(x: np.ndarray, percentile: float, size: int) -> np.ndarray:
    """``scipy.ndimage.percentile_filter(x, percentile, size=size, mode="nearest")`` of a 1-D array:
    the same rank (no interpolation) in each window of ``size`` centred on the sample, edges repeated."""
    rank = size - 1 if percentile >= 100 else int(size * percentile / 100.0)
    padded = np.pad(x, (size // 2, size - 1 - size // 2), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    return np.partition(windows, rank, axis=-1)[:, rank]


def _frame_blocks(segment: np.ndarray, n_fft: int) -> Iterator[np.ndarray]:
    """Half-overlapping frames of a (n, channels) segment, as views of shape (frames, channels,
    n_fft), ``_FRAMES_PER_BLOCK`` at a time."""
    frames = np.lib.stride_tricks.sliding_window_view(segment, n_fft, axis=0)[:: n_fft // 2]
    for start in range(0, len(frames), _FRAMES_PER_BLOCK):
        yield frames[start : start + _FRAMES_PER_BLOCK]


def _active_power_spectrum(segments: list[np.ndarray], n_fft: int) -> tuple[np.ndarray, int, float]:
    """The mean power spectrum (summed over channels) of the active frames of ``segments``, the
    number of active frames, and their mean square per sample and channel.

    Frames never straddle two segments: the excerpts of a file are not contiguous, and the jump
    from one to the next would be a broadband click."""
    window = _window(n_fft)
    window_energy = float(np.sum(window.astype(np.float64) ** 2))
    # pass 1: every frame's energy, to find the loud ones
    window_squared = np.square(window)
    energies = [np.concatenate([(np.square(block) @ window_squared).sum(axis=1, dtype=np.float64) for block in _frame_blocks(segment, n_fft)]) for segment in segments]
    all_energies = np.concatenate(energies)
    audible = all_energies[all_energies > 0]
    if audible.size == 0:
        return np.zeros(n_fft // 2 + 1), 0, 0.0
    threshold = max(np.percentile(audible, 99) * 10 ** (-ACTIVE_RANGE_DB / 10), np.finfo(np.float64).tiny)
    # pass 2: the spectra of the active frames only
    power = np.zeros(n_fft // 2 + 1)
    for segment, energy in zip(segments, energies):
        is_active = energy >= threshold
        for first, block in zip(range(0, len(energy), _FRAMES_PER_BLOCK), _frame_blocks(segment, n_fft)):
            active = block[is_active[first : first + len(block)]]
            if len(active):
                spectra = np.fft.rfft(active * window, axis=-1)
                power += np.sum(spectra.real**2 + spectra.imag**2, axis=(0, 1), dtype=np.float64)
    active_energies = all_energies[all_energies >= threshold]
    mean_square = float(active_energies.mean() / (window_energy * segments[0].shape[1]))
    return power / active_energies.size, active_energies.size, mean_square


def _find_edge(spectrum_db: np.ndarray, lowest_bin: int) -> tuple[int | None, float]:
    """The bin at the top of the highest band-limiting edge of a smoothed dB spectrum, and the
    edge's depth in dB; ``(None, 0.0)`` when there is none.

    A foot of an edge is a bin that stands ``EDGE_MARGIN_DB`` above every bin from a gap higher up
    to Nyquist. The gap is a quarter of the bin's frequency, but at most half the way to Nyquist, so
    that an edge in the top quarter of the band (a resampler's, at 0.95 of Nyquist) still has a
    "beyond" to compare with. Natural bumps (a strong first formant) have feet too: the edge above
    each run of feet, highest first, must also pass ``_is_band_limit``."""
    top = len(spectrum_db) - 1
    bins = np.arange(len(spectrum_db))
    highest_from = np.maximum.accumulate(spectrum_db[::-1])[::-1]  # [j]: max of spectrum_db[j:]
    beyond_start = np.minimum(bins + np.maximum(1, np.minimum(bins // 4, (top - bins) // 2)), top)
    is_foot = spectrum_db - highest_from[beyond_start] >= EDGE_MARGIN_DB
    feet = np.flatnonzero(is_foot[lowest_bin:top]) + lowest_bin
    highest_feet = feet[np.append(np.diff(feet) > 1, True)] if feet.size else feet  # the top foot of each run
    for foot in highest_feet[::-1]:
        knee = _top_of_edge(spectrum_db, int(foot), lowest_bin)
        beyond = spectrum_db[beyond_start[foot] :]
        if _is_band_limit(spectrum_db, knee, int(foot), beyond):
            return knee, float(spectrum_db[knee] - np.median(beyond))
    return None, 0.0


def _top_of_edge(spectrum_db: np.ndarray, foot: int, lowest_bin: int) -> int:
    """Walk down from the foot while the spectrum over the ``_WALK_OCTAVES`` below still falls faster
    than ``STEEP_DB_PER_OCTAVE``: the top of the edge, near a filter's -3 dB point."""
    knee = foot
    while knee > lowest_bin:
        span = max(2, int(knee * (1 - 2**-_WALK_OCTAVES)))
        if spectrum_db[knee - span] - spectrum_db[knee] < STEEP_DB_PER_OCTAVE * _WALK_OCTAVES:
            break
        knee -= 1
    return knee


def _is_band_limit(spectrum_db: np.ndarray, knee: int, foot: int, beyond: np.ndarray) -> bool:
    """Whether the edge from ``knee`` to ``foot``, and ``beyond`` it up to Nyquist, is a filter's
    rather than a natural roll-off or a strong formant.

    Any of three signs will do. Resamplers, codecs and elliptic filters fall ``SHARP_FALL_DB``
    within 1/12 octave. A sharp edge onto a noise floor (a quiet 16-bit file, content only 18-30 dB
    above its dither) falls ``FLOOR_FALL_DB`` within 1/12 octave and what lies beyond is a floor
    (``_is_floor``). A gentler low-pass (8th-order Butterworth run forward and back, 96 dB/octave)
    falls ``GENTLE_FALL_DB`` within 1/4 octave, ``GENTLE_DEPTH_DB`` in all, onto a floor.

    In the 2 142 real speech and piano recordings of shared/data, no natural roll-off or formant
    fell over 23 dB within 1/12 octave, and those that fell onto something floor-like (speech fading
    into room noise) fell at most 13 dB within 1/12 octave and 21 dB in all."""

    def fall_db(octaves: float) -> float:
        """The largest fall within ``octaves`` anywhere on the edge, from its top down to its foot."""
        ends = np.minimum(len(spectrum_db), (np.arange(knee, foot + 1) * 2**octaves).astype(int) + 1)
        return float(max(spectrum_db[j] - spectrum_db[j:end].min() for j, end in zip(range(knee, foot + 1), ends)))

    sharp_fall_db = fall_db(1 / 12)
    if sharp_fall_db >= SHARP_FALL_DB:
        return True
    # the floor starts where the edge has come down to within a decibel of the level beyond it
    floor_start = foot + int(np.argmax(spectrum_db[foot:] <= np.median(beyond) + 1.0))
    onto_floor = _is_floor(spectrum_db[floor_start:], first_bin=floor_start)
    if sharp_fall_db >= FLOOR_FALL_DB and onto_floor:
        return True
    depth_db = spectrum_db[knee] - np.median(beyond)
    return onto_floor and depth_db >= GENTLE_DEPTH_DB and fall_db(1 / 4) >= GENTLE_FALL_DB


def _is_floor(spectrum_db: np.ndarray, first_bin: int) -> bool:
    """Whether a stretch of dB spectrum up to Nyquist looks like a noise floor: at least
    ``MIN_FLOOR_OCTAVES`` long, and within ``FLAT_FLOOR_DB`` under a straight line against
    log-frequency whose slope is that of a floor, from a little steeper than pink (-3 dB/octave)
    to slightly rising. Content beyond a formant or a natural roll-off keeps falling faster."""
    if len(spectrum_db) < 3 or np.log2((first_bin + len(spectrum_db)) / first_bin) < MIN_FLOOR_OCTAVES:
        return False
    octaves = np.log2(np.arange(first_bin, first_bin + len(spectrum_db)))
    slope = np.clip(np.polyfit(octaves, spectrum_db, 1)[0], *FLOOR_SLOPES_DB_PER_OCTAVE)
    bumps = spectrum_db - slope * octaves
    return bool(bumps.max() - np.median(bumps) <= FLAT_FLOOR_DB)
