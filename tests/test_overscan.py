"""Overscan subtraction: scalar (QuickReduce) and row-wise."""

import numpy as np
import pytest

from podisteps import instrument
from podisteps.detrend.overscan import overscan_level, overscan_row_levels, subtract_overscan


@pytest.mark.parametrize("kind, binning", [("test", 1), ("test", 2), ("full", 2)])
def test_scalar_level_is_median_of_block(kind, binning):
    geo = instrument.geometry(kind, binning)
    rng = np.random.default_rng(1)
    cell = rng.integers(1000, 1100, (geo.raw_ny, geo.raw_nx)).astype(np.uint16)
    rows, cols = geo.overscan_section()
    cell[rows, cols] = 700 + rng.integers(0, 3, cell[rows, cols].shape)
    expected = float(np.median(cell[rows, cols]))
    corrected, level = subtract_overscan(cell, geo)
    assert level == expected
    assert corrected.dtype == np.float32
    assert np.array_equal(corrected, cell.astype(np.float64) - expected)
    assert cell.dtype == np.uint16 and cell.max() < 1100  # input untouched


def test_narrow_overscan_is_clipped_and_missing_overscan_raises():
    geo = instrument.geometry("test", 1)
    cell = np.zeros((geo.raw_ny, geo.overscan_cols[0] + 2), dtype=np.float32)
    cell[:, geo.overscan_cols[0]:] = 5.0
    assert overscan_level(cell, geo) == 5.0
    with pytest.raises(ValueError, match="no overscan"):
        overscan_level(cell[:, :geo.overscan_cols[0]], geo)


def test_rowwise_follows_a_gradient_and_ignores_outliers():
    geo = instrument.geometry("test", 1)
    rng = np.random.default_rng(2)
    rows = np.arange(geo.raw_ny, dtype=np.float64)
    cell = (500.0 + 0.5 * rows)[:, None] + rng.normal(0, 1, (geo.raw_ny, geo.raw_nx))
    cell[10, geo.overscan_cols[0]:] += 1000  # a hot overscan row is smoothed away
    levels = overscan_row_levels(cell, geo, window=5)
    assert levels.shape == (geo.raw_ny,)
    assert np.max(np.abs(levels - (500.0 + 0.5 * rows))) < 2.0
    corrected, returned = subtract_overscan(cell, geo, rowwise=True, window=5)
    assert np.array_equal(returned, levels)
    assert abs(np.median(corrected[:, geo.overscan_cols[0]:])) < 0.5


def test_rowwise_extends_rows_outside_block():
    geo = instrument.geometry("full", 2)  # overscan rows 0..245 of 247
    cell = np.tile(np.arange(geo.raw_ny, dtype=np.float32)[:, None], (1, geo.raw_nx))
    levels = overscan_row_levels(cell, geo, window=1)
    assert levels[245] == 245 and levels[246] == 245


def test_inplace_scalar_subtraction_is_bit_identical():
    """Crosstalk-corrected (non-integer) float32 cells: in place, the same float32 values as the float64 route."""
    geo = instrument.geometry("test", 1)
    rng = np.random.default_rng(5)
    cell = (rng.normal(1000.0, 30.0, (geo.raw_ny, geo.raw_nx)) * 1.000137).astype(np.float32)
    expected, level = subtract_overscan(cell, geo)
    work = cell.copy()
    corrected, same_level = subtract_overscan(work, geo, inplace=True)
    assert corrected is work and same_level == level
    assert corrected.tobytes() == expected.tobytes()
    assert np.array_equal(expected, (cell.astype(np.float64) - level).astype(np.float32))
    raw = cell.astype(np.uint16)  # not float32: a new array, the input untouched
    out, _ = subtract_overscan(raw, geo, inplace=True)
    assert out is not raw and out.dtype == np.float32 and np.array_equal(raw, cell.astype(np.uint16))
