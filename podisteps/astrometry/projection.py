"""Sky <-> tangent plane <-> pixels: the projections the astrometric steps share.

Pixel positions are **1-based FITS pixels**; sky offsets ``(dalpha cos(delta), ddelta)`` in arcsec
(see :mod:`podisteps.astrometry`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

def header_wcs(header: fits.Header) -> WCS:
    """An astropy celestial WCS of an OTA header (``FITSFixedWarning`` messages about date cards are silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2, relax=True)


def tangent_plane(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection of ``(ra, dec)`` onto the tangent plane at ``(ra0, dec0)``.

    Parameters
    ----------
    ra, dec : array-like
        Positions, degrees, any (broadcastable) shape.
    ra0, dec0 : float or array-like
        Tangent point(s), degrees.

    Returns
    -------
    xi, eta : numpy.ndarray
        Standard coordinates, arcsec (``xi`` towards East, ``eta`` towards North).
    """
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_da = np.cos(a - a0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * cos_da
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * cos_da) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def from_tangent_plane(xi, eta, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`tangent_plane`: standard coordinates (arcsec) -> ``(ra, dec)`` in degrees."""
    x, y = np.radians(np.asarray(xi) / 3600.0), np.radians(np.asarray(eta) / 3600.0)
    d0 = np.radians(dec0)
    den = np.cos(d0) - y * np.sin(d0)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, den))
    ra = np.radians(ra0) + np.arctan2(x, den)
    return np.degrees(ra) % 360.0, np.degrees(dec)


def sky_offsets(ra, dec, ra_ref, dec_ref) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of ``(ra, dec)`` from ``(ra_ref, dec_ref)``: ``(dalpha cos(delta), ddelta)``, arcsec."""
    return tangent_plane(ra, dec, ra_ref, dec_ref)


def pixel_scale(wcs: WCS, x, y) -> np.ndarray:
    """Local pixel scale ``sqrt(|det J|)`` of ``wcs`` at 1-based pixels ``(x, y)``, arcsec/px.

    The Jacobian is taken by central differences of ``all_pix2world`` (distortion included).
    """
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    ra0, dec0 = wcs.all_pix2world(x, y, 1)
    h = 0.5
    jac = []
    for dx, dy in ((h, 0.0), (0.0, h)):
        ra_p, dec_p = wcs.all_pix2world(x + dx, y + dy, 1)
        ra_m, dec_m = wcs.all_pix2world(x - dx, y - dy, 1)
        xp, yp = tangent_plane(ra_p, dec_p, ra0, dec0)
        xm, ym = tangent_plane(ra_m, dec_m, ra0, dec0)
        jac.append(((xp - xm) / (2 * h), (yp - ym) / (2 * h)))
    (a, c), (b, d) = jac
    return np.sqrt(np.abs(a * d - b * c))


def rotate(x, y, angle_deg: float):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return c * x - s * y, s * x + c * y


def unit_vectors(ra, dec) -> np.ndarray:
    """Unit vectors of sky positions (degrees), shape ``ra.shape + (3,)``."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def odi2wcs(headers_by_ota: dict, ota: int, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Pixel -> sky for one OTA: **1-based** ``(x, y)`` -> ``(ra, dec)`` degrees (distortion included)."""
    return header_wcs(headers_by_ota[ota]).all_pix2world(np.asarray(x, float), np.asarray(y, float), 1)


def wcs2odi(headers_by_ota: dict, ra, dec, *, size: tuple[int, int] | None = None):
    """Sky -> focal plane: the OTA and **1-based** pixel of each position.

    Parameters
    ----------
    headers_by_ota : dict
        OTA number -> header (with ``NAXIS1/2``, or give ``size``).
    ra, dec : array-like
        Positions, degrees, shape ``(n,)``.
    size : tuple of int, optional
        ``(nx, ny)`` of the OTAs when the headers lack ``NAXIS1/2``.

    Returns
    -------
    ota : numpy.ndarray of int
        OTA holding the position, -1 if none (a gap or outside the focal plane).
    x, y : numpy.ndarray
        1-based pixels on that OTA, NaN if none. A pixel covers ``[i - 0.5, i + 0.5)``.
    """
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    ota = np.full(ra.size, -1)
    x, y = np.full(ra.size, np.nan), np.full(ra.size, np.nan)
    for key, hdr in headers_by_ota.items():
        nx = int(hdr.get("NAXIS1", 0)) or (size[0] if size else 0)
        ny = int(hdr.get("NAXIS2", 0)) or (size[1] if size else 0)
        wcs = header_wcs(hdr)
        # stay far from the projection's horizon (the antipode projects onto the axis)
        near = (ota < 0) & (unit_vectors(ra, dec) @ unit_vectors(*wcs.wcs.crval) > math.cos(math.radians(2.0)))
        if not near.any():
            continue
        px, py = wcs.all_world2pix(ra[near], dec[near], 1, tolerance=1e-6, maxiter=50, quiet=True)
        inside = (px >= 0.5) & (px < nx + 0.5) & (py >= 0.5) & (py < ny + 0.5)
        idx = np.flatnonzero(near)[inside]
        ota[idx], x[idx], y[idx] = key, px[inside], py[inside]
    return ota, x, y
