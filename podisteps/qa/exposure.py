"""The plot inputs of one exposure, taken from the tables and headers of its final MEF (and, with
``-autophotflat``, from a few rows of its photometric flat).

Everything on the focal plane is in standard coordinates ``(xi, eta)`` around the pointing (the common
``CRVAL`` of the OTAs), arcmin, ``xi`` towards East.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import astrometry
from ..catalog.detect import point_sources
from .common import ExposureId

__all__ = ["ExposureQA", "ZeroPointStars", "PhotflatMap", "FlatBlocks", "exposure_qa", "photflat_blocks",
           "PHOTFLAT_BLOCKS"]

#: Blocks per OTA axis on which the ``autophotflat`` plot samples the photometric flat (128 px at bin 1: four
#: per node spacing of the flat, which is smooth between its nodes 1/8 of an OTA apart).
PHOTFLAT_BLOCKS = 32

#: Header value meaning "undefined" (QuickReduce's -99).
_UNDEFINED = -99.0


@dataclass(frozen=True)
class ZeroPointStars:
    """The stars of one photometric calibration and its zero point.

    Attributes
    ----------
    stars : astropy.table.Table
        ``OTA``, ``XI``, ``ETA`` (arcmin), ``REFMAG`` (colour-corrected reference magnitude, mag), ``ZP``,
        ``ZP_ERR`` (mag) and ``USED`` (bool) of each calibration star.
    level : tuple
        ``(zp, p16, p84)``: the zero point and the 16th/84th percentiles of the used stars' ones, mag
        (``p16``/``p84`` may be None).
    refmag_label : str
        Name of the reference magnitude, e.g. ``SDSS_MAG_R``.
    """

    stars: Table
    level: tuple
    refmag_label: str


@dataclass(frozen=True)
class FlatBlocks:
    """A photometric flat of one OTA sampled on blocks (:func:`photflat_blocks`).

    Attributes
    ----------
    x_edges, y_edges : numpy.ndarray
        Block edges, shapes ``(m + 1,)`` and ``(n + 1,)``, 1-based pixel coordinates of the flat's frame
        (``0.5`` .. ``NAXIS + 0.5``).
    pf : numpy.ndarray
        The flat at the centre pixel of each block, shape ``(n, m)``, dimensionless.
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    pf: np.ndarray


@dataclass(frozen=True)
class PhotflatMap:
    """The photometric flat of ``-autophotflat`` over the focal plane, on blocks of each OTA.

    Attributes
    ----------
    xi, eta : dict
        OTA -> block corners, shape ``(n + 1, m + 1)``, arcmin.
    pf : dict
        OTA -> the flat on the blocks, shape ``(n, m)``, dimensionless (about 1).
    stars : int
        ``PHFSTARS``: stars the flat was built from (0: it could not be built and is 1 everywhere).
    """

    xi: dict
    eta: dict
    pf: dict
    stars: int


@dataclass
class ExposureQA:
    """What the QA plots of one exposure draw.

    Attributes
    ----------
    ident : ExposureId
        For the titles.
    otas : tuple of int
        OTAs of the MEF, in its order.
    outlines : dict
        OTA -> corners ``(4, 2)`` of its image, ``(xi, eta)`` arcmin.
    wcs_valid : bool
        ``WCSCAL`` of the primary header; without it only the sky plot is made.
    matches : astropy.table.Table
        One row per star matched by the astrometric calibration: ``OTA``, ``XI``, ``ETA`` (arcmin) and the
        residual ODI - reference ``DRA`` (d alpha cos delta) and ``DDEC``, arcsec.
    stars : astropy.table.Table
        Point sources (:func:`podisteps.catalog.detect.point_sources`): ``OTA``, ``XI``, ``ETA``, ``FWHM``
        (arcsec), ``ELL`` (ellipticity 1 - b/a) and ``PA`` (major axis position angle, North through East,
        degrees).
    photcal : ZeroPointStars or None
        The photometric calibration (``CAT.PHOTCALIB``; level ``PHOTZP``, ``PHOTZPSM``, ``PHOTZPSP``), None
        without a zero point.
    photcal_init : ZeroPointStars or None
        ``-autophotflat``: the first (init) calibration, before the photometric flat (``CAT.PHOTCALIB.RAW``;
        level ``PHZPINIT`` and the percentiles of its used stars), None without it.
    sky : astropy.table.Table
        The sky boxes: ``OTA`` and ``INTENSITY`` (ADU).
    photflat : PhotflatMap or None
        ``-autophotflat``: the photometric flat, None when it was not given.
    """

    ident: ExposureId
    otas: tuple
    outlines: dict
    wcs_valid: bool
    matches: Table
    stars: Table
    photcal: ZeroPointStars | None
    photcal_init: ZeroPointStars | None
    sky: Table
    photflat: PhotflatMap | None = None


