"""Non-linearity: table reader, correction and its inverse."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps.detrend.nonlinearity import (CellNonlinearity, apply_nonlinearity, invert_nonlinearity,
                                            nonlinearity_hdulist, read_nonlinearity)

C2, C3 = -3.2e-7, 4.6e-12  # medians of the 5x6 v2 table (docs/calibrations.md, 'Non-linearity tables')


def test_inverse_round_trip_over_full_range():
    linear = np.linspace(0, 60000, 6001)
    raw = invert_nonlinearity(linear, C2, C3)
    assert np.max(np.abs(apply_nonlinearity(raw, C2, C3) - linear)) < 1e-3
    # Sanity: the correction at 50 kADU is a few hundred ADU, as in the real tables.
    assert -500 < apply_nonlinearity(np.array(50000.0), C2, C3) - 50000 < -100


def test_inverse_keeps_nan_and_reports_no_root():
    out = invert_nonlinearity(np.array([np.nan, 1000.0]), C2, C3)
    assert np.isnan(out[0]) and np.isfinite(out[1])
    with pytest.raises(ValueError, match="did not converge"):
        invert_nonlinearity(np.array([-100.0]), 0.014, 0.0)  # absurd coefficient: no real root


def test_apply_promotes_integers():
    out = apply_nonlinearity(np.array([10000], dtype=np.uint16), C2, C3)
    assert out.dtype == np.float64 and out[0] == pytest.approx(10000 + C2 * 1e8 + C3 * 1e12)


def _rows():
    return {
        (33, 0, 0): CellNonlinearity(C2, C3, 1.1, 64000.0, True),
        (33, 7, 7): CellNonlinearity(2 * C2, 0.0, 0.9, 63000.0, True),
        (44, 1, 2): CellNonlinearity(C2, C3, 1.0, 65535.0, True),
    }


def test_table_round_trip_and_missing_cells(tmp_path):
    path = tmp_path / "nonlin.fits"
    nonlinearity_hdulist(_rows()).writeto(path)
    with fits.open(path) as hdul:
        table = read_nonlinearity(hdul)
    assert table.otas == (33, 44) and table.has_relative_gain
    cell = table.cell(33, 7, 7)
    assert (cell.c2, cell.c3, cell.relative_gain, cell.satlevel, cell.in_table) == (2 * C2, 0.0, 0.9, 63000.0, True)
    missing = table.cell(33, 3, 3)
    assert missing.c2 == 0 and missing.c3 == 0 and not missing.in_table
    assert np.isnan(missing.relative_gain)  # not 0 (docs/quickreduce.md, defect 4)
    per_ota = table.for_ota(33)
    assert len(per_ota) == 64 and sum(c.in_table for c in per_ota.values()) == 2


def test_old_table_without_extname_relgain_and_with_bad_tdisp(tmp_path):
    cols = [fits.Column(n, "E", array=np.array(v, dtype=np.float32))
            for n, v in (("COEFF_X**2", [C2]), ("COEFF_X**3", [C3]), ("UNCERT_COEFF_X**2", [0]),
                         ("UNCERT_COEFF_X**3", [0]))]
    cols = [fits.Column(n, "B", array=np.array([v], dtype=np.uint8)) for n, v in (("OTA", 16), ("CELLX", 2),
                                                                                   ("CELLY", 5))] + cols
    table = fits.BinTableHDU.from_columns(cols)
    assert "EXTNAME" not in table.header
    for i in range(4, 8):
        table.header[f"TDISP{i}"] = "%12.5f"  # non-standard, as in some QuickReduce tables
    path = tmp_path / "nonlinearity_pre20131014.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, output_verify="silentfix")
    with fits.open(path) as hdul:
        nl = read_nonlinearity(hdul)  # filterwarnings=error: the TDISP warning must be suppressed
    assert not nl.has_relative_gain
    assert nl.cell(16, 2, 5).c2 == pytest.approx(C2) and np.isnan(nl.cell(16, 2, 5).relative_gain)


def test_reader_rejects_missing_columns(tmp_path):
    path = tmp_path / "x.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("OTA", "B", array=np.array([1], dtype=np.uint8))])]).writeto(path)
    with fits.open(path) as hdul, pytest.raises(ValueError, match="x.fits.*CELLX"):
        read_nonlinearity(hdul)
