"""podisteps.io.plaintable.read_table: the same rows as astropy's FITS_rec, plain tables read straight."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.errors import PodiflowError
from podisteps.io import plaintable
from podisteps.io.plaintable import read_table


def _write(path, columns):
    rng = np.random.default_rng(7)
    table = Table({name: (rng.normal(size=50) * 1000).astype(dtype) for name, dtype in columns})
    hdu = fits.table_to_hdu(table)
    hdu.name = "CAT.ODI"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return table


def _same_as_astropy(path):
    with fits.open(path) as hdul:
        ours = read_table(hdul["CAT.ODI"], str(path))
        theirs = Table(hdul["CAT.ODI"].data)
        plain = plaintable._plain_dtype(hdul["CAT.ODI"].header) is not None
    assert ours.colnames == theirs.colnames
    for name in theirs.colnames:
        assert ours[name].dtype == theirs[name].dtype
        np.testing.assert_array_equal(ours[name], theirs[name])
    return ours, plain


def test_plain_numeric_table_read_straight(tmp_path):
    cols = [("X", "f8"), ("MAG", "f4"), ("FLAGS", "i2"), ("ID", "i4"), ("BIG", "i8")]
    truth = _write(tmp_path / "t.fits", cols)
    ours, plain = _same_as_astropy(tmp_path / "t.fits")
    assert plain
    np.testing.assert_array_equal(ours["MAG"], truth["MAG"])


def test_other_columns_fall_back_to_astropy(tmp_path):
    _write(tmp_path / "t.fits", [("X", "f8"), ("OK", "bool")])
    _, plain = _same_as_astropy(tmp_path / "t.fits")
    assert not plain


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_cut_short_file_is_one_clear_error(tmp_path):
    path = tmp_path / "t.fits"
    _write(path, [("X", "f8")])
    data = path.read_bytes()
    with fits.open(path) as hdul:
        start = hdul[1].fileinfo()["datLoc"]
    path.write_bytes(data[: start + 8 * 10])
    with fits.open(path) as hdul, pytest.raises(PodiflowError, match=r"t\.fits: CAT\.ODI holds 10 of its 50 rows"):
        read_table(hdul["CAT.ODI"], str(path))
