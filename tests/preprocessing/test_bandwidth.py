"""measure_bandwidth on generated signals whose band is known: brick walls at every rate under white
and pink floors, resampler and codec low-passes, hum, dither, silence, channels, and files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import soxr

from audio_superres.preprocessing.bandwidth import Bandwidth, measure_bandwidth, measure_file_bandwidth


def speech_like(seconds: float, rate: int, seed: int = 0, formant_db: float = 0.0, roll_off_hz: float | None = None) -> np.ndarray:
    """Noise falling 6 dB/octave above 500 Hz, in syllables of 1/8 s separated by digital silence,
    at an RMS of about -10 dBFS. ``formant_db`` adds a resonance at 500 Hz; ``roll_off_hz`` a
    natural-looking 40 dB/octave roll-off above it. Full band unless those say otherwise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    gain = 1 / np.sqrt(1 + (freqs / 500) ** 2)
    gain *= 1 + 10 ** (formant_db / 20) * np.exp(-(((freqs - 500) / 60) ** 2))
    if roll_off_hz is not None:
        gain /= np.sqrt(1 + (freqs / roll_off_hz) ** (2 * 40 / 6))
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)
    syllables = np.sin(2 * np.pi * 4 * np.arange(n) / rate) > 0
    x = x * syllables
    return 0.3 * x / np.sqrt(np.mean(x**2))


def brick_wall(x: np.ndarray, rate: int, cutoff_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / rate) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, len(x))


def noise_floor(n: int, colour: str, db_below: float, signal_rms: float = 0.3, seed: int = 1) -> np.ndarray:
    """White or pink (-3 dB/octave) noise ``db_below`` the signal's RMS."""
    white = np.random.default_rng(seed).standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(white)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        white = np.fft.irfft(spectrum, n)
    return signal_rms * 10 ** (-db_below / 20) * white / np.sqrt(np.mean(white**2))


def to_16_bit(x: np.ndarray, seed: int = 2) -> np.ndarray:
    """Quantised to 16 bits with TPDF dither, as a 16-bit file would hold it."""
    tpdf = np.random.default_rng(seed).triangular(-1, 0, 1, x.shape)
    return np.round(x * 32767 + tpdf) / 32767


def hum(n: int, rate: int, mains_hz: float, rms: float) -> np.ndarray:
    """Mains hum: the fundamental and every harmonic up to Nyquist, falling as 1/k."""
    t = np.arange(n) / rate
    harmonics = range(1, int(rate / 2 / mains_hz))
    return rms * math.sqrt(2) * sum(np.sin(2 * np.pi * k * mains_hz * t + k) / k for k in harmonics)


def assert_cutoff_near(measured: Bandwidth, true_hz: float) -> None:
    tolerance = max(0.06 * true_hz, 150.0)
    assert not measured.silent
    assert abs(measured.cutoff_hz - true_hz) <= tolerance, f"measured {measured.cutoff_hz:.0f} Hz, true {true_hz:.0f} Hz"


RATES_AND_CUTOFFS = [(2000, 600), (8000, 1000), (8000, 3000), (16000, 2000), (16000, 4000), (16000, 6000), (44100, 11000), (44100, 16000), (48000, 20000), (96000, 40000)]
FLOORS = [None, ("white", 60), ("white", 80), ("pink", 60), ("pink", 80)]


@pytest.mark.parametrize("floor", FLOORS, ids=lambda f: "no-floor" if f is None else f"{f[0]}-{f[1]}dB")
@pytest.mark.parametrize(("rate", "cutoff_hz"), RATES_AND_CUTOFFS)
def test_brick_wall_is_found_over_any_floor(rate, cutoff_hz, floor):
    x = brick_wall(speech_like(3.0, rate), rate, cutoff_hz)
    if floor is not None:
        x = x + noise_floor(len(x), *floor)
    measured = measure_bandwidth(x, rate)
    assert_cutoff_near(measured, cutoff_hz)
    assert not measured.full_band
    assert measured.edge_db > 30


@pytest.mark.parametrize("floor", [None, ("white", 60), ("pink", 60)], ids=lambda f: "no-floor" if f is None else f[0])
@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_full_band_content_measures_nyquist(rate, floor):
    x = speech_like(3.0, rate)
    if floor is not None:
        x = x + noise_floor(len(x), *floor)
    measured = measure_bandwidth(x, rate)
    assert measured.cutoff_hz == rate / 2
    assert measured.full_band
    assert measured.edge_db == 0.0


def test_strong_formant_and_natural_roll_off_are_not_edges():
    # a low resonance 30 dB above the rest, and a 40 dB/octave fall from 6 kHz as some microphones
    # have: both drop far, neither is a band limit
    x = speech_like(3.0, 16000, formant_db=30, roll_off_hz=6000)
    assert measure_bandwidth(to_16_bit(x), 16000).full_band


