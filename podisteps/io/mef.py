"""Pieces of the final MEF (docs/reduction-steps.md, 'Assembling the exposure' and 'Filter keywords'; docs/formats.md,
'Association table' and 'The final MEF'): undefined pixels, software binning, Rice compression, filter keywords and the
association table. No paths are opened here.
"""

from __future__ import annotations

import os
import re

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..instrument.filters import filter_entry
from .mapped import release_pages

__all__ = ["PREP4SEX_VALUE", "undefined_value", "softbin_image", "softbin_mask", "softbin_header",
           "softbin_table", "compress_hdu", "parse_fits_key", "filter_keywords", "association_table",
           "integrity_cards", "lost_otas", "product_check_inputs", "check_sample", "CHECK_STRIDE"]

#: Value of undefined pixels with -prep4sex (SExtractor's "no data").
PREP4SEX_VALUE = -1e31
#: Catalogue columns in pixels that -softbin divides (1-based positions, or sizes).
_PIXEL_POSITIONS = ("X", "Y", "ODI_X", "ODI_Y")
_PIXEL_SIZES = ("FWHM_IMAGE",)
_FITS_KEY = re.compile(r"^[A-Z0-9_-]{1,8}$")


def undefined_value(*, prep4sex: bool, indefval: float | None) -> float:
    """The value written for undefined pixels: ``indefval`` if given, else -1e31 with ``prep4sex``, else NaN."""
    if indefval is not None:
        return float(indefval)
    return PREP4SEX_VALUE if prep4sex else float("nan")


