"""The scores (:mod:`audio_superres.pipeline.evaluation.metrics`): the error split by frequency band
(the SNR and LSD against values computed by hand are in test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from audio_superres.pipeline.evaluation.metrics import band_energy, snr

from ...conftest import tone


def test_band_energy_splits_the_error_by_band():
    rate = 16000
    low, high = tone(500, 1.0, rate, 0.5), tone(3000, 1.0, rate, 0.25)
    y = low + high
    # the high tone at half its amplitude, in phase: error (0.5 a)^2, cross 0.5 a^2, in the 3-4 kHz band
    rows = {r["band"]: r for r in band_energy(y, low + 0.5 * high, rate, (0, 2000, 3000, 4000, 8000))}
    share = 100 * 0.25**2 / (0.5**2 + 0.25**2)  # the high tone's share of the energy: 20%
    assert rows["3000-4000"]["truth"] == pytest.approx(share, rel=1e-6)
    assert rows["3000-4000"]["estimate"] == pytest.approx(share * 0.25, rel=1e-6)
    assert rows["3000-4000"]["cross"] == pytest.approx(share * 0.5, rel=1e-6)
    assert rows["3000-4000"]["error"] == pytest.approx(share * 0.25, rel=1e-6)
    assert rows["0-2000"]["truth"] == pytest.approx(100 - share, rel=1e-6) and rows["0-2000"]["error"] < 1e-9
    assert rows["2000-3000"]["truth"] < 1e-9 and rows["4000-8000"]["truth"] < 1e-9
    # the bands' errors are the whole error (Parseval), so they give the SNR
    for estimate in (low, low + 0.5 * high, low - high, low + np.roll(high, 3)):
        total = sum(r["error"] for r in band_energy(y, estimate, rate, (0, 2000, 8000)))
        assert -10 * np.log10(total / 100) == pytest.approx(snr(y, estimate), abs=1e-6)
    # an uncorrelated band of the right level doubles the error there: worse than leaving it empty
    rng = np.random.default_rng(0)
    truth, guess = rng.standard_normal(rate), rng.standard_normal(rate)
    (row,) = band_energy(truth, guess, rate, (0, 8000))
    assert row["error"] == pytest.approx(row["truth"] + row["estimate"] - 2 * row["cross"], rel=1e-9)
    assert row["error"] == pytest.approx(2 * row["truth"], rel=0.05) and abs(row["cross"]) < 0.05 * row["truth"]
    with pytest.raises(ValueError, match="differ in shape"):
        band_energy(y, y[:-1], rate, (0, 8000))
