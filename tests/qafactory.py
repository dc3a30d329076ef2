"""Synthetic final-MEF contents for the QA tests: OTA headers with TAN WCSs and the catalogue tables.

``mef_contents`` builds what :func:`podisteps.qa.exposure_qa` reads: a primary header, the ``OTAxy.SCI``
headers of a grid of OTAs around (150, 30) deg, and ``CAT.ODI``, ``WCSCAL.CAT``, ``CAT.PHOTCALIB`` and
``SKYLEVEL`` tables with known sizes (stars spread evenly over the OTAs); with ``autophotflat`` also
``CAT.PHOTCALIB.RAW`` and its primary cards. ``write_photflat`` writes a matching photometric flat in
QuickReduce's format.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from podisteps.astrometry import header_wcs
from podisteps.photometry.photflat import photflat_hdulist

CENTER = (150.0, 30.0)

#: ``autophotflat``: the init zero points (and the flat's 2.5 log10) grow with xi by this much, mag/arcmin.
FLAT_SLOPE = 0.004

IDENT = {"OBSID": "20131005T014745.0", "OBJECT": "QA field", "FILTER": "odi_r", "EXPTIME": 120.0}


def _sci_header(ota: int, *, npix: int, scale: float, gap: int) -> fits.Header:
    ox, oy = divmod(ota, 10)
    hdr = fits.Header()
    hdr["NAXIS1"], hdr["NAXIS2"] = npix, npix
    hdr["OTA"] = ota
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = CENTER
    hdr["CRPIX1"] = -(ox - 1) * (npix + gap) + npix / 2
    hdr["CRPIX2"] = -(oy - 1) * (npix + gap) + npix / 2
    hdr["CD1_1"], hdr["CD2_2"] = -scale / 3600.0, scale / 3600.0
    hdr["CD1_2"] = hdr["CD2_1"] = 0.0
    return hdr


def _offset(ra, dec) -> np.ndarray:
    """The zero-point offset of the init calibration (and the flat) at ``(ra, dec)``: linear in xi, mag."""
    return FLAT_SLOPE * (np.asarray(ra) - CENTER[0]) * np.cos(np.radians(CENTER[1])) * 60.0


def write_photflat(path, sci: dict, *, shape=None) -> None:
    """Write a photometric flat ``10^(0.4 offset)`` (the init zero-point trend) for the OTAs of ``sci`` to
    ``path`` in QuickReduce's format; ``shape`` ``(ny, nx)``: the flat's size when it is not that of the
    frames of ``sci`` (a ``-softbin`` MEF has smaller frames than its flat)."""
    maps = {}
    for ota, hdr in sci.items():
        ny, nx = shape or (hdr["NAXIS2"], hdr["NAXIS1"])
        sx, sy = hdr["NAXIS1"] / nx, hdr["NAXIS2"] / ny
        y, x = np.mgrid[1:ny + 1, 1:nx + 1]
        ra, dec = header_wcs(hdr).all_pix2world((x - 0.5) * sx + 0.5, (y - 0.5) * sy + 0.5, 1)
        maps[ota] = np.power(10.0, 0.4 * _offset(ra, dec))
    photflat_hdulist(maps, filtername=IDENT["FILTER"], binning=1, cards=[("PHFSTARS", 60, "stars")]).writeto(path)


def mef_contents(*, otas=(22, 33), stars_per_ota: int = 40, npix: int = 512, scale: float = 0.9,
                 seed: int = 1, wcs_valid: bool = True, photometry: bool = True, autophotflat: bool = False):
    """``(primary, sci_headers, tables, table_headers)`` of a synthetic exposure.

    Parameters
    ----------
    otas : sequence of int
        OTA numbers ``xy`` (x, y in 0..6, placed on a grid around the centre).
    stars_per_ota : int
        Clean sources per OTA; every second one is matched in ``WCSCAL.CAT`` and used in ``CAT.PHOTCALIB``.
    npix, scale : int, float
        OTA size, pixels, and pixel scale, arcsec/pixel.
    wcs_valid, photometry : bool
        ``WCSCAL`` (else no ``WCSCAL.CAT`` and no photometry), and a zero point with ``CAT.PHOTCALIB``.
    autophotflat : bool
        Also ``CAT.PHOTCALIB.RAW`` (the same stars with the zero-point trend ``FLAT_SLOPE`` across the
        focal plane) and ``PHZPINIT``, ``PHSDINIT``, ``PHFSTARS``.
    """
    rng = np.random.default_rng(seed)
    primary = fits.Header(IDENT)
    primary["WCSCAL"] = wcs_valid
    if photometry:
        primary["PHOTZP"], primary["PHOTZPSM"], primary["PHOTZPSP"] = 26.0, 25.97, 26.03
    sci = {ota: _sci_header(ota, npix=npix, scale=scale, gap=npix // 20) for ota in otas}
    rows = []
    for ota, hdr in sci.items():
        x, y = rng.uniform(20, npix - 20, (2, stars_per_ota))
        ra, dec = header_wcs(hdr).all_pix2world(x, y, 1)
        rows.append(Table({"RA": ra, "DEC": dec, "X": x, "Y": y, "OTA": np.full(stars_per_ota, ota),
                           "FWHM_WORLD": rng.normal(1.0, 0.05, stars_per_ota), "FLAGS": np.zeros(stars_per_ota, int),
                           "ELONGATION": rng.uniform(1.0, 1.1, stars_per_ota),
                           "MAGERR_AUTO": rng.uniform(0.002, 0.05, stars_per_ota),
                           "THETAWIN_IMAGE": rng.uniform(-90, 90, stars_per_ota),
                           "ELLIPTICITY": rng.uniform(0.0, 0.12, stars_per_ota)}))
    odi = vstack(rows)
    odi["FWHM_IMAGE"] = odi["FWHM_WORLD"] / scale
    matched = odi[::2]
    noise = rng.normal(0, 0.08 / 3600, (2, len(matched)))
    wcscal = Table({"ODI_RA": matched["RA"], "ODI_DEC": matched["DEC"], "REF_RA": matched["RA"] + noise[0],
                    "REF_DEC": matched["DEC"] + noise[1], "OTA": matched["OTA"]})
    mags = rng.uniform(15, 21, len(matched))
    photcal = Table({"ODI_RA": matched["RA"], "ODI_DEC": matched["DEC"], "ODI_OTA": matched["OTA"],
                     "SDSS_MAG_R": mags, "ZP": rng.normal(26.0, 0.03, len(matched)),
                     "ZP_ERR": np.full(len(matched), 0.02), "USED4CALIB": mags > 16})
    sky = Table({"OTA": np.repeat(list(otas), 30), "INTENSITY": rng.normal(1000, 5, 30 * len(otas))})
    tables = {"CAT.ODI": odi, "SKYLEVEL": sky}
    if wcs_valid:
        tables["WCSCAL.CAT"] = wcscal
        if photometry:
            tables["CAT.PHOTCALIB"] = photcal
        if photometry and autophotflat:
            raw = photcal.copy()
            raw["ZP"] += _offset(raw["ODI_RA"], raw["ODI_DEC"])
            tables["CAT.PHOTCALIB.RAW"] = raw
            used = raw["ZP"][raw["USED4CALIB"]]
            primary["PHZPINIT"], primary["PHSDINIT"], primary["PHFSTARS"] = np.median(used), np.std(used), len(used)
    headers = {name: fits.Header({"REFMAG": "SDSS_MAG_R"}) for name in ("CAT.PHOTCALIB", "CAT.PHOTCALIB.RAW")}
    return primary, sci, tables, headers
