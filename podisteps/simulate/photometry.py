"""Filter facts, zero points and colour terms (data in ``data/filters.toml`` and ``data/colorterms.toml``).

Conventions
-----------
- Zero points are in magnitudes for 1 ADU/s at the nominal gain ``detector.NOMINAL_GAIN`` (a cell with
  another gain records ``electrons / GAIN`` ADU).
- ``ZP(filter, airmass) = zp0 - k * (airmass - 1)``; the zero point of a frame adds ``2.5 log10(EXPTIME)``.
- The calibrated ODI magnitude of a star is ``m_odi = m_ref - (c0 + c1 * colour)`` with the SDSS colour
  term of ``data/colorterms.toml``, so QuickReduce's correction is exactly right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..instrument.packagedata import load_toml

__all__ = [
    "FilterInfo",
    "filter_info",
    "known_filters",
    "colour_term",
    "odi_magnitude",
    "zeropoint",
    "frame_zeropoint",
    "aperture_zeropoints",
    "APERTURE_DIAMETERS_ARCSEC",
]

#: QuickReduce's standard aperture diameters, arcsec.
APERTURE_DIAMETERS_ARCSEC = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)


@dataclass(frozen=True)
class FilterInfo:
    """Facts about one ODI filter (see ``data/filters.toml`` for the meaning of each field)."""

    name: str
    filterid: str
    arm: str
    wavelength: float
    ref_band: str
    zp0: float
    extinction: float
    sky_mag: float
    dome_flat_adu: float
    dome_flat_exptime: float


def _filters() -> dict:
    return load_toml("filters.toml")


def _colorterms() -> dict:
    return load_toml("colorterms.toml")


def known_filters() -> tuple[str, ...]:
    """Names of the filters in ``data/filters.toml``."""
    return tuple(_filters())


def filter_info(name: str) -> FilterInfo:
    """Return the facts about filter ``name`` (e.g. ``"odi_r"``).

    Raises
    ------
    ValueError
        For a filter not in ``data/filters.toml``.
    """
    table = _filters()
    if name not in table:
        raise ValueError(f"unknown filter {name!r}; known: {', '.join(table)}")
    return FilterInfo(name=name, **table[name])


def colour_term(filtername: str, *, catalogue: str = "sdss") -> tuple[tuple[str, str], float, float] | None:
    """Return ``((band1, band2), c0, c1)`` of the colour term of ``filtername``, or None if it has none."""
    entry = _colorterms().get(catalogue, {}).get(filtername)
    if entry is None:
        return None
    return (entry["colour"][0], entry["colour"][1]), float(entry["c0"]), float(entry["c1"])


def odi_magnitude(filtername: str, mags: dict) -> np.ndarray:
    """Calibrated ODI magnitude ``m_odi = m_ref - (c0 + c1 * colour)`` from SDSS magnitudes.

    Parameters
    ----------
    filtername : str
        ODI filter.
    mags : dict
        SDSS band -> array of magnitudes (shape ``(n,)``).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, mag.
    """
    info = filter_info(filtername)
    m = np.asarray(mags[info.ref_band], dtype=float)
    term = colour_term(filtername)
    if term is None:
        return m.copy()
    (b1, b2), c0, c1 = term
    return m - (c0 + c1 * (np.asarray(mags[b1]) - np.asarray(mags[b2])))


def zeropoint(filtername: str, airmass: float) -> float:
    """Zero point for 1 ADU/s (nominal gain) at ``airmass``: ``zp0 - k (airmass - 1)``, mag."""
    info = filter_info(filtername)
    return info.zp0 - info.extinction * (float(airmass) - 1.0)


def frame_zeropoint(filtername: str, airmass: float, exptime: float) -> float:
    """Zero point for the ADU of a frame of ``exptime`` seconds: ``zeropoint + 2.5 log10(exptime)``."""
    return zeropoint(filtername, airmass) + 2.5 * math.log10(exptime)


def aperture_zeropoints(zp: float, enclosed_energy) -> dict[str, float]:
    """Zero points for QuickReduce's aperture magnitudes.

    Parameters
    ----------
    zp : float
        Zero point for the total flux, mag.
    enclosed_energy : callable
        Maps an aperture radius in arcsec to the enclosed flux fraction of the PSF.

    Returns
    -------
    dict
        Aperture diameter in arcsec (as a string, e.g. ``"4"``) -> ``zp + 2.5 log10(EE(d/2))``, such that
        ``m = zp_ap - 2.5 log10(aperture counts)``.
    """
    return {f"{d:g}": zp + 2.5 * math.log10(enclosed_energy(d / 2.0)) for d in APERTURE_DIAMETERS_ARCSEC}
