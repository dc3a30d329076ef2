"""Photometric flat field from zero-point residuals (``-autophotflat``, docs/photometry.md, 'Photometric flat from the
zero points').

``podi_photflat.create_photometric_flatfield``: on a grid of ``nodes x nodes`` points ``step_px`` apart on each
OTA, the error-weighted mean of the zero-point offsets (``ZP - median ZP``) within ``smoothing_arcsec`` is the
local offset ``dZP``. The stars are those of ``CAT.PHOTCALIB`` that are unsaturated, have ``ZP_ERR`` below
``max_error`` (0.1 mag: many more than the calibration's tight error cut keeps, which with reference errors of
0.02 mag can leave a handful per OTA; the weights take care of their errors) and survive a 3-sigma clip of
their zero points; the grid is up-sampled bilinearly and
turned into a multiplicative map ``10^(0.4 dZP)`` (more ADU per unit flux where the ZP is larger), normalised
to a mean of 1 over all OTAs together, so that the global flux scale is unchanged and differences between
OTAs are kept. Stars of neighbouring OTAs count (QuickReduce's ``strict_ota=False``). A node without stars
takes the mean of its OTA's other nodes (0 if it has none).

Dividing the sky-subtracted data by the map, ``(data - SKYLEVEL) / pf + SKYLEVEL``, divides the star fluxes
by ``pf``: catalogue magnitudes grow by ``2.5 log10(pf)`` (:func:`correct_magnitudes`).

File format (QuickReduce's ``photflat_<FILTER>_bin<B>.fits``, read by ``-photflat``, docs/reduction-steps.md,
'Photometric flat'): one image extension per OTA named ``OTAxy.SCI`` with the map at the OTA's pixel size, ``FILTER``
and ``BINNING`` in the primary header. :func:`photflat_hdulist` writes the maps Rice-compressed with an absolute
quantisation step of :data:`QUANTIZE_STEP` (a smooth map then takes about 6 MB per 4096 x 4096 OTA instead
of 64 MB; astropy, and so QuickReduce, reads it like a plain image); :func:`read_photflat` reads one OTA
and checks filter and binning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from ..astrometry import header_wcs, tangent_plane
from ..errors import CalibrationError
from ..sanity import check_filter
from . import clipped_stars, usable_stars

__all__ = ["flat_stars", "photometric_flat", "apply_photflat", "photflat_at", "correct_magnitudes", "photflat_filename",
           "photflat_hdulist", "read_photflat", "QUANTIZE_STEP"]

#: Magnitudes at or above this value are undefined and left alone.
BAD_MAG_LIMIT = 75.0

#: Absolute quantisation step of the stored maps (relative flux, i.e. 1e-5 mag).
QUANTIZE_STEP = 1e-5

#: ``photflat_<FILTER>_bin<B>.fits``.
_NAME_RE = re.compile(r"^photflat_(?P<filter>.+)_bin(?P<binning>\d+)\.fits(\.fz)?$")


def photflat_filename(filtername: str, binning: int) -> str:
    """QuickReduce's name of a photometric flat: ``photflat_<FILTER>_bin<B>.fits``."""
    return f"photflat_{filtername}_bin{int(binning)}.fits"


def photflat_hdulist(maps: Mapping[int, np.ndarray], *, filtername: str, binning: int,
                     cards=()) -> fits.HDUList:
    """The photometric flat ``maps`` in QuickReduce's file format.

    Parameters
    ----------
    maps : mapping
        OTA -> map, shape ``(ny, nx)`` of that OTA's frame (dimensionless, about 1).
    filtername : str
        ``FILTER`` of the exposures it applies to.
    binning : int
        On-chip binning of those exposures.
    cards : iterable of tuple, optional
        Further ``(keyword, value, comment)`` cards of the primary header.

    Returns
    -------
    astropy.io.fits.HDUList
        PRIMARY (``FILTER``, ``BINNING``, ``cards``) and one Rice-compressed ``OTAxy.SCI`` per OTA.
    """
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = (filtername, "filter of the exposures it applies to")
    primary.header["BINNING"] = (int(binning), "on-chip binning")
    for key, value, comment in cards:
        primary.header[key] = (value, comment)
    hdus = [fits.CompImageHDU(np.asarray(m, np.float32), name=f"OTA{ota:02d}.SCI", compression_type="RICE_1",
                              quantize_level=-QUANTIZE_STEP, quantize_method=-1)  # no dither: smooth map
            for ota, m in maps.items()]
    return fits.HDUList([primary, *hdus])


