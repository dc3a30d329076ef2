"""Flat-field level, normalisation and gain (docs/masters.md, 'Flat')."""

import numpy as np
import pytest

from podisteps import instrument
from podisteps.masters.flatfield import flat_gain, flat_level, normalise_flat

N = 128   # small OTA frames; the recipe does not depend on the size


def _flat_frame(rng, level, layout):
    """OTA frames at `level` with 1 % pixel noise; the OTAs outside the normalisation list at 10 %."""
    norm = layout.flat_normalisation_otas("odi_r")
    return {ota: (level * (1.0 if ota in norm else 0.1) * (1 + 0.01 * rng.standard_normal((N, N))))
            .astype(np.float32) for ota in layout.otas}


def _quickreduce_level(otas, norm):
    """podi_makeflatfield.normalize_flatfield's level, transcribed (open ranges, NaN blocks dropped)."""
    data = np.concatenate([otas[o].reshape(N // 8, 8, N // 8, 8).mean(axis=-1).mean(axis=1).ravel()
                           for o in norm])
    data = data[np.isfinite(data)]
    lo, hi = -1e5, 1e6
    for _ in range(3):
        valid = (data > lo) & (data < hi)
        level, std = np.median(data[valid]), np.std(data[valid])
        lo, hi = level - 2 * std, level + 3 * std
    return level


def test_level_from_normalisation_otas_only():
    rng = np.random.default_rng(1)
    layout = instrument.layout("podi")
    otas = _flat_frame(rng, 20000.0, layout)
    norm = layout.flat_normalisation_otas("odi_r")
    assert 0 not in norm                                   # OTA00 is the vignetted corner
    otas[33][:, :13] = np.nan                              # gaps and dead regions are skipped
    otas[34][40:48, :] = 60000.0                           # bright bleed rows are clipped away
    level = flat_level(otas, norm)
    assert level == pytest.approx(_quickreduce_level(otas, norm), rel=1e-6)
    assert level == pytest.approx(20000.0, rel=2e-4)
    assert flat_level({o: otas[o] for o in norm}, norm) == level       # the vignetted OTA plays no part
    normalised, lowflat = normalise_flat(otas, level)
    assert np.nanmedian(normalised[44]) == pytest.approx(1.0, abs=1e-3)
    low = otas[0] / level < 0.1                            # about half of the vignetted OTA at 0.1
    assert 0.3 < low.mean() < 0.7
    np.testing.assert_array_equal(lowflat[0], low)
    assert np.isnan(normalised[0][low]).all() and not np.isnan(normalised[0][~low]).any()


def test_level_errors():
    with pytest.raises(ValueError, match="no finite"):
        flat_level({33: np.full((16, 16), np.nan)}, [33])
    with pytest.raises(ValueError, match="no finite"):
        flat_level({0: np.ones((16, 16))}, [33])
    with pytest.raises(ValueError, match="not positive"):
        flat_level({33: np.full((16, 16), -5.0)}, [33])


def test_level_binning_ignores_partial_blocks():
    frame = np.full((20, 20), 100.0)
    frame[16:, :] = 1e5 - 1          # only in the partial 8x8 row of blocks: ignored
    assert flat_level({33: frame}, [33]) == 100.0


def test_normalise_flat():
    frame = np.array([[1000.0, 50.0], [np.nan, 2000.0]], np.float32)
    normalised, lowflat = normalise_flat({33: frame}, 1000.0)
    np.testing.assert_array_equal(normalised[33], [[1.0, np.nan], [np.nan, 2.0]])
    np.testing.assert_array_equal(lowflat[33], [[False, True], [False, False]])
    assert normalised[33].dtype == np.float32
    assert frame[0, 1] == 50.0                             # input untouched


def test_flat_gain_weighted_by_ngain():
    gains = {33: (1.5, 64), 34: (1.8, 32), 0: (9.0, 64), 43: (2.0, 0), 44: (float("nan"), 10)}
    assert flat_gain(gains, [33, 34, 43, 44, 22]) == pytest.approx((1.5 * 64 + 1.8 * 32) / 96)
    assert flat_gain(gains, [22]) == -1.0
