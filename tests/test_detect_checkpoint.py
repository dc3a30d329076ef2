"""Reading the MASK plane of a checkpoint for the source catalogue (``podisteps.io.planes``)."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps.io.planes import CheckpointFormatError, plain_pixels, stored_integers


def _mask(shape=(40, 50)):
    rng = np.random.default_rng(3)
    return rng.choice(np.array([0, 1, 8, 16, 24, 40000, 65535], np.uint16), shape)


@pytest.mark.parametrize("compressed", [True, False])
def test_unsigned_mask_plane_read_unscaled_equals_astropy_scaled(tmp_path, compressed):
    mask = _mask()
    hdu = fits.CompImageHDU(mask, name="MASK") if compressed else fits.ImageHDU(mask, name="MASK")
    path = str(tmp_path / "ckpt.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(mask.shape, np.float32)), hdu]).writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[2].data.dtype.kind == "i"  # stored signed, BZERO 32768
        values = stored_integers(hdul[2], path)
        assert values.dtype.kind == "u" and np.array_equal(values, mask)
        assert np.array_equal(values & 24, mask & 24)


def test_non_integer_plane_is_refused_with_the_file_name(tmp_path):
    path = str(tmp_path / "ckpt.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), np.float32), name="MASK")]).writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul, pytest.raises(CheckpointFormatError, match="ckpt.fits"):
        stored_integers(hdul[1], path)


def test_scaled_image_plane_is_refused_with_the_file_name(tmp_path):
    path = str(tmp_path / "ckpt.fits")
    hdu = fits.ImageHDU(np.arange(16, dtype=np.int16).reshape(4, 4))
    hdu.header["BZERO"], hdu.header["BSCALE"] = 10.0, 2.0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul, pytest.raises(CheckpointFormatError, match="ckpt.fits"):
        plain_pixels(hdul[1], path)
