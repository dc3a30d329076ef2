"""Least-squares refinement: shift and rotation of the focal plane, then ``CRVAL``/``CD`` per OTA.

:func:`fit_shift_rotation` fits a rotation about the optical axis and a shift of the axis,
:func:`apply_shift_rotation` writes it into an OTA header, and :func:`refine_ota` refines one OTA as
QuickReduce does (the regularised fit is :mod:`.posterior`).
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.optimize import least_squares

from .projection import from_tangent_plane, header_wcs, rotate, sky_offsets, tangent_plane


#: Minimum matches per OTA for the refinement modes (QuickReduce: more than 4 / more than 9).
MIN_MATCHES = {"otashift": 5, "otashear": 10}

def shift_rotation_model(xi, eta, angle_deg: float, shift, center) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions after rotating standard coordinates about the axis and moving the axis by ``shift``."""
    new_ra, new_dec = from_tangent_plane(shift[0], shift[1], *center)
    xr, yr = rotate(xi, eta, angle_deg)
    return from_tangent_plane(xr, yr, new_ra, new_dec)


def fit_shift_rotation(
    src_ra,
    src_dec,
    ref_ra,
    ref_dec,
    *,
    center: tuple[float, float],
    start: tuple[float, float, float] = (0.0, 0.0, 0.0),
    f_scale: float = 0.5,
) -> dict:
    """Least-squares rotation about the axis and shift of the axis, for matched pairs.

    Model: a source at standard coordinates ``(xi, eta)`` about ``center`` lies at ``R(angle) (xi, eta)``
    in the tangent plane of the new axis, which sits at ``shift`` in the old tangent plane: exactly what
    :func:`apply_shift_rotation` does to the headers. Residuals are ``(dalpha cos(delta), ddelta)`` in
    arcsec; the loss is ``soft_l1`` with scale ``f_scale``.

    Parameters
    ----------
    src_ra, src_dec : array-like
        Source positions from the current WCS, degrees, shape ``(n,)``.
    ref_ra, ref_dec : array-like
        Matched reference positions, degrees, shape ``(n,)``.
    center : tuple of float
        The optical axis (current ``CRVAL``), degrees.
    start : tuple of float, optional
        Initial ``(angle deg, shift_x arcsec, shift_y arcsec)``.
    f_scale : float, optional
        Soft-L1 inlier scale, arcsec.

    Returns
    -------
    dict
        ``angle`` (deg), ``shift`` (arcsec, arcsec), ``n`` (pairs), ``rms`` (arcsec, after the fit), and
        ``residuals`` (shape ``(n, 2)``, arcsec).

    Raises
    ------
    ValueError
        With fewer than 3 pairs.
    """
    src_ra, src_dec = np.asarray(src_ra, float), np.asarray(src_dec, float)
    if src_ra.size < 3:
        raise ValueError(f"fit_shift_rotation needs at least 3 pairs, got {src_ra.size}")
    xi, eta = tangent_plane(src_ra, src_dec, *center)

    def residuals(p):
        ra, dec = shift_rotation_model(xi, eta, p[0], p[1:], center)
        return np.concatenate(sky_offsets(ra, dec, ref_ra, ref_dec))

    res = least_squares(residuals, np.asarray(start, float), loss="soft_l1", f_scale=f_scale,
                        x_scale=np.array([1e-3, 1.0, 1.0]), method="trf")
    r = res.fun.reshape(2, -1).T
    return {"angle": float(res.x[0]), "shift": (float(res.x[1]), float(res.x[2])), "n": int(src_ra.size),
            "rms": float(np.sqrt(np.mean(np.sum(r**2, axis=1)))), "residuals": r}