def _defined(value) -> float | None:
    return None if value is None or float(value) <= _UNDEFINED else float(value)


def _arcmin(ra, dec, center) -> tuple[np.ndarray, np.ndarray]:
    xi, eta = astrometry.tangent_plane(np.asarray(ra, float), np.asarray(dec, float), *center)
    return xi / 60.0, eta / 60.0


def _outline(header: fits.Header, center) -> np.ndarray:
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    x = np.array([0.5, nx + 0.5, nx + 0.5, 0.5])
    y = np.array([0.5, 0.5, ny + 0.5, ny + 0.5])
    ra, dec = astrometry.header_wcs(header).all_pix2world(x, y, 1)
    return np.column_stack(_arcmin(ra, dec, center))


def _position_angle(header: fits.Header, x, y, theta_deg) -> np.ndarray:
    """Sky position angle (North through East, degrees) of the image-frame angle ``theta_deg`` at ``(x, y)``."""
    t = np.radians(theta_deg)
    wcs = astrometry.header_wcs(header)
    ra0, dec0 = wcs.all_pix2world(x, y, 1)
    ra1, dec1 = wcs.all_pix2world(x + np.cos(t), y + np.sin(t), 1)
    dxi, deta = astrometry.tangent_plane(ra1, dec1, ra0, dec0)
    return np.degrees(np.arctan2(dxi, deta)) % 180.0


def _matches(table: Table | None, center) -> Table:
    out = Table(names=("OTA", "XI", "ETA", "DRA", "DDEC"), dtype=(int, float, float, float, float))
    if table is None or not len(table):
        return out
    dra, ddec = astrometry.sky_offsets(table["ODI_RA"], table["ODI_DEC"], table["REF_RA"], table["REF_DEC"])
    xi, eta = _arcmin(table["ODI_RA"], table["ODI_DEC"], center)
    return Table({"OTA": np.asarray(table["OTA"], int), "XI": xi, "ETA": eta, "DRA": dra, "DDEC": ddec})


def _stars(table: Table | None, sci: dict, center) -> Table:
    out = Table(names=("OTA", "XI", "ETA", "FWHM", "ELL", "PA"), dtype=(int,) + (float,) * 5)
    if table is None or not len(table):
        return out
    good = (point_sources(table) & (table["FWHM_WORLD"] > 0) & np.isfinite(table["FWHM_WORLD"])
            & np.isin(table["OTA"], list(sci)))
    cat = table[good]
    pa = np.zeros(len(cat))
    otas = np.asarray(cat["OTA"], int)
    for ota in np.unique(otas):
        on = otas == ota
        pa[on] = _position_angle(sci[ota], np.asarray(cat["X"][on], float), np.asarray(cat["Y"][on], float),
                                 np.asarray(cat["THETAWIN_IMAGE"][on], float))
    xi, eta = _arcmin(cat["RA"], cat["DEC"], center)
    return Table({"OTA": otas, "XI": xi, "ETA": eta, "FWHM": np.asarray(cat["FWHM_WORLD"], float),
                  "ELL": np.asarray(cat["ELLIPTICITY"], float), "PA": pa})


def _photcal(table: Table | None, header, zp: float | None, center, *, percentiles=None) -> ZeroPointStars | None:
    """The calibration of ``table`` with zero point ``zp``; ``percentiles`` ``(p16, p84)``, or None to take
    those of the used stars' zero points (as ``PHOTZPSM``/``PHOTZPSP`` are)."""
    refmag = str((header or {}).get("REFMAG", ""))
    if zp is None or table is None or not len(table) or refmag not in table.colnames:
        return None
    xi, eta = _arcmin(table["ODI_RA"], table["ODI_DEC"], center)
    stars = Table({"OTA": np.asarray(table["ODI_OTA"], int), "XI": xi, "ETA": eta,
                   "REFMAG": np.asarray(table[refmag], float), "ZP": np.asarray(table["ZP"], float),
                   "ZP_ERR": np.asarray(table["ZP_ERR"], float), "USED": np.asarray(table["USED4CALIB"], bool)})
    if percentiles is None:
        used = stars["ZP"][stars["USED"]]
        percentiles = tuple(float(v) for v in np.percentile(used, [16.0, 84.0])) if len(used) else (None, None)
    return ZeroPointStars(stars, (zp, *percentiles), refmag)


