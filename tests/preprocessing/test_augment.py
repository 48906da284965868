"""Channel augmentation: invariants over many random draws, and each effect measured on generated
signals against the value that was drawn for it."""

import dataclasses

import numpy as np
import pytest
import scipy.signal

from audio_superres.preprocessing.augment import OFF, ON_RECIPE, PEAK, ROOM_ONSET_S, Augmentation, Draw, apply, augment, biquad, draw, room_response

SR = 16000
ALL_ON = Augmentation(p_tilt=1.0, p_eq=1.0, p_room=1.0, p_noise=1.0, p_level=1.0)
ALONE = {p: Augmentation(**{p: 1.0}) for p in ("p_tilt", "p_eq", "p_room", "p_noise", "p_level")}
# wider than any recipe: EQ boosts and gains that push the peak past full scale
HARSH = dataclasses.replace(ALL_ON, tilt_db_per_octave=(-6.0, 6.0), eq_gain_db=(-15.0, 15.0), drr_db=(-5.0, 5.0), rt60_s=(0.05, 1.5), level_db=(-10.0, 20.0))


def white(seconds: float = 2.0, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def signals() -> list[np.ndarray]:
    """Clips of 1.55-2 s (and some odd ones), peaks within the bound (a clip that is left alone keeps
    its own): noise, a full-scale square wave, silence, a click."""
    t = np.arange(31003) / SR
    click = np.zeros(24800, np.float32)
    click[100] = PEAK
    return [
        white(1.55),
        white(2.0, amplitude=0.2, seed=1),
        (PEAK * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32),
        np.zeros(32000, np.float32),
        click,
        white(0.01, seed=2),
        np.array([0.5], np.float32),
    ]


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30)


def gain_curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the power gain from ``x`` to ``y`` there (dB), by Welch's method."""
    f, pxx = scipy.signal.welch(x, SR, nperseg=2048)
    _, pyy = scipy.signal.welch(y, SR, nperseg=2048)
    return f, 10 * np.log10(pyy / pxx)


def slope_db_per_octave(f: np.ndarray, level_db: np.ndarray, lo: float = 100.0, hi: float = 7000.0) -> float:
    band = (f >= lo) & (f <= hi)
    return float(np.polyfit(np.log2(f[band]), level_db[band], 1)[0])


def test_off_is_identity_and_draws_nothing():
    assert Augmentation() == OFF and not OFF.active and ON_RECIPE.active
    for x in signals():
        rng = np.random.default_rng(0)
        before = rng.bit_generator.state
        y = augment(x, SR, OFF, rng)
        assert y is x and rng.bit_generator.state == before
    # on, but nothing fired
    x = white()
    assert apply(x, SR, Draw(seed=5)) is x
    assert augment(x, SR, Augmentation(p_room=1e-12), np.random.default_rng(0)) is x