@pytest.mark.parametrize("low_rate", [8000, 4000, 2000])
def test_soxr_round_trip_measures_the_low_rate_nyquist(low_rate):
    x = speech_like(3.0, 16000)
    y = soxr.resample(soxr.resample(x, 16000, low_rate), low_rate, 16000)
    for version in (y, to_16_bit(y)):
        measured = measure_bandwidth(version, 16000)
        # the edge itself: soxr's -3 dB point is at 0.945 of the low Nyquist
        assert_cutoff_near(measured, low_rate / 2)
        assert measured.cutoff_hz <= low_rate / 2


def test_mp3_style_low_pass_at_16_khz_in_44_1_khz():
    low_pass = scipy.signal.ellip(10, 0.1, 90, 16000, fs=44100, output="sos")
    x = to_16_bit(scipy.signal.sosfilt(low_pass, speech_like(3.0, 44100)))
    measured = measure_bandwidth(x, 44100)
    assert_cutoff_near(measured, 16000)


@pytest.mark.parametrize("cutoff_hz", [1000, 4000])
def test_zero_phase_butterworth_low_pass(cutoff_hz):
    # the gentlest low-pass the pipeline makes (low-res method "butterworth": 96 dB/octave)
    low_pass = scipy.signal.butter(8, cutoff_hz, fs=16000, output="sos")
    x = scipy.signal.sosfiltfilt(low_pass, speech_like(3.0, 16000))
    assert_cutoff_near(measure_bandwidth(x + noise_floor(len(x), "white", 70), 16000), cutoff_hz)


def test_pauses_over_a_noise_floor_are_not_active():
    rate = 16000
    signal = brick_wall(speech_like(2.0, rate), rate, 4000)
    x = np.concatenate([signal, np.zeros(10 * rate)])
    x = x + noise_floor(len(x), "white", 70)
    measured = measure_bandwidth(x, rate)
    assert_cutoff_near(measured, 4000)
    assert 0.5 <= measured.active_seconds <= 2.5
    assert -15 < measured.level_dbfs < -5  # the speech's level, not diluted by the pauses


def test_digital_silence_around_the_signal_is_ignored():
    rate = 16000
    signal = brick_wall(speech_like(2.0, rate), rate, 4000)
    x = np.concatenate([np.zeros(5 * rate), signal, np.zeros(5 * rate)])
    measured = measure_bandwidth(x, rate)
    assert_cutoff_near(measured, 4000)
    assert measured.seconds == 12.0
    assert measured.analysed_seconds == 12.0
    assert 0.5 <= measured.active_seconds <= 2.5


@pytest.mark.parametrize("mains_hz", [50, 60])
def test_mains_hum_harmonics_are_not_content(mains_hz):
    rate = 8000
    x = brick_wall(speech_like(3.0, rate), rate, 1000)
    # harmonics all the way to Nyquist, the fundamental only 20 dB under the speech
    x = x + hum(len(x), rate, mains_hz, rms=0.03)
    assert_cutoff_near(measure_bandwidth(x, rate), 1000)
    full = speech_like(3.0, 16000)
    assert measure_bandwidth(full + hum(len(full), 16000, mains_hz, rms=0.03), 16000).full_band


@pytest.mark.parametrize("level_dbfs", [-50, -60])
def test_quiet_signal_over_tpdf_dither(level_dbfs):
    rate = 8000
    # at -60 dBFS the band's top stands only about 24 dB above the dither
    x = brick_wall(speech_like(3.0, rate), rate, 3000) * 10 ** ((level_dbfs + 10) / 20)
    measured = measure_bandwidth(to_16_bit(x), rate)
    assert_cutoff_near(measured, 3000)
    assert abs(measured.level_dbfs - level_dbfs) < 5


def test_dither_alone_is_silence():
    dither_only = measure_bandwidth(to_16_bit(np.zeros(3 * 8000)), 8000)
    assert dither_only.silent and dither_only.cutoff_hz == 0.0


def test_channels_count_by_the_widest_not_by_a_mix():
    rate = 48000
    narrow = brick_wall(speech_like(3.0, rate, seed=1), rate, 8000)
    wide = brick_wall(speech_like(3.0, rate, seed=2), rate, 16000)
    stereo = measure_bandwidth(np.stack([narrow, wide], axis=1), rate)
    assert stereo.channels == 2
    assert_cutoff_near(stereo, 16000)
    # opposite phase: a down-mix would be silence
    assert_cutoff_near(measure_bandwidth(np.stack([narrow, -narrow], axis=1), rate), 8000)
    # hiss on an otherwise unused channel, 70 dB down, does not make the file full band
    hiss = noise_floor(len(narrow), "white", 70)
    assert_cutoff_near(measure_bandwidth(np.stack([narrow, hiss], axis=1), rate), 8000)


