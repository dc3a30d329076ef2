"""Photometric flat field from zero-point residuals (``-autophotflat``, QUICKREDUCE_SPEC.md section 4.7 step 11).

``podi_photflat.create_photometric_flatfield``: on a grid of ``nodes x nodes`` points ``step_px`` apart on each
OTA, the error-weighted mean of the zero-point offsets (``ZP - median ZP`` of the stars used for the
calibration) within ``smoothing_arcsec`` is the local offset ``dZP``; the grid is up-sampled bilinearly and
turned into a multiplicative map ``10^(0.4 dZP)`` (more ADU per unit flux where the ZP is larger), normalised
to a mean of 1 over all OTAs together, so that the global flux scale is unchanged and differences between
OTAs are kept. Stars of neighbouring OTAs count (QuickReduce's ``strict_ota=False``). A node without stars
takes the mean of its OTA's other nodes (0 if it has none).

Dividing the sky-subtracted data by the map, ``(data - SKYLEVEL) / pf + SKYLEVEL``, divides the star fluxes
by ``pf``: catalogue magnitudes grow by ``2.5 log10(pf)`` (:func:`correct_magnitudes`).
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from .astrometry import header_wcs, tangent_plane

__all__ = ["photometric_flat", "apply_photflat", "photflat_at", "correct_magnitudes"]

#: Magnitudes at or above this value are undefined and left alone.
BAD_MAG_LIMIT = 75.0


def _linear_weights(n_pix: int, nodes: int, step_px: float) -> np.ndarray:
    """Bilinear interpolation weights of ``n_pix`` pixels (0-based) from nodes at ``k * step_px``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_pix, nodes)``; rows sum to 1; pixels beyond the last node take its value.
    """
    t = np.arange(n_pix) / step_px
    k = np.clip(np.floor(t).astype(int), 0, nodes - 2)
    f = np.clip(t - k, 0.0, 1.0)
    w = np.zeros((n_pix, nodes))
    rows = np.arange(n_pix)
    w[rows, k] = 1.0 - f
    w[rows, k + 1] = f
    return w


def _node_offsets(tree: cKDTree, offsets: np.ndarray, weights: np.ndarray, xi: np.ndarray, eta: np.ndarray,
                  radius: float) -> np.ndarray:
    """Error-weighted mean offset of the stars within ``radius`` of each node (NaN without stars)."""
    out = np.full(xi.size, np.nan)
    for n, idx in enumerate(tree.query_ball_point(np.column_stack([xi.ravel(), eta.ravel()]), radius)):
        if idx:
            out[n] = np.average(offsets[idx], weights=weights[idx])
    return out.reshape(xi.shape)


def photometric_flat(
    calib_table: Table,
    headers_by_ota: dict[int, fits.Header],
    *,
    nodes: int = 9,
    step_px: float = 512.0,
    smoothing_arcsec: float = 120.0,
) -> dict[int, np.ndarray]:
    """Per-OTA multiplicative photometric flats from the zero-point residuals of ``CAT.PHOTCALIB``.

    Parameters
    ----------
    calib_table : astropy.table.Table
        ``CAT.PHOTCALIB`` of :func:`podisteps.photometry.photcalib` (``ODI_RA``, ``ODI_DEC`` degrees, ``ZP``,
        ``ZP_ERR`` mag, ``USED4CALIB``).
    headers_by_ota : dict
        OTA -> image-extension header with ``NAXIS1``, ``NAXIS2`` and the calibrated WCS.
    nodes : int, optional
        Grid points per axis.
    step_px : float, optional
        Grid spacing, pixels (512 for unbinned OTAs; 256 for bin 2).
    smoothing_arcsec : float, optional
        Radius of the stars averaged at each node, arcsec.

    Returns
    -------
    dict
        OTA -> map, shape ``(NAXIS2, NAXIS1)``, float32, mean 1 over all OTAs; empty without used stars.
    """
    used = calib_table[np.asarray(calib_table["USED4CALIB"], bool)]
    if len(used) == 0:
        return {}
    zp = np.asarray(used["ZP"], float)
    offsets = zp - np.median(zp)
    weights = 1.0 / np.asarray(used["ZP_ERR"], float) ** 2
    ra0, dec0 = float(np.median(used["ODI_RA"])), float(np.median(used["ODI_DEC"]))
    tree = cKDTree(np.column_stack(tangent_plane(np.asarray(used["ODI_RA"], float),
                                                 np.asarray(used["ODI_DEC"], float), ra0, dec0)))
    grid = np.arange(nodes) * step_px + 1.0  # 1-based pixel of each node
    maps = {}
    for ota, header in headers_by_ota.items():
        gx, gy = np.meshgrid(grid, grid)
        ra, dec = header_wcs(header).all_pix2world(gx, gy, 1)
        dzp = _node_offsets(tree, offsets, weights, *tangent_plane(ra, dec, ra0, dec0), smoothing_arcsec)
        dzp[np.isnan(dzp)] = np.nanmean(dzp) if np.isfinite(dzp).any() else 0.0
        wy = _linear_weights(int(header["NAXIS2"]), nodes, step_px)
        wx = _linear_weights(int(header["NAXIS1"]), nodes, step_px)
        maps[ota] = np.power(10.0, 0.4 * (wy @ dzp @ wx.T))
    mean = sum(m.sum() for m in maps.values()) / sum(m.size for m in maps.values())
    return {ota: (m / mean).astype(np.float32) for ota, m in maps.items()}


def apply_photflat(data: np.ndarray, pf: np.ndarray, skylevel: float) -> np.ndarray:
    """``(data - skylevel) / pf + skylevel``: flux-correct an OTA image without changing its sky level.

    Parameters
    ----------
    data, pf : numpy.ndarray
        OTA image, ADU, and its photometric flat, same shape ``(ny, nx)``.
    skylevel : float
        ``SKYLEVEL``, ADU.

    Returns
    -------
    numpy.ndarray
        Shape ``(ny, nx)``, float32.
    """
    return ((np.asarray(data, np.float32) - skylevel) / pf + skylevel).astype(np.float32)


def photflat_at(photflat: dict[int, np.ndarray], ota, x, y) -> np.ndarray:
    """Photometric-flat value at 1-based pixels ``(x, y)`` of OTAs ``ota`` (nearest pixel; 1 for other OTAs).

    Parameters
    ----------
    photflat : dict
        OTA -> map from :func:`photometric_flat`.
    ota, x, y : array-like
        Shape ``(n,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``.
    """
    ota, x, y = (np.atleast_1d(np.asarray(v)) for v in (ota, x, y))
    out = np.ones(x.shape)
    for o, pf in photflat.items():
        on = ota == o
        ix = np.clip(np.rint(x[on]).astype(int) - 1, 0, pf.shape[1] - 1)
        iy = np.clip(np.rint(y[on]).astype(int) - 1, 0, pf.shape[0] - 1)
        out[on] = pf[iy, ix]
    return out


def correct_magnitudes(catalog: Table, photflat: dict[int, np.ndarray]) -> Table:
    """A copy of a ``CAT.ODI`` table with every defined ``MAG_*`` magnitude raised by ``2.5 log10(pf)``.

    Parameters
    ----------
    catalog : astropy.table.Table
        Columns ``X``, ``Y`` (1-based pixels), ``OTA`` and ``MAG_*`` (mag; >= 75 undefined, kept).
    photflat : dict
        OTA -> map from :func:`photometric_flat`.

    Returns
    -------
    astropy.table.Table
        The magnitudes of the sources as measured on the image corrected by :func:`apply_photflat`.
    """
    out = catalog.copy()
    dmag = 2.5 * np.log10(photflat_at(photflat, out["OTA"], out["X"], out["Y"]))
    for name in out.colnames:
        if name.startswith("MAG_"):
            good = np.asarray(out[name] < BAD_MAG_LIMIT)
            out[name][good] += dmag[good].astype(out[name].dtype)
    return out
