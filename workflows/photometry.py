"""``PhotCalib(obsid)``: the photometric zero point of an exposure (``-photcalib``, spec section 4.7).

Reads the WCS-calibrated catalogue and the reference stars of ``FixWCS`` and the sky levels of the
detrended OTAs (header cards only). Without a valid WCS or with too few stars the product still exists,
with QuickReduce's failure values (-99, -1 counts) and ``PHOTNOTE`` saying why.
"""

from __future__ import annotations

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps import astrometry, photometry

from .astrometry import FixWCS, _table_hdu
from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .detrend import _record
from .paths import checkpoint_path

__all__ = ["PhotCalib"]


def _cards(hdr: fits.Header, keywords: dict) -> None:
    for key, card in keywords.items():
        hdr[key] = card


class PhotCalib(PodiTask):
    """Zero point, colour term, depth and sky brightness of one exposure, with CAT.PHOTREF/CAT.PHOTCALIB."""

    obsid = luigi.Parameter()
    stage = "photcal"

    def requires(self):
        fix = options_param(self.reduction_options.replace(fixwcs=True), ["DetrendOTA", "OTACatalog", "FixWCS"])
        return FixWCS(obsid=self.obsid, options=fix)

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        rec = _record(self.obsid)
        opts = self.reduction_options
        fixwcs = self.input().path
        with fits.open(fixwcs) as hdul:
            valid = bool(hdul[0].header.get("WCSCAL", False))
            odi = Table(hdul["CAT.ODI"].data) if valid else None
            refs = Table(hdul["CAT.WCSREF"].data) if valid else None
            headers = {int(h.name[3:5]): h.header for h in hdul if h.name.endswith(".WCS")}
        airmass = float(_primary_card(rec, "AIRMASS", 1.0))
        primary = fits.PrimaryHDU()
        hdus = [primary]
        if not valid:
            _cards(primary.header, photometry.failed_keywords("no valid WCS", filtername=rec.filter))
        else:
            result = photometry.photcalib(odi, refs, filtername=rec.filter, exptime=rec.exptime, airmass=airmass,
                                          match_radius_arcsec=opts.photmatchradius)
            first = headers[min(headers)]
            wcs = astrometry.header_wcs(first)
            scale = float(np.median(astrometry.pixel_scale(wcs, np.array([100.0]), np.array([100.0]))))
            sky = self._sky_level()
            _cards(primary.header, photometry.photometry_keywords(result, skylevel_adu=sky, pixel_scale_arcsec=scale,
                                                                 gain=float(first.get("GAIN", 1.3))))
            primary.header["SKYLEVEL"] = (sky, "median sky of the photometry OTAs, ADU")
            for ota in headers:
                ext = fits.ImageHDU()
                ext.name = f"OTA{ota:02d}.PHOT"
                _cards(ext.header, photometry.extension_keywords(result, ota))
                hdus.append(ext)
            if result.photref is not None:
                hdus += [_table_hdu(result.photref, "CAT.PHOTREF"), _table_hdu(result.photcalib, "CAT.PHOTCALIB")]
        for key, value, comment in provenance_cards(self, {"fixwcs": fixwcs}):
            primary.header[key] = (value, comment)
        self.output().write_hdulist(fits.HDUList(hdus))

    def _sky_level(self) -> float:
        """Median ``SKY_MEDI`` of the detrended OTAs (the global sky fit arrives with the focal-plane step)."""
        fix = self.requires()
        levels = []
        for catalog in fix.requires()["catalogs"].values():
            hdr = fits.getheader(catalog.requires().output().path, 1)
            if hdr.get("SKY_MEDI", -1) > -1000:
                levels.append(float(hdr["SKY_MEDI"]))
        return float(np.median(levels)) if levels else -99999.99


def _primary_card(rec, key: str, default):
    """A card of the exposure's raw primary header (first OTA file)."""
    from podisteps.rawio import ota_filename, read_primary_header

    from .paths import exposure_dir

    hdr = read_primary_header(exposure_dir(rec.obsid) / ota_filename(rec.obsid, rec.otas[0], fz=rec.fz))
    return hdr.get(key, default)
