"""Photon transfer gain and read noise, and the TECHDATA file (docs/reduction-steps.md, 'Gain and read noise';
docs/masters.md, 'Gain and read noise by photon transfer')."""

import math

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend import calibrate
from podisteps.detrend.calibrate import CellNoise
from podisteps.masters.techdata import (photon_transfer, readnoise_from_bias_pairs, robust_sigma, scaled_border,
                                        techdata_hdulist)

GAIN, RN = 1.7, 6.5          # e-/ADU, ADU
SHAPE = (494, 480)           # full-size bin1 data section


def _bias(rng, structure):
    return structure + rng.normal(0.0, RN, SHAPE)


def _flat(rng, structure, response, level):
    electrons = rng.poisson(level * GAIN * response)
    return structure + electrons / GAIN + rng.normal(0.0, RN, SHAPE)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(2024)
    structure = rng.normal(0.0, 3.0, SHAPE)                  # fixed bias pattern, cancels in differences
    response = 1 + 0.02 * rng.standard_normal(SHAPE)         # pixel response non-uniformity, cancels too
    return ([_flat(rng, structure, response, 12000.0) for _ in range(2)],
            [_bias(rng, structure) for _ in range(2)], rng)


def test_photon_transfer_recovers_gain_and_readnoise(frames):
    (f1, f2), (b1, b2), _ = frames
    noise = photon_transfer(f1, f2, b1, b2)
    assert noise.gain == pytest.approx(GAIN, rel=0.02)
    assert noise.readnoise == pytest.approx(RN, rel=0.03)
    assert noise.readnoise_e == pytest.approx(noise.gain * noise.readnoise)


def test_photon_transfer_ignores_cosmic_rays(frames):
    (f1, f2), (b1, b2), rng = frames
    f1 = f1.copy()
    hits = rng.random(SHAPE) < 0.002
    f1[hits] += 30000.0
    assert photon_transfer(f1, f2, b1, b2).gain == pytest.approx(GAIN, rel=0.02)


def test_photon_transfer_without_signal_gives_nan(frames):
    _, (b1, b2), _ = frames
    noise = photon_transfer(b1, b2, b1, b2)
    assert math.isnan(noise.gain) and math.isnan(noise.readnoise_e)
    assert noise.readnoise == pytest.approx(RN, rel=0.03)


def test_border_is_left_out(frames):
    (f1, f2), (b1, b2), _ = frames
    b1 = b1.copy()
    b1[:25, :] += np.random.default_rng(1).normal(0, 100, (25, SHAPE[1]))   # noisy edge rows
    assert readnoise_from_bias_pairs([(b1, b2)]) == pytest.approx(RN, rel=0.03)
    assert readnoise_from_bias_pairs([(b1, b2)], border=5) > 1.05 * RN
    with pytest.raises(ValueError, match="leaves nothing"):
        photon_transfer(f1[:40, :40], f2[:40, :40], b1[:40, :40], b2[:40, :40])


def test_readnoise_from_bias_pairs_averages():
    rng = np.random.default_rng(7)
    pairs = [(rng.normal(0, rn, (62, 60)), rng.normal(0, rn, (62, 60))) for rn in (4.0, 6.0)]
    border = scaled_border(instrument.geometry("test", 1))
    single = [readnoise_from_bias_pairs([p], border=border) for p in pairs]
    assert readnoise_from_bias_pairs(pairs, border=border) == pytest.approx(np.mean(single))
    assert single[0] == pytest.approx(4.0, rel=0.1) and single[1] == pytest.approx(6.0, rel=0.1)
    assert math.isnan(readnoise_from_bias_pairs([]))


def test_scaled_border_and_robust_sigma():
    assert scaled_border(instrument.geometry("full", 1)) == 25
    assert scaled_border(instrument.geometry("full", 2)) == 12
    assert scaled_border(instrument.geometry("test", 1)) == 3
    assert scaled_border(instrument.geometry("test", 2)) == 2
    v = np.random.default_rng(3).normal(0, 2.0, 200_000)
    v[:100] = np.nan
    assert robust_sigma(v) == pytest.approx(2.0, rel=0.01)
    assert math.isnan(robust_sigma([np.nan]))


def test_techdata_round_trip(tmp_path):
    values = {(33, 0, 0): CellNoise(1.5, 6.0, 9.0), (33, 7, 2): (1.6, 6.1, 9.76), (16, 3, 7): (1.9, 7.0, 13.3),
              (0, 5, 5): CellNoise(1.2, 5.0, 6.0)}
    hdul = techdata_hdulist(values, header={"FILTER": "odi_r", "BINNING": (1, "binning")})
    path = tmp_path / calibrate.techdata_filename("dflat", "odi_r", 1)
    hdul.writeto(path)
    with fits.open(path) as back:
        assert back[0].header["FILTER"] == "odi_r"
        for name in ("GAIN", "READNOISE", "READNOISE_E"):
            assert back[name].data.shape == (64, 64) and back[name].header["BITPIX"] == -32
        assert back["GAIN"].data[3 * 8 + 7 - 2, 3 * 8 + 7] == np.float32(1.6)   # TECHDATA layout (docs/calibrations.md, 'TECHDATA file'), OTA33 cell 72
        assert np.isfinite(back["GAIN"].data).sum() == 4
        for ota in (33, 16, 0):
            cells = calibrate.read_techdata(back, ota)
            for (o, cx, cy), expected in values.items():
                if o == ota:
                    got = cells[(cx, cy)]
                    triple = (expected.gain, expected.readnoise, expected.readnoise_e) \
                        if isinstance(expected, CellNoise) else expected
                    assert (got.gain, got.readnoise, got.readnoise_e) == pytest.approx(triple, rel=1e-6)
        assert math.isnan(calibrate.read_techdata(back, 33)[(1, 1)].gain)