def read_photflat(hdul: fits.HDUList, ota: int, *, filtername: str, binning: int, shape: tuple,
                  source: str) -> np.ndarray:
    """The photometric flat of one OTA (extension ``OTAxy.SCI``), checked against the frame.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        An open photometric-flat file.
    ota : int
        OTA position.
    filtername : str
        The frame's filter: the file's ``FILTER`` card (extension, else primary) and a
        ``photflat_<FILTER>_bin<B>.fits`` name must agree.
    binning : int
        The frame's binning: the primary ``BINNING`` card and the name must agree.
    shape : tuple
        ``(ny, nx)`` of the frame; the map must have it.
    source : str
        File name for messages.

    Returns
    -------
    numpy.ndarray
        float32, shape ``shape``.

    Raises
    ------
    CalibrationError
        No ``OTAxy.SCI`` extension, or another filter, binning or size (the message names the file).
    """
    extname = f"OTA{int(ota):02d}.SCI"
    if extname not in hdul:
        raise CalibrationError(f"{source}: photometric flat has no extension {extname}")
    hdu = hdul[extname]
    named = _NAME_RE.match(Path(source).name)
    if named and named["filter"] != filtername:
        raise CalibrationError(f"{source}: photometric flat for filter {named['filter']!r}, the frame has {filtername!r}")
    check_filter(hdul, hdu.header, filtername, source)
    theirs = int(named["binning"]) if named else hdul[0].header.get("BINNING")
    if theirs is not None and int(theirs) != int(binning):
        raise CalibrationError(f"{source}: photometric flat for binning {theirs}, the frame has binning {binning}")
    if tuple(hdu.data.shape) != tuple(shape):
        raise CalibrationError(f"{source}: {extname} has shape {hdu.data.shape}, the frame needs {tuple(shape)}: "
                               "wrong binning or instrument?")
    return np.asarray(hdu.data, np.float32)


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


def flat_stars(calib_table: Table, *, max_error: float = 0.1) -> np.ndarray:
    """The stars :func:`photometric_flat` averages: unsaturated, ``ZP_ERR < max_error`` (mag), 3-sigma clipped.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(len(calib_table),)``; all False when the calibration used no star (``USED4CALIB``).
    """
    if not np.any(calib_table["USED4CALIB"]):
        return np.zeros(len(calib_table), bool)
    return clipped_stars(np.asarray(calib_table["ZP"], float), usable_stars(calib_table, error_cut=max_error))


def photometric_flat(
    calib_table: Table,
    headers_by_ota: dict[int, fits.Header],
    *,
    nodes: int = 9,
    step_px: float = 512.0,
    smoothing_arcsec: float = 120.0,
    max_error: float = 0.1,
) -> dict[int, np.ndarray]:
    """Per-OTA multiplicative photometric flats from the zero-point residuals of ``CAT.PHOTCALIB``.

    Parameters
    ----------
    calib_table : astropy.table.Table
        ``CAT.PHOTCALIB`` of :func:`podisteps.photometry.photcalib` (``ODI_RA``, ``ODI_DEC`` degrees, ``ZP``,
        ``ZP_ERR`` mag, ``ODI_FLUX_MAX``, ``ODI_BACKGROUND`` ADU, ``USED4CALIB``).
    headers_by_ota : dict
        OTA -> image-extension header with ``NAXIS1``, ``NAXIS2`` and the calibrated WCS.
    nodes : int, optional
        Grid points per axis.
    step_px : float, optional
        Grid spacing, pixels (512 for unbinned OTAs; 256 for bin 2).
    smoothing_arcsec : float, optional
        Radius of the stars averaged at each node, arcsec.
    max_error : float, optional
        Largest ``ZP_ERR`` of a star taken, mag.

    Returns
    -------
    dict
        OTA -> map, shape ``(NAXIS2, NAXIS1)``, float32, mean 1 over all OTAs; empty when the calibration used
        no star (``USED4CALIB``).
    """
    used = calib_table[flat_stars(calib_table, max_error=max_error)]
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
        maps[ota] = np.power(10.0, 0.4 * (wy @ dzp @ wx.T)).astype(np.float32)
    mean = sum(m.sum(dtype=np.float64) for m in maps.values()) / sum(m.size for m in maps.values())
    for m in maps.values():
        m /= np.float32(mean)
    return maps


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


def photflat_at(photflat: Mapping[int, np.ndarray], ota, x, y) -> np.ndarray:
    """Photometric-flat value at 1-based pixels ``(x, y)`` of OTAs ``ota`` (nearest pixel; 1 for other OTAs).

    Parameters
    ----------
    photflat : mapping
        OTA -> map from :func:`photometric_flat` (read one at a time: a lazy mapping keeps one in memory).
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


def correct_magnitudes(catalog: Table, photflat: Mapping[int, np.ndarray]) -> Table:
    """A copy of a ``CAT.ODI`` table with every defined ``MAG_*`` magnitude raised by ``2.5 log10(pf)``.

    Parameters
    ----------
    catalog : astropy.table.Table
        Columns ``X``, ``Y`` (1-based pixels), ``OTA`` and ``MAG_*`` (mag; >= 75 undefined, kept).
    photflat : mapping
        OTA -> map from :func:`photometric_flat` (see :func:`photflat_at`).

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