def apply_shift_rotation(header: fits.Header, *, angle: float, shift, center) -> fits.Header:
    """Return a copy of an OTA header with a shift + rotation solution applied.

    All OTAs share the tangent point (the optical axis, ``CRVAL``): rotating the field about it is
    ``CD <- R(angle) CD`` with ``CRVAL`` fixed, and the shift moves ``CRVAL`` to the sky position at
    ``shift`` in the tangent plane of ``center``. A header whose ``CRVAL`` differs from ``center`` gets its
    ``CRVAL`` carried along by the same transformation. (The rotation acts before the TPV polynomial;
    for the radial term this is exact, the small non-radial terms differ at the mas level and
    :func:`refine_ota` absorbs that.)

    Parameters
    ----------
    header : astropy.io.fits.Header
        OTA header with CRVAL1/2 and CD1_1..CD2_2.
    angle : float
        Rotation, degrees.
    shift : tuple of float
        New axis in the tangent plane of ``center``, arcsec.
    center : tuple of float
        Old axis, degrees.
    """
    out = header.copy()
    xi, eta = tangent_plane(float(header["CRVAL1"]), float(header["CRVAL2"]), *center)
    ra, dec = shift_rotation_model(xi, eta, angle, shift, center)
    out["CRVAL1"], out["CRVAL2"] = float(ra), float(dec)
    cd = np.array([[header.get(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)], float)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    cd = np.array([[c, -s], [s, c]]) @ cd
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(cd[i - 1, j - 1])
    return out


def _wcs_params(wcs: WCS, params, crval0, cd0, mode: str) -> None:
    ra, dec = from_tangent_plane(params[0], params[1], *crval0)
    wcs.wcs.crval = [float(ra), float(dec)]
    if mode == "otashear":
        a = np.array([[1.0 + params[2], params[3]], [params[4], 1.0 + params[5]]])
        wcs.wcs.cd = a @ cd0
    wcs.wcs.set()


def refine_ota(
    header: fits.Header,
    x,
    y,
    ref_ra,
    ref_dec,
    *,
    mode: str = "otashear",
    f_scale: float = 0.3,
    star_sigma: float = 0.1,
    pair_sigma=None,
) -> tuple[fits.Header, np.ndarray, bool]:
    """Per-OTA least squares of ``CRVAL`` (``otashift``) or ``CRVAL`` and ``CD`` (``otashear``).

    The residuals ``(dalpha cos(delta), ddelta)`` between ``all_pix2world(x, y)`` and the reference
    stars (arcsec) are minimised with ``scipy.optimize.least_squares(loss='soft_l1')``. ``CRVAL`` moves
    in the tangent plane of the old one; ``CD <- (1 + A) CD`` with a free 2x2 ``A``. ``PV`` terms, ``CRPIX``
    and ``CTYPE`` stay fixed.

    QuickReduce's unregularised fit: OTAs with fewer than 5 (``otashift``) / 10 (``otashear``) pairs keep
    their header (the regularised fit is :func:`podisteps.astrometry.posterior_ota`).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The OTA header (TAN/TPV WCS).
    x, y : array-like
        **1-based** pixel positions of the matched sources, shape ``(n,)``.
    ref_ra, ref_dec : array-like
        Matched reference positions, degrees, shape ``(n,)``.
    mode : {'otashear', 'otashift'}
        Parameters fitted.
    f_scale : float, optional
        Soft-L1 inlier scale, arcsec.
    star_sigma : float, optional
        Error per axis of one source-reference pair, arcsec (the scale of ``pair_sigma``).
    pair_sigma : array-like, optional
        Error per axis of each pair, arcsec, shape ``(n,)`` (e.g. the reference catalogue's stated error
        and the centroid error added in quadrature): pair ``i`` is weighted ``star_sigma / pair_sigma[i]``
        (so ``f_scale`` keeps its meaning for a pair of error ``star_sigma``). None: equal weights.

    Returns
    -------
    header : astropy.io.fits.Header
        A refined copy (the input copy when not refined).
    residuals : numpy.ndarray
        Shape ``(n, 2)``, arcsec, with the returned header.
    refined : bool
        Whether the fit ran.
    """
    if mode not in MIN_MATCHES:
        raise ValueError(f"mode must be one of {sorted(MIN_MATCHES)}, got {mode!r}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref_ra, ref_dec = np.asarray(ref_ra, float), np.asarray(ref_dec, float)
    out = header.copy()
    refined = x.size >= MIN_MATCHES[mode]
    if refined:
        wcs = header_wcs(header)
        crval0 = tuple(float(v) for v in wcs.wcs.crval)
        cd0 = wcs.wcs.cd.copy() if wcs.wcs.has_cd() else wcs.pixel_scale_matrix
        weight = np.ones(x.size) if pair_sigma is None else star_sigma / np.asarray(pair_sigma, float)

        def residuals(p):
            _wcs_params(wcs, p, crval0, cd0, mode)
            ra, dec = wcs.all_pix2world(x, y, 1)
            return np.concatenate([d * weight for d in sky_offsets(ra, dec, ref_ra, ref_dec)])

        npar = 2 if mode == "otashift" else 6
        res = least_squares(residuals, np.zeros(npar), loss="soft_l1", f_scale=f_scale, method="trf",
                            x_scale=np.r_[1.0, 1.0, np.full(npar - 2, 1e-5)])
        _wcs_params(wcs, res.x, crval0, cd0, mode)
        out["CRVAL1"], out["CRVAL2"] = (float(v) for v in wcs.wcs.crval)
        if mode == "otashear":
            for i in (1, 2):
                for j in (1, 2):
                    out[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1, j - 1])
    ra, dec = header_wcs(out).all_pix2world(x, y, 1)
    return out, np.column_stack(sky_offsets(ra, dec, ref_ra, ref_dec)), refined


