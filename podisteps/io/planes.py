"""Image planes of a checkpoint read as stored: no scaled copies.

A checkpoint opened with ``do_not_scale_image_data=True`` gives each plane as FITS stores it. These readers
check that the stored form is the one expected and return the values without astropy's scaled full-frame
copy (docs/catalogue.md, "Cost").
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..errors import PodiflowError

__all__ = ["CheckpointFormatError", "stored_integers", "plain_pixels"]


class CheckpointFormatError(PodiflowError, ValueError):
    """A checkpoint plane stored in a form its reader does not take; the message names the file."""


def stored_integers(hdu: fits.ImageHDU | fits.CompImageHDU, path: str) -> np.ndarray:
    """The integers of a MASK plane read with ``do_not_scale_image_data``, without astropy's scaled copy.

    FITS stores an unsigned plane as signed integers with ``BZERO = 2^(bits - 1)``: the unsigned value is the
    stored one with its top bit flipped, done here in place in the decompressed plane: no scaled full-frame
    copy (about 20 ms of the 50 ms that reading a full-size OTA's MASK plane costs).

    Parameters
    ----------
    hdu : astropy.io.fits.ImageHDU or astropy.io.fits.CompImageHDU
        The plane, from a file opened with ``do_not_scale_image_data=True``; shape ``(ny, nx)``.
    path : str
        The file, for the error message.

    Returns
    -------
    numpy.ndarray
        The plane's values (unsigned for an unsigned plane), shape ``(ny, nx)``.

    Raises
    ------
    CheckpointFormatError
        The plane is not integers, or scaled other than by the unsigned convention.
    """
    raw, bzero = hdu.data, hdu.header.get("BZERO", 0)
    unsigned_convention = raw.dtype.kind == "i" and bzero == 2 ** (8 * raw.itemsize - 1)
    if raw.dtype.kind not in "iu" or hdu.header.get("BSCALE", 1) != 1 or not (bzero == 0 or unsigned_convention):
        raise CheckpointFormatError(f"{path}: {hdu.name} is not an integer plane (dtype {raw.dtype}, BZERO {bzero})")
    if bzero == 0:
        return raw
    unsigned = raw.view(raw.dtype.str.replace("i", "u"))
    return np.bitwise_xor(unsigned, bzero, out=unsigned if unsigned.flags.writeable else None)


def plain_pixels(hdu: fits.ImageHDU, path: str) -> np.ndarray:
    """The pixels of an image plane that must be stored unscaled (no ``BSCALE``/``BZERO``), as stored.

    Parameters
    ----------
    hdu, path
        As for :func:`stored_integers` (an image plane, and its file for the message).

    Returns
    -------
    numpy.ndarray
        The stored pixels (big-endian as in the file), shape ``(ny, nx)``.

    Raises
    ------
    CheckpointFormatError
        The plane is scaled.
    """
    if (hdu.header.get("BSCALE", 1), hdu.header.get("BZERO", 0)) != (1, 0):
        raise CheckpointFormatError(f"{path}: the image plane is scaled (BSCALE/BZERO); expected plain pixels")
    return hdu.data