def test_same_seed_same_output():
    x = white(seed=3)
    a, b = (augment(x, SR, ALL_ON, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, augment(x, SR, ALL_ON, np.random.default_rng(8)))
    assert draw(ON_RECIPE, np.random.default_rng(7)) == draw(ON_RECIPE, np.random.default_rng(7))


@pytest.mark.parametrize("name", [*ALONE, "all", "recipe", "harsh"])
def test_length_dtype_finite_peak(name):
    aug = {"all": ALL_ON, "recipe": ON_RECIPE, "harsh": HARSH}.get(name) or ALONE[name]
    rng = np.random.default_rng(11)
    for _ in range(6):
        for x in signals():
            y = augment(x, SR, aug, rng)
            assert y.dtype == np.float32 and y.shape == x.shape
            assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= PEAK


def test_draws_stay_in_their_ranges_and_fire_at_their_rates():
    rng = np.random.default_rng(0)
    draws = [draw(ON_RECIPE, rng) for _ in range(2000)]
    for p, fired in [
        (ON_RECIPE.p_tilt, [d.tilt_db_per_octave is not None for d in draws]),
        (ON_RECIPE.p_eq, [bool(d.eq) for d in draws]),
        (ON_RECIPE.p_room, [d.room is not None for d in draws]),
        (ON_RECIPE.p_noise, [d.noise is not None for d in draws]),
        (ON_RECIPE.p_level, [d.level_db is not None for d in draws]),
    ]:
        assert abs(np.mean(fired) - p) < 0.04
    r = ON_RECIPE

    def within(value, low_high) -> bool:
        return low_high[0] <= value <= low_high[1]

    for d in draws:
        assert d.tilt_db_per_octave is None or within(d.tilt_db_per_octave, r.tilt_db_per_octave)
        assert not d.eq or within(len(d.eq), r.eq_bands)
        for kind, f0, gain, q in d.eq:
            assert within(f0, r.eq_freq_hz) and within(gain, r.eq_gain_db) and (within(q, r.eq_q) if kind == "peak" else q == 2**-0.5)
        assert d.room is None or (within(d.room[0], r.rt60_s) and within(d.room[1], r.drr_db))
        assert d.noise is None or within(d.noise[0], r.noise_db)
        assert d.level_db is None or within(d.level_db, r.level_db)
    assert 0.4 < np.mean([d.noise[1] for d in draws if d.noise]) < 0.6  # pink about half the time


@pytest.mark.parametrize("seed", range(4))
def test_tilt_slope_matches_the_drawn_tilt(seed):
    d = draw(Augmentation(p_tilt=1.0, tilt_db_per_octave=(-3.0, 3.0)), np.random.default_rng(seed))
    x = white(4.0, seed=seed)
    f, gain = gain_curve(x, apply(x, SR, d))
    assert slope_db_per_octave(f, gain) == pytest.approx(d.tilt_db_per_octave, abs=0.02)
    assert abs(np.interp(1000.0, f, gain)) < 0.3  # pivot at 1 kHz


@pytest.mark.parametrize("f0", [300.0, 1000.0, 3000.0, 6000.0])
def test_peaking_eq_raises_the_band_around_f0(f0):
    x = white(4.0)
    f, gain = gain_curve(x, apply(x, SR, Draw(eq=(("peak", f0, 6.0, 1.0),))))
    assert np.interp(f0, f, gain) == pytest.approx(6.0, abs=0.5)
    far = (f > 0) & ((f < f0 / 8) | (f > f0 * 8))
    assert np.all(np.abs(gain[far]) < 0.6)


@pytest.mark.parametrize("kind, at_dc, at_nyquist", [("low_shelf", 6.0, 0.0), ("high_shelf", 0.0, 6.0), ("peak", 0.0, 0.0)])
def test_biquads_follow_the_cookbook(kind, at_dc, at_nyquist):
    b, a = biquad(kind, 1000.0, 6.0, 2**-0.5, SR)
    _, h = scipy.signal.freqz(b, a, worN=[0.0, 1000.0, SR / 2], fs=SR)
    db = 20 * np.log10(np.abs(h))
    assert db[0] == pytest.approx(at_dc, abs=0.05) and db[2] == pytest.approx(at_nyquist, abs=0.05)
    assert db[1] == pytest.approx(6.0 if kind == "peak" else 3.0, abs=0.05)  # shelves: half way at f0


@pytest.mark.parametrize("seed", range(4))
def test_noise_floor_level_and_colour(seed):
    d = draw(ALONE["p_noise"], np.random.default_rng(seed))
    x = white(4.0, seed=seed)
    noise = apply(x, SR, d).astype(np.float64) - x
    assert rms_db(noise) - rms_db(x) == pytest.approx(d.noise[0], abs=1.0)
    f, psd = scipy.signal.welch(noise, SR, nperseg=2048)
    expected = -10 * np.log10(2) if d.noise[1] else 0.0  # pink: -3.01 dB per octave
    assert slope_db_per_octave(f, 10 * np.log10(psd)) == pytest.approx(expected, abs=0.2)


def test_both_noise_colours_are_tested():
    assert {draw(ALONE["p_noise"], np.random.default_rng(s)).noise[1] for s in range(4)} == {True, False}


@pytest.mark.parametrize("seed", range(3))
def test_room_keeps_the_direct_path_at_lag_0(seed):
    d = draw(Augmentation(p_room=1.0, drr_db=(0.0, 20.0), rt60_s=(0.1, 0.6)), np.random.default_rng(seed))
    x = white(2.0, seed=seed)
    y = apply(x, SR, d)
    xcorr = scipy.signal.fftconvolve(y, x[::-1])
    assert int(np.argmax(np.abs(xcorr))) - (len(x) - 1) == 0
    # the same as fftconvolve with the room's response, cut to the clip's length
    rir = room_response(SR, *d.room, np.random.default_rng(d.seed))
    assert np.allclose(y, scipy.signal.fftconvolve(x, rir)[: len(x)], atol=1e-6)


@pytest.mark.parametrize("rt60", [0.15, 0.3, 0.6])
def test_room_decay_time_and_direct_to_reverberant_ratio(rt60):
    x = np.zeros(2 * SR, np.float32)
    x[0] = 0.5
    h = apply(x, SR, Draw(room=(rt60, 3.0), seed=1)).astype(np.float64) / 0.5
    assert h[0] == pytest.approx(1.0, abs=1e-5)
    assert 10 * np.log10(h[0] ** 2 / np.sum(h[1:] ** 2)) == pytest.approx(3.0, abs=0.05)
    tail = h[int(ROOM_ONSET_S * SR) :] ** 2
    edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum() + 1e-30)  # Schroeder integral
    fit = (edc <= -5) & (edc >= -25)
    slope = np.polyfit(np.flatnonzero(fit) / SR, edc[fit], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.15)


def test_level_changes_rms_by_the_drawn_gain():
    rng = np.random.default_rng(0)
    x = white(2.0, amplitude=0.05)  # peak ~0.2: 0 dB at most never reaches full scale
    for _ in range(20):
        d = draw(ALONE["p_level"], rng)
        assert rms_db(apply(x, SR, d)) - rms_db(x) == pytest.approx(d.level_db, abs=1e-3)


def test_level_scales_down_rather_than_clips():
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)  # peak 1.0: 1 LSB past the limit
    for level in (0.0, 12.0):
        y = apply(x, SR, Draw(level_db=level))
        assert np.max(np.abs(y)) == pytest.approx(PEAK, abs=1e-7)
        assert np.allclose(y, x * (PEAK / np.max(np.abs(x))), atol=1e-6)  # same shape, no flat tops
