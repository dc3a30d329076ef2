"""Photometric calibration tasks (``-photcalib``, ``-fitradialZP``; spec section 4.7).

``PhotCalib(obsid)`` reads the WCS-calibrated catalogue and the reference stars of ``FixWCS`` and the sky
levels of the detrended OTAs (header cards only). Without a valid WCS, without the needed reference band,
without matches or with too few stars the product still exists, with QuickReduce's failure values (-99,
star counts) and ``PHOTNOTE`` saying why (also logged). ``RadialZP(obsid)`` is that product with the
radial zero-point fit. :func:`photometry_task` is the task whose product holds an exposure's photometry
for a set of options (what ``CollectCells`` merges into the final MEF).
"""

from __future__ import annotations

import logging
import math

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps import photometry
from podisteps.rawio import ota_filename, read_primary_header

from .astrometry import FixWCS, _table_hdu
from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .saturation import exposure_record
from .options import ReductionOptions
from .paths import checkpoint_path, exposure_dir

__all__ = ["PhotCalib", "RadialZP", "photometry_task"]

log = logging.getLogger("podiflow.photometry")

#: Option families that shape the photometry products.
FAMILIES = ("DetrendOTA", "FocalPlaneCorrections", "OTACatalog", "FixWCS", "PhotCalib")

#: QuickReduce's centre of the radial fit: the first OTA's CRVAL moved by this much South and East, arcsec.
RADIAL_CENTER_SHIFT_ARCSEC = 240.0


def _cards(hdr: fits.Header, keywords: dict) -> None:
    for key, card in keywords.items():
        hdr[key] = card


def photometry_task(obsid: str, options: ReductionOptions) -> PodiTask:
    """The task whose product holds the photometry of ``obsid`` under ``options``.

    ``RadialZP`` with ``-fitradialZP``, else ``PhotCalib`` (always with its own ``-fitradialZP`` off, so
    that both share one calibration).
    """
    task = RadialZP if options.fitradialZP else PhotCalib
    return task(obsid=obsid, options=options_param(options, FAMILIES))


class PhotCalib(PodiTask):
    """Zero point, colour term, depth and sky brightness of one exposure, with CAT.PHOTREF/CAT.PHOTCALIB."""

    obsid = luigi.Parameter()
    stage = "photcal"

    def requires(self):
        fix = options_param(self.reduction_options.replace(fixwcs=True), FAMILIES[:4])
        return FixWCS(obsid=self.obsid, options=fix)

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        rec = exposure_record(self.obsid)
        fixwcs = self.input().path
        with fits.open(fixwcs) as hdul:
            valid = bool(hdul[0].header.get("WCSCAL", False))
            tables = {name: Table(hdul[name].data) for name in ("CAT.ODI", "CAT.WCSREF")} if valid else {}
            headers = {int(h.name[3:5]): h.header.copy() for h in hdul if h.name.endswith(".WCS")}
        if valid:
            hdus = self._calibrated(rec, tables["CAT.ODI"], tables["CAT.WCSREF"], headers)
        else:
            log.warning("%s: no photometric calibration: no valid WCS", self.obsid)
            hdus = [fits.PrimaryHDU()]
            _cards(hdus[0].header, photometry.failed_keywords("no valid WCS", filtername=rec.filter))
        for key, value, comment in provenance_cards(self, {"fixwcs": fixwcs}):
            hdus[0].header[key] = (value, comment)
        self.output().write_hdulist(fits.HDUList(hdus))

    def _calibrated(self, rec, odi: Table, refs: Table, headers: dict) -> list:
        """The HDUs of an exposure with a valid WCS: primary keywords, ``OTAxy.PHOT`` cards and the tables."""
        result = photometry.photcalib(odi, refs, filtername=rec.filter, exptime=rec.exptime,
                                      airmass=float(_primary_card(rec, "AIRMASS", 1.0)),
                                      match_radius_arcsec=self.reduction_options.photmatchradius)
        if not result.ok:
            log.warning("%s: no photometric zero point: %s", self.obsid, result.reason)
        sky, gain = self._sky_and_gain()
        primary = fits.PrimaryHDU()
        _cards(primary.header, photometry.photometry_keywords(
            result, skylevel_adu=sky, pixel_scale_arcsec=photometry.nominal_pixel_scale(headers.values()),
            gain=gain))
        primary.header["SKYLEVEL"] = (sky, "median sky of the detrended OTAs, ADU")
        hdus = [primary]
        for ota in headers:
            ext = fits.ImageHDU(name=f"OTA{ota:02d}.PHOT")
            for key in ("CRVAL1", "CRVAL2"):
                ext.header[key] = (headers[ota][key], "calibrated WCS reference point, degrees")
            _cards(ext.header, photometry.extension_keywords(result, ota))
            hdus.append(ext)
        if len(result.photref):
            hdus += [_table_hdu(result.photref, "CAT.PHOTREF"), _table_hdu(result.photcalib, "CAT.PHOTCALIB")]
        return hdus

    def _sky_and_gain(self) -> tuple[float, float]:
        """Median ``SKY_MEDI`` (ADU) and median ``GAIN`` (e-/ADU) of the detrended OTAs (header cards).

        The global sky fit arrives with the focal-plane step; -99999.99 without a sky level.
        """
        levels, gains = [], []
        for catalog in self.requires().requires()["catalogs"].values():
            hdr = fits.getheader(catalog.requires().output().path, 1)
            gains.append(float(hdr.get("GAIN", 1.3)))
            if hdr.get("SKY_MEDI", -1) > -1000:
                levels.append(float(hdr["SKY_MEDI"]))
        return (float(np.median(levels)) if levels else -99999.99), float(np.median(gains))


class RadialZP(PodiTask):
    """``-fitradialZP``: the ``PhotCalib`` product with the radial zero-point fit (``RADZP*``; not applied)."""

    obsid = luigi.Parameter()
    stage = "radialzp"

    def requires(self):
        opts = self.reduction_options.replace(fitradialZP=False)
        return PhotCalib(obsid=self.obsid, options=options_param(opts, FAMILIES))

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        with fits.open(self.input().path) as hdul:
            hdus = fits.HDUList([h.copy() for h in hdul])
        primary = hdus[0].header
        if "CAT.PHOTCALIB" in hdus and primary["PHOTZP"] != photometry.UNDEFINED:
            calib = Table(hdus["CAT.PHOTCALIB"].data)
            first = next(h.header for h in hdus if h.name.endswith(".PHOT"))
            _cards(primary, photometry.fit_radial_zp(calib, *_radial_center(first["CRVAL1"], first["CRVAL2"])))
        else:
            log.warning("%s: no radial zero-point fit: %s", self.obsid, primary.get("PHOTNOTE", "no zero point"))
        for key, value, comment in provenance_cards(self, {"photcal": self.input().path}):
            primary[key] = (value, comment)
        self.output().write_hdulist(hdus)


def _radial_center(ra: float, dec: float) -> tuple[float, float]:
    """QuickReduce's radial-fit centre: ``(ra, dec)`` (degrees) moved 240" East and 240" South."""
    shift = RADIAL_CENTER_SHIFT_ARCSEC / 3600.0
    return ra + shift / math.cos(math.radians(dec)), dec - shift


def _primary_card(rec, key: str, default):
    """A card of the exposure's raw primary header (first OTA file)."""
    hdr = read_primary_header(exposure_dir(rec.obsid) / ota_filename(rec.obsid, rec.otas[0], fz=rec.fz))
    return hdr.get(key, default)