def photflat_blocks(hdul: fits.HDUList, *, blocks: int = PHOTFLAT_BLOCKS) -> dict[int, FlatBlocks]:
    """Sample a photometric-flat file (QuickReduce's format, one ``OTAxy.SCI`` per OTA) on blocks of each OTA.

    Only the rows through the block centres are read (a Rice-compressed map is stored by rows), so a
    full-size OTA costs ``blocks`` rows, not its 4096.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    blocks : int, optional
        Blocks per OTA axis (fewer for a smaller map).

    Returns
    -------
    dict
        OTA -> :class:`FlatBlocks`, in the file's order.
    """
    out = {}
    for hdu in hdul[1:]:
        if not hdu.name.endswith(".SCI"):
            continue
        ny, nx = int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])
        ex, ey = (np.round(np.linspace(0, n, min(blocks, n) + 1)).astype(int) for n in (nx, ny))
        cx, cy = (ex[:-1] + ex[1:]) // 2, (ey[:-1] + ey[1:]) // 2
        rows = np.stack([np.asarray(hdu.section[int(r)], float) for r in cy])
        out[int(hdu.name[3:5])] = FlatBlocks(ex + 0.5, ey + 0.5, rows[:, cx])
    return out


def _photflat_map(blocks: dict[int, FlatBlocks], sci: dict, stars: int, center) -> PhotflatMap:
    """Place the sampled flat on the focal plane through the MEF's WCS (``-softbin`` scales the pixels)."""
    xi, eta, pf = {}, {}, {}
    for ota, b in blocks.items():
        if ota not in sci:
            continue
        hdr = sci[ota]
        sx = int(hdr["NAXIS1"]) / (b.x_edges[-1] - 0.5)  # MEF pixels per flat pixel
        sy = int(hdr["NAXIS2"]) / (b.y_edges[-1] - 0.5)
        x, y = np.meshgrid((b.x_edges - 0.5) * sx + 0.5, (b.y_edges - 0.5) * sy + 0.5)
        ra, dec = astrometry.header_wcs(hdr).all_pix2world(x, y, 1)
        xi[ota], eta[ota] = _arcmin(ra, dec, center)
        pf[ota] = b.pf
    return PhotflatMap(xi, eta, pf, stars)


def exposure_qa(obsid: str, primary: fits.Header, sci_headers: dict, tables: dict,
                table_headers: dict | None = None, *, photflat: dict | None = None) -> ExposureQA:
    """Collect the plot inputs of one exposure from the contents of its final MEF.

    Parameters
    ----------
    obsid : str
        Exposure name.
    primary : astropy.io.fits.Header
        Primary header (``OBJECT``, ``FILTER``, ``EXPTIME``, ``WCSCAL``, ``PHOTZP``, with ``-autophotflat``
        ``PHZPINIT`` and ``PHFSTARS``...).
    sci_headers : dict
        OTA -> header of its ``OTAxy.SCI`` extension (size and WCS), in the MEF's order.
    tables : dict
        Extension name -> ``Table`` for those of ``CAT.ODI``, ``WCSCAL.CAT``, ``CAT.PHOTCALIB``,
        ``CAT.PHOTCALIB.RAW``, ``SKYLEVEL`` that exist.
    table_headers : dict, optional
        Extension name -> header; the ``REFMAG`` of ``CAT.PHOTCALIB`` (``.RAW``) names the reference magnitude
        column.
    photflat : dict, optional
        ``-autophotflat``: OTA -> :class:`FlatBlocks` of the photometric flat (:func:`photflat_blocks`).

    Returns
    -------
    ExposureQA
    """
    ident = ExposureId(obsid, str(primary.get("OBJECT", "")), str(primary.get("FILTER", "")),
                       float(primary.get("EXPTIME", 0.0)))
    center = (float(np.median([h["CRVAL1"] for h in sci_headers.values()])),
              float(np.median([h["CRVAL2"] for h in sci_headers.values()])))
    headers = table_headers or {}
    sky = tables.get("SKYLEVEL")
    return ExposureQA(
        ident=ident,
        otas=tuple(sci_headers),
        outlines={ota: _outline(h, center) for ota, h in sci_headers.items()},
        wcs_valid=bool(primary.get("WCSCAL", False)),
        matches=_matches(tables.get("WCSCAL.CAT"), center),
        stars=_stars(tables.get("CAT.ODI"), sci_headers, center),
        photcal=_photcal(tables.get("CAT.PHOTCALIB"), headers.get("CAT.PHOTCALIB"), _defined(primary.get("PHOTZP")),
                         center, percentiles=(_defined(primary.get("PHOTZPSM")), _defined(primary.get("PHOTZPSP")))),
        photcal_init=_photcal(tables.get("CAT.PHOTCALIB.RAW"), headers.get("CAT.PHOTCALIB.RAW"),
                              _defined(primary.get("PHZPINIT")), center),
        sky=Table({"OTA": np.asarray(sky["OTA"], int), "INTENSITY": np.asarray(sky["INTENSITY"], float)})
        if sky is not None and len(sky) else Table(names=("OTA", "INTENSITY"), dtype=(int, float)),
        photflat=None if photflat is None else _photflat_map(photflat, sci_headers, int(primary.get("PHFSTARS", 0)),
                                                             center),
    )
