"""Synthetic final-MEF contents for the QA tests: OTA headers with TAN WCSs and the catalogue tables.

``mef_contents`` builds what :func:`podisteps.qaplots.exposure_qa` reads: a primary header, the ``OTAxy.SCI``
headers of a grid of OTAs around (150, 30) deg, and ``CAT.ODI``, ``WCSCAL.CAT``, ``CAT.PHOTCALIB`` and
``SKYLEVEL`` tables with known sizes (stars spread evenly over the OTAs).
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from podisteps.astrometry import header_wcs

CENTER = (150.0, 30.0)

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


def mef_contents(*, otas=(22, 33), stars_per_ota: int = 40, npix: int = 512, scale: float = 0.9,
                 seed: int = 1, wcs_valid: bool = True, photometry: bool = True):
    """``(primary, sci_headers, tables, table_headers)`` of a synthetic exposure.

    Parameters
    ----------
    otas : sequence of int
        OTA numbers ``xy`` (x, y in 0..6, placed on a grid around the centre).
    stars_per_ota : int
        Clean sources per OTA; every second one is matched in ``WCSCAL.CAT`` and used in ``CAT.PHOTCALIB``.
    npix, scale : int, float
        OTA size, pixels, and pixel scale, arcsec/pixel.
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
                           "FWHM_WORLD": rng.normal(1.0, 0.08, stars_per_ota), "FLAGS": np.zeros(stars_per_ota, int),
                           "MAGERR_AUTO": rng.uniform(0.002, 0.05, stars_per_ota),
                           "THETAWIN_IMAGE": rng.uniform(-90, 90, stars_per_ota),
                           "ELLIPTICITY": rng.uniform(0.0, 0.12, stars_per_ota)}))
    odi = vstack(rows)
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
    headers = {"CAT.PHOTCALIB": fits.Header({"REFMAG": "SDSS_MAG_R"})}
    return primary, sci, tables, headers
