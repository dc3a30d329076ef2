"""Master calibration MEFs in QuickReduce's layout (docs/calibrations.md, 'Master files'; docs/masters.md, 'Combining
frames').

A master bias, dark or flat is::

    PRIMARY        no data; OBSTYPE, FILTER, BINNING, NCOMBINE, (flats) GAIN, NGAIN, (darks) EXPMEAS = 1, ...
    OTAxy.SCI      float32 OTA frame per OTA, with OTA, FPPOS = 'xyNN', EXTNAME (and the caller's cards)
    FILELIST       table: filenumber (int), filename (the combined frames)
    ASSOCIATIONS   table: correction (A25), filename_full (A375), filename (A100)

Readers find an OTA by the ``FPPOS`` card of its image extension, never by EXTNAME or position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from astropy.io import fits

from ..detrend.calibrate import find_fppos_extension

__all__ = ["ota_extname", "ota_fppos", "master_hdulist", "master_hdus", "read_master_ota", "master_filelist"]

#: Column widths of the ASSOCIATIONS table (``podi_associations.create_association_table``).
ASSOCIATION_WIDTHS = {"correction": 25, "filename_full": 375, "filename": 100}


def ota_extname(ota: int) -> str:
    """``OTAxy.SCI`` for OTA number ``ota``."""
    return f"OTA{int(ota):02d}.SCI"


def ota_fppos(ota: int) -> str:
    """``xyNN`` (focal-plane position card) for OTA number ``ota``."""
    return f"xy{int(ota):02d}"


def _header(cards) -> fits.Header:
    """A Header from a Header or a mapping of keyword -> value or (value, comment)."""
    if isinstance(cards, fits.Header):
        return cards
    header = fits.Header()
    for key, card in (cards or {}).items():
        header[key] = card
    return header


def _table(columns: dict, extname: str) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=name, format=fmt, array=values)
                                         for name, (fmt, values) in columns.items()])
    hdu.name = extname
    return hdu


def master_hdulist(
    frames: dict,
    *,
    filelist,
    primary: Mapping | fits.Header | None = None,
    ota_headers: dict | None = None,
    associations=(),
) -> fits.HDUList:
    """Assemble a master calibration MEF.

    Parameters
    ----------
    frames : dict
        OTA number -> 2-D master frame (stored as float32), in extension order (e.g. the layout's).
    filelist : sequence of str
        The frames that were combined, in order; ``NCOMBINE`` in the primary is their number.
    primary : mapping or astropy.io.fits.Header, optional
        Primary header cards: ``OBSTYPE``, ``FILTER``, ``BINNING``, ``GAIN``, ``NGAIN``, ``EXPMEAS`` (1 for
        darks, ADU/s), ...; values or ``(value, comment)``.
    ota_headers : dict, optional
        OTA number -> mapping or Header of extra cards for that extension (e.g. ``GAINMTHD``, ``FF_NORM``,
        the first input's OTA header); structural cards are dropped, and ``EXTNAME``, ``OTA`` and
        ``FPPOS`` are always set from the OTA number.
    associations : iterable of (str, str), optional
        ``(correction, path)`` rows of the ``ASSOCIATIONS`` table, e.g. ``("bias", "/cals/bias_bin1.fits")``
        or ``("raw", ...)`` per input; ``filename`` is the base name of the path.

    Returns
    -------
    astropy.io.fits.HDUList

    Raises
    ------
    ValueError
        Empty ``filelist`` or ``frames``, or a frame that is not 2-D.
    """
    if not frames:
        raise ValueError("a master needs at least one input frame and one OTA")
    return fits.HDUList(list(master_hdus(((ota, frame, (ota_headers or {}).get(ota)) for ota, frame in frames.items()),
                                         filelist=filelist, primary=primary, associations=associations)))


def master_hdus(otas: Iterable, *, filelist, primary: Mapping | fits.Header | None = None,
                associations=()) -> Iterator[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]:
    """The HDUs of a master MEF one at a time, primary first (:func:`master_hdulist`, written as they come).

    Parameters
    ----------
    otas : iterable of (int, array_like, mapping or astropy.io.fits.Header or None)
        ``(OTA number, 2-D frame, extra cards)`` per OTA in extension order, as the ``frames`` and
        ``ota_headers`` of :func:`master_hdulist`; it may read each frame only when asked for it, so a writer
        of these HDUs holds one OTA frame at a time. A float32 frame of either byte order is used as it is.
    filelist, primary, associations
        As for :func:`master_hdulist`.

    Yields
    ------
    astropy.io.fits.PrimaryHDU, then astropy.io.fits.ImageHDU per OTA, then the FILELIST and ASSOCIATIONS tables.

    Raises
    ------
    ValueError
        Empty ``filelist`` or ``otas``, or a frame that is not 2-D.
    """
    filelist = [str(f) for f in filelist]
    if not filelist:
        raise ValueError("a master needs at least one input frame and one OTA")
    hdu0 = fits.PrimaryHDU()
    hdu0.header.extend(_header(primary), strip=True, update=True)
    hdu0.header["NCOMBINE"] = (len(filelist), "number of frames combined")
    yield hdu0
    n_otas = 0
    for ota, frame, cards in otas:
        yield _ota_hdu(ota, frame, cards)
        n_otas += 1
    if not n_otas:
        raise ValueError("a master needs at least one input frame and one OTA")
    yield _table({"filenumber": ("J", np.arange(1, len(filelist) + 1)),
                  "filename": (f"{max(len(f) for f in filelist)}A", filelist)}, "FILELIST")
    rows = [(str(c), os.fspath(p)) for c, p in associations]
    w = ASSOCIATION_WIDTHS
    yield _table({"correction": (f"{w['correction']}A", [c for c, _ in rows]),
                  "filename_full": (f"{w['filename_full']}A", [p for _, p in rows]),
                  "filename": (f"{w['filename']}A", [os.path.basename(p) for _, p in rows])}, "ASSOCIATIONS")


def _ota_hdu(ota: int, frame, cards) -> fits.ImageHDU:
    """The ``OTAxy.SCI`` extension of one OTA: float32 data (big-endian input kept, not copied), ``cards`` added."""
    data = np.asarray(frame)
    if data.dtype.newbyteorder("=") != np.float32:
        data = data.astype(np.float32)
    if data.ndim != 2:
        raise ValueError(f"OTA {ota}: master frame must be 2-D, got shape {data.shape}")
    hdu = fits.ImageHDU(data)
    hdu.header.extend(_header(cards), strip=True, update=True)
    hdu.header["EXTNAME"] = ota_extname(ota)
    hdu.header["OTA"] = (int(ota), "OTA number (focal-plane position)")
    hdu.header["FPPOS"] = (ota_fppos(ota), "focal plane position")
    return hdu


def read_master_ota(hdul: fits.HDUList, ota: int, *, source: str | None = None) -> tuple[np.ndarray, fits.Header]:
    """Return the float32 frame and header of OTA ``ota`` of a master MEF, found by its ``FPPOS`` card.

    Raises
    ------
    podisteps.errors.CalibrationError
        No image extension, or more than one, with ``FPPOS = 'xyNN'``.
    """
    hdu = find_fppos_extension(hdul, ota_fppos(ota), source=source)
    return np.asarray(hdu.data, dtype=np.float32), hdu.header


def master_filelist(hdul: fits.HDUList) -> list[str]:
    """The ``FILELIST`` of a master MEF, in ``filenumber`` order."""
    table = hdul["FILELIST"].data
    order = np.argsort(table["filenumber"])
    return [str(table["filename"][i]) for i in order]
