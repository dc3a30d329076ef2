"""Gain and read noise per cell by photon transfer, and the TECHDATA file (docs/reduction-steps.md, 'Gain and read
noise'; docs/masters.md, 'Gain and read noise by photon transfer').

Per cell, from two flats F1, F2 and two biases B1, B2 (data sections, overscan subtracted, ADU), inside a
border of 25 bin1 pixels (``compute_techdata_from_bias_flat``)::

    gain = ((<F1> + <F2>) - (<B1> + <B2>)) / (var(F1 - F2) - var(B1 - B2))     [e-/ADU]
    RN   = sigma(B1 - B2) / sqrt(2)                                            [ADU]
    RN_e = gain * RN                                                           [e-]

``<X>`` is the mean. QuickReduce takes the variances from ``numpy.std``; here sigma is the robust
``(P84.13 - P15.87) / 2`` of the difference image (the Gaussian +-1 sigma percentiles, as the read noise from
bias pairs in docs/masters.md, 'Gain and read noise by photon transfer'), so cosmic rays and hot pixels in one frame do
not inflate the variance.

The TECHDATA file holds 64x64 images ``GAIN``, ``READNOISE``, ``READNOISE_E``; OTA (ox, oy) cell (cx, cy)
is at ``[oy*8 + (7 - cy), ox*8 + cx]``; unknown cells are NaN. :func:`podisteps.detrend.calibrate.read_techdata`
reads it.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits

from ..detrend.calibrate import CellNoise
from ..instrument import CellGeometry, ota_position

__all__ = ["BORDER_BIN1", "scaled_border", "robust_sigma", "photon_transfer", "readnoise_from_bias_pairs",
           "techdata_hdulist", "TECHDATA_EXTENSIONS"]

#: Border (pixels of a full-size bin1 cell) left out of the statistics.
BORDER_BIN1 = 25

#: Image extensions of a TECHDATA file, in order.
TECHDATA_EXTENSIONS = ("GAIN", "READNOISE", "READNOISE_E")

#: Percentiles whose half-difference is sigma for Gaussian noise.
_P_LOW, _P_HIGH = 15.87, 84.13


def scaled_border(geometry: CellGeometry) -> int:
    """The 25-pixel bin1 border in pixels of ``geometry`` (12 at bin2, 3 for the test instrument).

    QuickReduce only ever ran this at bin1 (its bin2 value of 50 is unreachable); the border scales with
    the pixel size, ``round(25 / geometry.scale)``, at least 1.
    """
    return max(1, round(BORDER_BIN1 / geometry.scale))


def robust_sigma(values: np.ndarray) -> float:
    """``(P84.13 - P15.87) / 2`` of the finite values (NaN if there are none), in their units."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    p_low, p_high = np.percentile(v, [_P_LOW, _P_HIGH])
    return 0.5 * float(p_high - p_low)


def _trim(cell: np.ndarray, border: int) -> np.ndarray:
    b = int(border)
    if b < 0 or 2 * b >= min(np.shape(cell)):
        raise ValueError(f"border {b} leaves nothing of a {np.shape(cell)} cell")
    return np.asarray(cell, dtype=np.float64)[b:cell.shape[0] - b, b:cell.shape[1] - b]


def _pair_readnoise(bias1: np.ndarray, bias2: np.ndarray, border: int) -> float:
    return robust_sigma(_trim(bias1, border) - _trim(bias2, border)) / math.sqrt(2.0)


def photon_transfer(flat1, flat2, bias1, bias2, *, border: int = BORDER_BIN1) -> CellNoise:
    """Gain and read noise of one cell from two flats and two biases.

    Parameters
    ----------
    flat1, flat2, bias1, bias2 : numpy.ndarray
        The cell's data section (``CellGeometry.data_section()``), overscan subtracted, ADU; same shape.
        The two flats must have the same illumination.
    border : int, optional
        Pixels left out at every edge: 25 for full-size bin1 cells; pass :func:`scaled_border` of the
        geometry for bin2 or the test instrument.

    Returns
    -------
    podisteps.detrend.calibrate.CellNoise
        ``(gain [e-/ADU], readnoise [ADU], readnoise_e [e-])``; the gain (and RN_e) is NaN when the flat
        variance does not exceed the bias variance or the flat signal is not positive.
    """
    f1, f2, b1, b2 = (_trim(a, border) for a in (flat1, flat2, bias1, bias2))
    signal = (np.nanmean(f1) + np.nanmean(f2)) - (np.nanmean(b1) + np.nanmean(b2))
    var_bias = robust_sigma(b1 - b2) ** 2
    excess = robust_sigma(f1 - f2) ** 2 - var_bias
    gain = signal / excess if excess > 0 and signal > 0 else math.nan
    readnoise = math.sqrt(var_bias / 2.0)
    return CellNoise(float(gain), readnoise, float(gain) * readnoise)


def readnoise_from_bias_pairs(pairs, *, border: int = BORDER_BIN1) -> float:
    """Read noise of one cell (ADU): ``sigma(B1 - B2) / sqrt(2)`` averaged over bias pairs.

    Parameters
    ----------
    pairs : iterable of (numpy.ndarray, numpy.ndarray)
        Pairs of the cell's overscan-subtracted data sections (ADU).
    border : int, optional
        As for :func:`photon_transfer`.

    Returns
    -------
    float
        Mean over the pairs of the finite values, ADU; NaN if there are none.
    """
    values = [v for v in (_pair_readnoise(b1, b2, border) for b1, b2 in pairs) if np.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def techdata_hdulist(values: dict, *, header: dict | None = None) -> fits.HDUList:
    """Build a TECHDATA file from per-cell gain and read noise.

    Parameters
    ----------
    values : dict
        ``(ota, cx, cy)`` -> :class:`podisteps.detrend.calibrate.CellNoise` or any ``(gain, readnoise,
        readnoise_e)`` triple (e-/ADU, ADU, e-).
    header : dict, optional
        Cards for the primary header (e.g. ``FILTER``, ``BINNING``, ``OBSTYPE``); values or
        ``(value, comment)``.

    Returns
    -------
    astropy.io.fits.HDUList
        Empty primary, then ImageHDUs ``GAIN``, ``READNOISE``, ``READNOISE_E``: float32, 64x64, NaN for
        cells without a value.
    """
    images = np.full((len(TECHDATA_EXTENSIONS), 64, 64), np.nan, dtype=np.float32)
    for (ota, cx, cy), noise in values.items():
        ox, oy = ota_position(int(ota))
        if isinstance(noise, CellNoise):
            noise = (noise.gain, noise.readnoise, noise.readnoise_e)
        images[:, oy * 8 + (7 - cy), ox * 8 + cx] = noise
    primary = fits.PrimaryHDU()
    for key, card in (header or {}).items():
        primary.header[key] = card
    units = {"GAIN": "e-/ADU", "READNOISE": "ADU", "READNOISE_E": "e-"}
    hdus = [fits.ImageHDU(image, name=name) for image, name in zip(images, TECHDATA_EXTENSIONS)]
    for hdu in hdus:
        hdu.header["BUNIT"] = units[hdu.name]
        hdu.header["COMMENT"] = "OTA (ox, oy) cell (cx, cy) is at [oy*8 + (7 - cy), ox*8 + cx] (0-based)"
    return fits.HDUList([primary, *hdus])
