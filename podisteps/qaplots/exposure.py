"""The plot inputs of one exposure, taken from the tables and headers of its final MEF.

Everything on the focal plane is in standard coordinates ``(xi, eta)`` around the pointing (the common
``CRVAL`` of the OTAs), arcmin, ``xi`` towards East.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import astrometry
from .common import ExposureId

__all__ = ["ExposureQA", "exposure_qa", "STAR_MAX_MAGERR"]

#: Sources used for the seeing and PSF-shape plots: FLAGS 0 and ``MAGERR_AUTO`` below this, mag.
STAR_MAX_MAGERR = 0.2

#: Header value meaning "undefined" (QuickReduce's -99).
_UNDEFINED = -99.0


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
        Clean sources (FLAGS 0, ``MAGERR_AUTO`` < :data:`STAR_MAX_MAGERR`): ``OTA``, ``XI``, ``ETA``, ``FWHM``
        (arcsec), ``ELL`` (ellipticity 1 - b/a) and ``PA`` (major axis position angle, North through East,
        degrees).
    photcal : astropy.table.Table or None
        ``OTA``, ``XI``, ``ETA``, ``REFMAG`` (colour-corrected reference magnitude, mag), ``ZP``, ``ZP_ERR``
        (mag) and ``USED`` (bool) of the photometric calibration stars.
    zp : tuple or None
        ``(PHOTZP, PHOTZPSM, PHOTZPSP)``: the zero point and its 16th/84th percentiles, mag.
    refmag_label : str
        Name of the reference magnitude, e.g. ``SDSS_MAG_R``.
    sky : astropy.table.Table
        The sky boxes: ``OTA`` and ``INTENSITY`` (ADU).
    """

    ident: ExposureId
    otas: tuple
    outlines: dict
    wcs_valid: bool
    matches: Table
    stars: Table
    photcal: Table | None
    zp: tuple | None
    refmag_label: str
    sky: Table


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
    good = ((table["FLAGS"] == 0) & (table["MAGERR_AUTO"] < STAR_MAX_MAGERR) & (table["FWHM_WORLD"] > 0)
            & np.isfinite(table["FWHM_WORLD"]) & np.isin(table["OTA"], list(sci)))
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


def _photcal(table: Table | None, refmag: str, center) -> Table | None:
    if table is None or not len(table) or refmag not in table.colnames:
        return None
    xi, eta = _arcmin(table["ODI_RA"], table["ODI_DEC"], center)
    return Table({"OTA": np.asarray(table["ODI_OTA"], int), "XI": xi, "ETA": eta,
                  "REFMAG": np.asarray(table[refmag], float), "ZP": np.asarray(table["ZP"], float),
                  "ZP_ERR": np.asarray(table["ZP_ERR"], float), "USED": np.asarray(table["USED4CALIB"], bool)})


def exposure_qa(obsid: str, primary: fits.Header, sci_headers: dict, tables: dict,
                table_headers: dict | None = None) -> ExposureQA:
    """Collect the plot inputs of one exposure from the contents of its final MEF.

    Parameters
    ----------
    obsid : str
        Exposure name.
    primary : astropy.io.fits.Header
        Primary header (``OBJECT``, ``FILTER``, ``EXPTIME``, ``WCSCAL``, ``PHOTZP``...).
    sci_headers : dict
        OTA -> header of its ``OTAxy.SCI`` extension (size and WCS), in the MEF's order.
    tables : dict
        Extension name -> ``Table`` for those of ``CAT.ODI``, ``WCSCAL.CAT``, ``CAT.PHOTCALIB``, ``SKYLEVEL``
        that exist.
    table_headers : dict, optional
        Extension name -> header; ``CAT.PHOTCALIB``'s ``REFMAG`` names the reference magnitude column.

    Returns
    -------
    ExposureQA
    """
    ident = ExposureId(obsid, str(primary.get("OBJECT", "")), str(primary.get("FILTER", "")),
                       float(primary.get("EXPTIME", 0.0)))
    center = (float(np.median([h["CRVAL1"] for h in sci_headers.values()])),
              float(np.median([h["CRVAL2"] for h in sci_headers.values()])))
    refmag = str((table_headers or {}).get("CAT.PHOTCALIB", {}).get("REFMAG", ""))
    zp = _defined(primary.get("PHOTZP"))
    sky = tables.get("SKYLEVEL")
    return ExposureQA(
        ident=ident,
        otas=tuple(sci_headers),
        outlines={ota: _outline(h, center) for ota, h in sci_headers.items()},
        wcs_valid=bool(primary.get("WCSCAL", False)),
        matches=_matches(tables.get("WCSCAL.CAT"), center),
        stars=_stars(tables.get("CAT.ODI"), sci_headers, center),
        photcal=_photcal(tables.get("CAT.PHOTCALIB"), refmag, center),
        zp=None if zp is None else (zp, _defined(primary.get("PHOTZPSM")), _defined(primary.get("PHOTZPSP"))),
        refmag_label=refmag,
        sky=Table({"OTA": np.asarray(sky["OTA"], int), "INTENSITY": np.asarray(sky["INTENSITY"], float)})
        if sky is not None and len(sky) else Table(names=("OTA", "INTENSITY"), dtype=(int, float)),
    )