def _blocks(data: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (s // factor for s in data.shape)
    return data[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)


def softbin_image(data: np.ndarray, factor: int) -> np.ndarray:
    """Bin ``factor`` x ``factor`` pixels into their mean over the defined (finite) ones.

    The result is float32 in the same unit per pixel (ADU/px: sky level and surface brightness are kept,
    a star's total flux in ADU drops by ``factor**2``); a block without defined pixels is NaN. A remainder
    of rows or columns that does not fill a block is dropped.
    """
    blocks = _blocks(np.asarray(data, np.float32), factor)
    good = np.isfinite(blocks)
    n = good.sum(axis=(1, 3))
    total = np.where(good, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan).astype(np.float32)


def softbin_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Bin a bit mask: each output pixel is the OR of the bits of its block."""
    return np.bitwise_or.reduce(np.bitwise_or.reduce(_blocks(mask, factor), axis=3), axis=1).astype(mask.dtype)


def softbin_header(header: fits.Header, factor: int) -> fits.Header:
    """The WCS of an image binned by ``factor``: CD x factor, CRPIX -> (CRPIX - 0.5)/factor + 0.5, plus
    ``SOFTBIN``. PV distortion terms act on intermediate world coordinates and are unchanged."""
    out = header.copy()
    for axis in (1, 2):
        if f"CRPIX{axis}" in out:
            out[f"CRPIX{axis}"] = (float(out[f"CRPIX{axis}"]) - 0.5) / factor + 0.5
        for other in (1, 2):
            if f"CD{axis}_{other}" in out:
                out[f"CD{axis}_{other}"] = float(out[f"CD{axis}_{other}"]) * factor
    out["SOFTBIN"] = (factor, "software binning factor")
    return out


def softbin_table(table: Table, factor: int) -> Table:
    """Divide a catalogue's pixel positions (1-based) and pixel sizes by the binning ``factor``."""
    out = table.copy()
    for name in _PIXEL_POSITIONS:
        if name in out.colnames:
            out[name] = (np.asarray(out[name], float) - 0.5) / factor + 0.5
    for name in _PIXEL_SIZES:
        if name in out.colnames:
            out[name] = np.asarray(out[name], float) / factor
    return out


def compress_hdu(hdu: fits.ImageHDU) -> fits.CompImageHDU:
    """An image extension Rice-compressed like QuickReduce's -fpack: RICE_1 with quantize_level 4 for float
    data (lossy: the quantisation step is a quarter of the noise per pixel), lossless for integer masks."""
    return fits.CompImageHDU(hdu.data, header=hdu.header, compression_type="RICE_1", quantize_level=4)


def parse_fits_key(item: str) -> tuple[str, object]:
    """``KEY,value`` of -addfitskey: a FITS-conform keyword (1-8 of A-Z 0-9 - _) and its value.

    A quoted value (``'...'`` or ``"..."``) stays a string without its quotes; otherwise an integer or a
    float becomes a number, ``T``/``F`` a boolean, and anything else a string.

    Raises
    ------
    ValueError
        For a keyword FITS does not allow or a missing comma.
    """
    key, comma, text = item.partition(",")
    key = key.strip().upper()
    if not comma or not _FITS_KEY.match(key):
        raise ValueError(f"-addfitskey={item}: expected KEY,value with a KEY of 1-8 characters A-Z 0-9 - _")
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return key, text[1:-1]
    if text in ("T", "F"):
        return key, text == "T"
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, text


def filter_keywords(filtername: str) -> dict:
    """Filter keywords known for ODI filter ``filtername`` (``podisteps/data/filters.toml``); empty if unknown.

    ``PHOTCLAM`` and ``FILTAVGP`` are the mean wavelength in nm; ``FILTREFB`` the SDSS band photometry
    uses. QuickReduce's band-pass widths and edges (``PHOTBW, FILTFWHM, FILTBLUE, ...``) are not written:
    the filter curves are not part of podiflow's configuration.
    """
    entry = filter_entry(filtername)
    if entry is None:
        return {}
    nm = float(entry["wavelength"]) / 10.0
    return {"PHOTCLAM": (nm, "mean wavelength of the filter, nm"),
            "FILTAVGP": (nm, "average wavelength of the filter, nm"),
            "FILTREFB": (entry["ref_band"], "SDSS band of the photometric reference")}


def association_table(rows: list) -> fits.BinTableHDU:
    """QuickReduce's ``ASSOCIATIONS`` table plus an ``applied`` column.

    Parameters
    ----------
    rows : list of tuple
        ``(step, full path, applied)``, one per file; a repeated (step, path) keeps its first row.
    """
    first: dict = {}
    for row in rows:
        first.setdefault((row[0], row[1]), row)
    unique = list(first.values())
    cols = [fits.Column(name="correction", format="25A", array=[r[0] for r in unique]),
            fits.Column(name="filename_full", format="375A", array=[r[1] for r in unique]),
            fits.Column(name="filename", format="100A", array=[os.path.basename(r[1]) for r in unique]),
            fits.Column(name="applied", format="L", array=[bool(r[2]) for r in unique])]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.name = "ASSOCIATIONS"
    return hdu


def integrity_cards(hdulist: fits.HDUList, bad_otas) -> list:
    """Primary cards saying what an exposure's MEF lacks: ``NLOSTOTA`` and ``LOSTnn`` (OTAs left out for bad
    raw files or unpublishable pixels, with the reason) and ``PERSKIP`` (unreadable earlier OTA files whose persistence was not masked,
    summed over the ``OTAxy.SCI`` extensions' own ``PERSKIP``).

    Parameters
    ----------
    hdulist : astropy.io.fits.HDUList
        The assembled MEF.
    bad_otas : iterable of (int, str)
        OTA number and why it was left out (the night index's ``bad_otas``, then those the final MEF
        could not publish).

    Returns
    -------
    list of tuple
        ``(keyword, value, comment)`` cards.
    """
    bad_otas = tuple(bad_otas)
    cards = [("NLOSTOTA", len(bad_otas), "OTAs left out: bad raw files or pixels")]
    cards += [(f"LOST{ota:02d}", reason, "") for ota, reason in bad_otas]  # long values: no comment
    skipped = sum(int(h.header.get("PERSKIP", 0)) for h in hdulist[1:] if h.name.endswith(".SCI"))
    cards.append(("PERSKIP", skipped, "unreadable persistency sources skipped"))
    return cards


def lost_otas(header: fits.Header) -> list:
    """``(OTA, reason)`` of every ``LOSTnn`` card of a final MEF's primary header, in card order."""
    return [(int(key[4:]), str(header[key])) for key in header
            if key.startswith("LOST") and key[4:].isdigit() and len(key) == 6]


#: Every n-th row and column a product sanity check looks at (enough to tell a mostly-NaN OTA).
CHECK_STRIDE = 8


def check_sample(data: np.ndarray) -> np.ndarray:
    """A copy of every ``CHECK_STRIDE``-th pixel of an image, the pages read for it released again.

    Parameters
    ----------
    data : numpy.ndarray
        Image, shape ``(ny, nx)``; if it is memory-mapped read-only, the pages read for the sample are unmapped
        afterwards (:func:`podisteps.io.mapped.release_pages`): checking many OTAs holds one at a time.

    Returns
    -------
    numpy.ndarray
        Shape ``(ceil(ny / CHECK_STRIDE), ceil(nx / CHECK_STRIDE))``, the dtype of ``data``.
    """
    sample = np.array(data[::CHECK_STRIDE, ::CHECK_STRIDE])
    release_pages(data)
    return sample


def product_check_inputs(hdulist: fits.HDUList, *, keys=("EXPTIME", "MJD-OBS", "SKYLEVEL")) -> tuple[dict, dict]:
    """What :func:`podisteps.sanity.check_product` needs from a final MEF, read cheaply.

    Returns
    -------
    otas : dict
        ``OTA -> SCI pixels subsampled every CHECK_STRIDE rows and columns`` (shape ~ (ny/8, nx/8)).
    values : dict
        ``keyword -> value`` of ``keys`` present in the primary header.
    """
    otas = {}
    for hdu in hdulist[1:]:
        name = hdu.name
        if name.startswith("OTA") and name.endswith(".SCI") and hdu.data is not None:
            otas[int(name[3:5])] = check_sample(hdu.data)
    ph = hdulist[0].header
    return otas, {k: ph[k] for k in keys if k in ph}
