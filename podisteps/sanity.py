"""Sanity checks run before a product is trusted or written: pure functions, one clear reason each.

- :func:`exposure_consistency`: every OTA file of an exposure agrees on OBSID, MJD-OBS, FILTER and EXPTIME
  (an OTA file of another exposure saved under this exposure's name is caught by name).
- :func:`check_known_filter`: a science or flat frame's FILTER is one podiflow knows.
- :func:`check_calibration`: a master bias, dark or flat is finite enough and its level is plausible.
- :func:`check_product`: a final product's OTAs are not mostly NaN and its key values are finite.
- :func:`bad_cells`: raw cells with values outside the ADC range or without any finite value.

Each raises :class:`SanityError` (a ``ValueError``) whose message names the file and the reason, or
returns what is wrong for the caller to flag.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from astropy.io import fits

from .errors import CalibrationError, PodiflowError
from .instrument.filters import filter_entry
from .stats import median as _median

__all__ = [
    "SanityError",
    "check_filter",
    "EXPOSURE_KEYS",
    "FILTERED_OBSTYPES",
    "ADC_MAX",
    "CALIBRATION_LIMITS",
    "MIN_FINITE_FRACTION",
    "SAMPLE_STRIDE",
    "exposure_consistency",
    "check_known_filter",
    "check_calibration",
    "check_product",
    "ota_problem",
    "bad_cells",
]

#: Primary keywords every OTA file of one exposure must share.
EXPOSURE_KEYS = ("OBSID", "MJD-OBS", "FILTER", "EXPTIME")

#: Frame types whose FILTER matters (a bias or dark may name any filter that was in the beam).
FILTERED_OBSTYPES = ("OBJECT", "DFLAT", "TFLAT", "FOCUS")

#: Largest raw value of ODI's 16-bit ADC, ADU.
ADC_MAX = 65535.0

#: Every n-th row and column of a 2-D master that :func:`check_calibration` looks at.
SAMPLE_STRIDE = 4

#: Smallest fraction of finite pixels a master calibration or a product OTA may have.
MIN_FINITE_FRACTION = 0.5

#: Plausible median of one OTA of a master per kind, (low, high) in its own units: bias ADU (about 0 after
#: overscan subtraction, the pedestal without it), dark ADU in the dark's own exposure time, flat normalised
#: (1 = the normalisation OTAs' level). Wide on purpose: they catch a master of zeros, NaN or the wrong kind.
CALIBRATION_LIMITS = {"bias": (-1000.0, ADC_MAX), "dark": (-100.0, 10000.0), "flat": (0.05, 20.0)}


class SanityError(PodiflowError, ValueError):
    """A product or input that fails a sanity check; the message names the file and the reason."""


def _same(a, b) -> bool:
    """Header values equal, numbers to 1e-6 relative (MJD to ~0.1 s), text without padding."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return str(a).strip() == str(b).strip()


def exposure_consistency(headers: dict, *, obsid: str | None = None) -> dict:
    """Find the OTA files that disagree with their exposure on :data:`EXPOSURE_KEYS`.

    Parameters
    ----------
    headers : dict
        ``name -> primary header`` (``name`` is what the message calls the file, e.g. its path).
    obsid : str, optional
        The exposure's name with its prefix letter (``o20130101T123456.0``); the OBSID card must be it
        without the letter. Without it, the value most files share is the reference.

    Returns
    -------
    dict
        ``name -> reason`` for every file that disagrees (empty when all agree). The other values are
        those most files share, so one stray file is named, not the exposure.
    """
    reference = {}
    for key in EXPOSURE_KEYS:
        values = [str(h.get(key, "")).strip() for h in headers.values()]
        if key == "OBSID" and obsid is not None:
            reference[key] = obsid[1:]
        elif values:
            reference[key] = next(h.get(key) for h in headers.values()
                                  if str(h.get(key, "")).strip() == Counter(values).most_common(1)[0][0])
    bad = {}
    for name, header in headers.items():
        wrong = [f"{k} = {header.get(k)!r}" for k in EXPOSURE_KEYS if not _same(header.get(k), reference[k])]
        if wrong:
            bad[name] = (f"{name}: {', '.join(wrong)} differs from its exposure's "
                         f"({', '.join(f'{k} = {reference[k]!r}' for k in EXPOSURE_KEYS)}): "
                         f"an OTA file of another exposure?")
    return bad


def check_known_filter(name: str, obstype: str, filtername: str) -> None:
    """Raise :class:`SanityError` if a frame of ``obstype`` has a FILTER podiflow does not know.

    Parameters
    ----------
    name : str
        What the message calls the file.
    obstype : str
        OBSTYPE; only :data:`FILTERED_OBSTYPES` are checked.
    filtername : str
        FILTER.
    """
    if obstype.upper() in FILTERED_OBSTYPES and filter_entry(filtername.strip()) is None:
        raise SanityError(f"{name}: FILTER = {filtername!r} is not a known ODI filter (podisteps/data/filters.toml)")


def _finite_fraction(data: np.ndarray) -> float:
    return float(np.isfinite(data).mean()) if data.size else 0.0


