"""Writing raw ODI OTA files (docs/formats.md, 'Raw exposures'): the simulator's and the tests' raw frames.

One file per OTA: a header-only primary and the 64 cell image HDUs ``xy00`` .. ``xy77`` of uint16 (BITPIX 16,
BZERO 32768), plain or, with ``fz``, Rice-compressed as fpack writes integer data. Read them back with
:mod:`podisteps.io.rawio`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from .. import instrument
from .atomic import atomic_path, write_fits_atomic

__all__ = ["write_raw_ota"]


def write_raw_ota(
    path: str | os.PathLike,
    primary: fits.Header,
    cells: dict,
    cell_headers: dict,
    *,
    fz: bool = False,
) -> Path:
    """Write a raw OTA file in the ODI format, atomically.

    Parameters
    ----------
    path : path-like
        Output file; should end in ``.fits`` or, with ``fz``, ``.fits.fz``.
    primary : astropy.io.fits.Header
        Primary header (no data).
    cells : dict
        ``(cx, cy)`` -> uint16 array; all 64 cells, all the same shape.
    cell_headers : dict
        ``(cx, cy)`` -> header of the cell (EXTNAME is set from the key).
    fz : bool, optional
        Write each cell as a lossless Rice-compressed image HDU (as fpack does for integer data).

    Returns
    -------
    pathlib.Path
    """
    arrays = []
    for cx, cy in instrument.CELL_IDS:
        data = np.asarray(cells[(cx, cy)])
        if data.dtype != np.uint16:
            raise TypeError(f"cell xy{cx}{cy} must be uint16, got {data.dtype}")
        arrays.append(data)
    if fz:
        hdus = [fits.PrimaryHDU(header=primary)]
        for (cx, cy), data in zip(instrument.CELL_IDS, arrays):
            hdr = cell_headers[(cx, cy)].copy()
            hdr["EXTNAME"] = f"xy{cx}{cy}"
            hdus.append(fits.CompImageHDU(data=data, header=hdr, compression_type="RICE_1"))
        return write_fits_atomic(fits.HDUList(hdus), path)
    # Plain FITS: written block by block (astropy's per-HDU overhead dominates for 65 small HDUs).
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(_header_block(fits.PrimaryHDU(header=primary).header))
        for (cx, cy), data in zip(instrument.CELL_IDS, arrays):
            fh.write(_uint16_image_block(cell_headers[(cx, cy)], data.shape, f"xy{cx}{cy}"))
            raw = (data ^ np.uint16(0x8000)).astype(">u2").tobytes()  # int16 + BZERO 32768, big-endian
            fh.write(raw + b"\0" * (-len(raw) % 2880))
    return Path(path)


_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "BZERO",
               "BSCALE", "EXTNAME", "EXTEND")


@functools.cache
def _structural_cards(ny: int, nx: int) -> str:
    """The structural cards of a uint16 IMAGE extension (BITPIX 16, BZERO 32768), as card images."""
    hdr = fits.Header()
    hdr["XTENSION"] = ("IMAGE", "Image extension")
    hdr["BITPIX"] = 16
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = nx
    hdr["NAXIS2"] = ny
    hdr["PCOUNT"] = 0
    hdr["GCOUNT"] = 1
    hdr["BSCALE"] = 1
    hdr["BZERO"] = 32768
    return hdr.tostring(sep="", endcard=False, padding=False)


def _uint16_image_block(user: fits.Header, shape: tuple[int, int], extname: str) -> bytes:
    """The header block of a uint16 IMAGE extension with the user's cards, padded to 2880 bytes."""
    if any(key in user for key in _STRUCTURAL):
        user = user.copy()
        for key in _STRUCTURAL:
            user.remove(key, ignore_missing=True, remove_all=True)
    text = (_structural_cards(*shape) + fits.Card("EXTNAME", extname).image
            + user.tostring(sep="", endcard=False, padding=False) + "END".ljust(80))
    return (text + " " * (-len(text) % 2880)).encode("ascii")


def _header_block(header: fits.Header) -> bytes:
    """A header serialised with its END card and padded to a multiple of 2880 bytes."""
    return header.tostring(padding=True, endcard=True).encode("ascii")