@pytest.mark.parametrize("shape", [(48000,), (48000, 2), (0,), (0, 2), (10,)])
def test_silence_and_empty_input_give_a_defined_result(shape):
    measured = measure_bandwidth(np.zeros(shape, dtype=np.float32), 16000)
    assert measured.silent
    assert measured.cutoff_hz == 0.0
    assert not measured.full_band
    assert measured.channels == (shape[1] if len(shape) == 2 else 1)
    assert all(math.isfinite(v) for v in (measured.cutoff_hz, measured.seconds, measured.level_dbfs, measured.edge_db))
    assert "silent" in str(measured)


def test_non_finite_samples_count_as_silence():
    x = brick_wall(speech_like(3.0, 16000), 16000, 4000)
    x[1000] = np.nan
    x[2000] = np.inf
    assert_cutoff_near(measure_bandwidth(x, 16000), 4000)


def test_short_input_is_measured_with_shorter_frames():
    x = brick_wall(speech_like(1.0, 16000), 16000, 4000)[4100:5700]  # 0.1 s, inside a syllable
    assert_cutoff_near(measure_bandwidth(x, 16000), 4000)


def test_file_is_measured_as_its_array(tmp_path):
    rate = 44100
    x = np.stack([brick_wall(speech_like(4.0, rate, seed=s), rate, 11000) for s in (1, 2)], axis=1)
    path = tmp_path / "stereo.flac"
    sf.write(path, x * 0.5, rate, subtype="PCM_16")
    measured = measure_file_bandwidth(path)
    assert (measured.sample_rate, measured.channels) == (rate, 2)
    assert measured.seconds == pytest.approx(4.0)
    assert_cutoff_near(measured, 11000)
    assert "of Nyquist" in str(measured)


def test_empty_and_all_zero_files(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 16000)
    zeros = tmp_path / "zeros.flac"
    sf.write(zeros, np.zeros(32000), 16000)
    for path, seconds in ((empty, 0.0), (zeros, 2.0)):
        measured = measure_file_bandwidth(path)
        assert measured.silent and measured.cutoff_hz == 0.0
        assert measured.seconds == seconds


def test_errors_from_soundfile_propagate(tmp_path):
    with pytest.raises(sf.LibsndfileError):
        measure_file_bandwidth(tmp_path / "missing.wav")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    with pytest.raises(sf.LibsndfileError):
        measure_file_bandwidth(not_audio)


def test_long_file_is_read_in_bounded_excerpts(tmp_path, monkeypatch):
    rate, minutes = 8000, 20
    block = (brick_wall(np.random.default_rng(3).standard_normal(10 * rate), rate, 2000) * 0.1).astype(np.float32)
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(minutes * 6):
            f.write(block)

    frames_read = []
    original_read = sf.SoundFile.read

    def counting_read(self, *args, **kwargs):
        data = original_read(self, *args, **kwargs)
        frames_read.append(len(data))
        return data

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    measured = measure_file_bandwidth(path, max_seconds=30.0)
    assert sum(frames_read) <= 30 * rate
    assert len(frames_read) >= 5  # excerpts spread over the file, not its first 30 s
    assert measured.analysed_seconds <= 30.0
    assert measured.seconds == minutes * 60
    assert_cutoff_near(measured, 2000)


def test_full_band_threshold():
    def at(cutoff_hz: float) -> Bandwidth:
        return Bandwidth(cutoff_hz, 16000, 1, 1.0, 1.0, 1.0, -20.0, 60.0, False)

    assert at(8000).full_band and at(7000).full_band
    assert not at(4000).full_band
    assert at(8000).nyquist_hz == 8000


@pytest.mark.parametrize("n_fft", [64, 512, 4096])
def test_window_is_scipys_periodic_blackman_harris(n_fft):
    from audio_superres.preprocessing.bandwidth import _window

    np.testing.assert_allclose(_window(n_fft), scipy.signal.get_window("blackmanharris", n_fft), atol=1e-7)


@pytest.mark.parametrize("size", [5, 8, 41])
@pytest.mark.parametrize("percentile", [0, 30, 50, 100])
def test_percentile_filter_is_scipys(size, percentile):
    import scipy.ndimage

    from audio_superres.preprocessing.bandwidth import percentile_filter

    x = np.random.default_rng(size).normal(size=300)
    np.testing.assert_array_equal(percentile_filter(x, percentile, size), scipy.ndimage.percentile_filter(x, percentile, size=size, mode="nearest"))
