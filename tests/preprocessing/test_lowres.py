import numpy as np
import pytest
import scipy.signal

from audio_superres.preprocessing.lowres import make_lowres

from ..conftest import tone

SR, FACTOR = 16000, 4
METHODS = ["soxr", "decimate", "subsample", "butterworth"]


def level_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 3, 4, 29, 1000, 32000, 32003])
def test_length_is_n_over_factor(method, n):
    assert len(make_lowres(np.random.default_rng(0).standard_normal(n), FACTOR, method, SR)) == n // FACTOR


@pytest.mark.parametrize("method", METHODS)
def test_passband_tone_survives(method):
    x = tone(500, 2.0, SR)
    y = make_lowres(x, FACTOR, method, SR)
    expected = tone(500, 2.0, SR // FACTOR)
    core = slice(400, -400)  # away from filter edge effects
    err = level_db(y[core] - expected[core]) - level_db(expected[core])
    assert err < -25, f"{method}: in-band tone distorted ({err:.1f} dB)"


def test_soxr_removes_content_above_new_nyquist():
    x = tone(3000, 2.0, SR)  # above the 2 kHz Nyquist of the 4 kHz twin
    y = make_lowres(x, FACTOR, "soxr", SR)
    assert level_db(y[200:-200]) - level_db(x) < -60


def test_subsample_aliases():
    x = tone(3000, 2.0, SR)
    y = make_lowres(x, FACTOR, "subsample", SR)
    assert abs(level_db(y) - level_db(x)) < 0.5  # the tone folds to 1 kHz at full level
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * (SR // FACTOR) / len(y) - 1000) < 2


def test_decimate_matches_scipy_and_butterworth_attenuates():
    x = np.random.default_rng(1).standard_normal(32000).astype(np.float32)
    ref = scipy.signal.decimate(x, FACTOR, n=8, ftype="iir", zero_phase=True)
    assert np.max(np.abs(make_lowres(x, FACTOR, "decimate", SR) - ref)) < 1e-4
    high = tone(3000, 2.0, SR)
    assert level_db(make_lowres(high, FACTOR, "butterworth", SR)[200:-200]) - level_db(high) < -40


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown low-res method 'magic'"):
        make_lowres(np.zeros(8), FACTOR, "magic")