def check_calibration(name: str, kind: str, data: np.ndarray) -> float:
    """Check one OTA of a master calibration before it is written; return its median.

    Parameters
    ----------
    name : str
        What the message calls the product (e.g. its path and OTA).
    kind : {"bias", "dark", "flat"}
        The calibration; its plausible median range is :data:`CALIBRATION_LIMITS`.
    data : numpy.ndarray
        The master's pixels, any shape (NaN where undefined); a 2-D frame is sampled every
        :data:`SAMPLE_STRIDE` rows and columns.

    Raises
    ------
    SanityError
        Fewer than :data:`MIN_FINITE_FRACTION` finite pixels, or a median outside the kind's range.
    """
    data = np.asarray(data)
    if data.ndim == 2:  # every SAMPLE_STRIDE-th row and column: the level and the NaN fraction, in 1/16 the time
        data = data[::SAMPLE_STRIDE, ::SAMPLE_STRIDE]
    frac = _finite_fraction(data)
    if frac < MIN_FINITE_FRACTION:
        raise SanityError(f"{name}: only {frac:.0%} of the {kind} pixels are finite "
                          f"(at least {MIN_FINITE_FRACTION:.0%} needed)")
    native = np.asarray(data, data.dtype.newbyteorder("="))  # numpy selects in native numbers faster
    median = float(_median(native[~np.isnan(native)]))  # np.nanmedian's number, 2x faster
    low, high = CALIBRATION_LIMITS[kind]
    if not low <= median <= high:
        raise SanityError(f"{name}: {kind} median {median:.4g} is outside the plausible range [{low:g}, {high:g}]")
    return median


def _not_finite(values: dict) -> list:
    """``"KEY = value"`` of each value that is not a finite number."""
    return [f"{k} = {v!r}" for k, v in values.items()
            if not isinstance(v, (int, float, np.number)) or not np.isfinite(v)]


def check_product(name: str, otas: dict, values: dict) -> None:
    """Check a final product before it is published.

    Parameters
    ----------
    name : str
        What the message calls the product.
    otas : dict
        ``OTA number -> science pixels`` (any shape, NaN where undefined).
    values : dict
        ``keyword -> value`` of key numbers that must be finite (e.g. EXPTIME, MJD-OBS, the sky level).

    Raises
    ------
    SanityError
        More than half the OTAs mostly NaN (fewer than :data:`MIN_FINITE_FRACTION` finite pixels), or a key
        value that is not a finite number.
    """
    empty = sorted(o for o, data in otas.items() if _finite_fraction(data) < MIN_FINITE_FRACTION)
    if otas and len(empty) * 2 > len(otas):
        raise SanityError(f"{name}: {len(empty)} of {len(otas)} OTAs are mostly NaN "
                          f"({', '.join(f'{o:02d}' for o in empty)}): not published")
    bad = _not_finite(values)
    if bad:
        raise SanityError(f"{name}: {', '.join(bad)} not finite: not published")


def ota_problem(pixels: np.ndarray, values: dict, *, fill: float = math.nan) -> str:
    """Why one OTA of a final product cannot be published, or ``''``.

    Parameters
    ----------
    pixels : numpy.ndarray
        The OTA's science pixels as written (any shape, e.g. subsampled), undefined ones NaN or ``fill``.
    values : dict
        ``keyword -> value`` of the OTA's key header numbers, which must be finite.
    fill : float, optional
        The value written for undefined pixels (``-indefval``, ``-prep4sex``); NaN: none.

    Returns
    -------
    str
        Fewer than :data:`MIN_FINITE_FRACTION` defined pixels, or the keys that are not finite numbers.
    """
    pixels = np.asarray(pixels)
    defined = _finite_fraction(pixels) if math.isnan(fill) else \
        (float((np.isfinite(pixels) & (pixels != np.float32(fill))).mean()) if pixels.size else 0.0)
    if defined < MIN_FINITE_FRACTION:
        return f"only {defined:.0%} of its pixels are defined (at least {MIN_FINITE_FRACTION:.0%} needed)"
    bad = _not_finite(values)
    return f"{', '.join(bad)} not finite" if bad else ""


def bad_cells(cells: dict) -> dict:
    """Raw cells that cannot hold real data: all values non-finite, or values outside ``[0, ADC_MAX]``.

    Parameters
    ----------
    cells : dict
        ``(cx, cy) -> raw cell array`` (ADU, as read).

    Returns
    -------
    dict
        ``(cx, cy) -> reason`` for each bad cell.
    """
    out = {}
    for cid, data in cells.items():
        low, high = data.min(), data.max()
        if np.isfinite(low) and np.isfinite(high):  # the usual cell: two read-only passes decide
            if low < 0 or high > ADC_MAX:
                out[cid] = f"values outside the ADC range 0..{ADC_MAX:.0f}"
            continue
        finite = np.isfinite(data)
        if not finite.any():
            out[cid] = "no finite value"
        elif (data[finite] < 0).any() or (data[finite] > ADC_MAX).any():
            out[cid] = f"values outside the ADC range 0..{ADC_MAX:.0f}"
    return out


def check_filter(hdul: fits.HDUList, header: fits.Header, filtername: str, source: str) -> None:
    """Refuse a calibration (opened ``hdul``, extension ``header``, named ``source`` in the message) whose
    ``FILTER`` (of the extension, else of the primary header) is not the frame's ``filtername``.

    Raises
    ------
    CalibrationError
        If the two differ (blanks around either ignored); a calibration without ``FILTER`` is accepted.
    """
    found = header.get("FILTER", hdul[0].header.get("FILTER"))
    if found is not None and str(found).strip() != str(filtername).strip():
        raise CalibrationError(f"{source}: calibration is for FILTER = {found!r}, the frame has {filtername!r}")
