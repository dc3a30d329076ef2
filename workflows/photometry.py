"""Photometric calibration tasks (``-photcalib``, ``-photcatalog``, ``-fitradialZP``, ``-autophotflat``;
docs/photometry.md).

``PhotCalib(obsid)`` reads the WCS-calibrated catalogue of ``FixWCS``, the reference stars and the sky levels
of the detrended OTAs (header cards only). The reference stars are those ``FixWCS`` used, unless
``-photcatalog`` (or ``-wcscatalog``) is not 'auto': then ``PhotReference(obsid)`` cuts them from the
``-photcatalog`` catalogue (a file, a sharded folder with its index, or 'auto' = ``[podiflow] refcat``).
Without a valid WCS, without the needed reference band, without matches or with too few stars the product
still exists, with QuickReduce's failure values (-99, star counts) and ``PHOTNOTE`` saying why (also
logged). ``RadialZP(obsid)`` is that product with the radial zero-point fit.

``-autophotflat`` (step 11): ``PhotFlat(obsid)`` builds the photometric flat from the zero-point residuals of
the first calibration (``PhotCalib`` with the option off: QuickReduce's ``init`` calibration) and writes it in
QuickReduce's ``photflat_<FILTER>_bin<B>.fits`` format (:func:`podisteps.photometry.photflat.photflat_hdulist`), so that
it can be given to ``-photflat`` later. ``AutoPhotCalib(obsid)`` calibrates again with the catalogue
magnitudes corrected by that flat; its product adds ``CAT.PHOTCALIB.RAW`` (the first calibration's table),
the corrected ``CAT.ODI``, ``PHZPINIT``/``PHSDINIT`` (zero point and scatter of the first calibration) and
``PHFSTARS`` (stars the flat was built from, 0 when it could not be built: then it is 1 everywhere).
``CollectCells`` divides the final pixels by the flat, ``(data - SKYLEVEL) / pf + SKYLEVEL``.

:func:`photometry_task` is the task whose product holds an exposure's photometry for a set of options (what
``CollectCells`` merges into the final MEF)::

    FixWCS [+ PhotReference] -> PhotCalib [-> PhotFlat -> AutoPhotCalib] [-> RadialZP]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps import photometry
from podisteps.io.rawio import ota_filename, read_primary_header
from podisteps.photometry import photflat

from .astrometry import FixWCS, ReferenceCatalog, table_hdu
from .base import FitsTarget, PodiTask, provenance_cards
from .options import OPTIONS_BY_NAME, ReductionOptions
from .paths import checkpoint_path, exposure_dir
from .saturation import exposure_record

__all__ = ["PhotCalib", "PhotReference", "PhotFlat", "AutoPhotCalib", "RadialZP", "photometry_task",
           "calibration_task", "PhotflatFile"]

log = logging.getLogger("podiflow.photometry")

#: Option families that shape the photometry products.
FAMILIES = (*FixWCS.option_families, "PhotCalib")

#: QuickReduce's centre of the radial fit: the first OTA's CRVAL moved by this much South and East, arcsec.
RADIAL_CENTER_SHIFT_ARCSEC = 240.0

#: QuickReduce's photometric-flat grid (``create_photometric_flatfield``): nodes per OTA axis, smoothing radius.
PHOTFLAT_NODES, PHOTFLAT_SMOOTHING_ARCSEC = 9, 120.0


def _cards(hdr: fits.Header, keywords: dict) -> None:
    for key, card in keywords.items():
        hdr[key] = card


def calibration_task(obsid: str, options: ReductionOptions) -> PodiTask:
    """The zero-point task of ``obsid`` (never ``RadialZP``): ``AutoPhotCalib`` with ``-autophotflat``, else
    ``PhotCalib``; both with ``-fitradialZP`` off, so that ``RadialZP`` shares their calibration."""
    opts = options.replace(fitradialZP=False)
    task = AutoPhotCalib if opts.autophotflat else PhotCalib
    return task.with_options(opts, obsid=obsid)


def photometry_task(obsid: str, options: ReductionOptions) -> PodiTask:
    """The task whose product holds the photometry of ``obsid`` under ``options``: ``RadialZP`` with
    ``-fitradialZP``, else :func:`calibration_task`."""
    if options.fitradialZP:
        return RadialZP.with_options(options, obsid=obsid)
    return calibration_task(obsid, options)


def _own_references(options: ReductionOptions) -> bool:
    """Whether the photometry needs its own reference cut-out (``-photcatalog`` or ``-wcscatalog`` not 'auto');
    else it uses the stars of FixWCS, which come from the same ``[podiflow] refcat``."""
    return not all(v in (None, "auto") for v in (options.photcatalog, options.wcscatalog))


class PhotReference(ReferenceCatalog):
    """Reference stars for the photometry (``-photcatalog``; 'auto' = ``[podiflow] refcat``), table ``CAT.WCSREF``."""

    stage = "photref"

    def source(self) -> str:
        """The catalogue: a file, a sharded folder, or an online provider name."""
        value = self.reduction_options.photcatalog
        return super().source() if value in (None, "auto") else value


class PhotCalib(PodiTask):
    """Zero point, colour term, depth and sky brightness of one exposure, with CAT.PHOTREF/CAT.PHOTCALIB."""

    obsid = luigi.Parameter()
    stage = "photcal"
    option_families = FAMILIES

    def requires(self):
        opts = self.reduction_options
        req = {"fixwcs": FixWCS.with_options(opts.replace(fixwcs=True), obsid=self.obsid)}
        if _own_references(opts):
            option = OPTIONS_BY_NAME["photcatalog"]
            req["refcat"] = PhotReference(obsid=self.obsid, options={"photcatalog": option.format(opts.photcatalog)})
        return req

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def provenance_inputs(self) -> dict:
        """``role -> path`` of the products read (CollectCells lists them in ASSOCIATIONS)."""
        inputs = self.input()
        if "refcat" in inputs:  # the catalogue from FixWCS, the reference stars from PhotReference
            return {"catalogs": inputs["fixwcs"].path, "refcat": inputs["refcat"].path}
        return {"fixwcs": inputs["fixwcs"].path}

    def run(self):
        rec = exposure_record(self.obsid)
        inputs = self.input()
        with fits.open(inputs["fixwcs"].path) as hdul:
            valid = bool(hdul[0].header.get("WCSCAL", False))
            tables = {name: Table(hdul[name].data) for name in ("CAT.ODI", "CAT.WCSREF")} if valid else {}
            headers = {int(h.name[3:5]): h.header.copy() for h in hdul if h.name.endswith(".WCS")}
        if valid and "refcat" in inputs:
            with fits.open(inputs["refcat"].path) as hdul:
                tables["CAT.WCSREF"] = Table(hdul["CAT.WCSREF"].data)
        if valid:
            hdus = self._calibrated(rec, tables["CAT.ODI"], tables["CAT.WCSREF"], headers)
        else:
            log.warning("%s: no photometric calibration: no valid WCS", self.obsid)
            hdus = [fits.PrimaryHDU()]
            _cards(hdus[0].header, photometry.failed_keywords("no valid WCS", filtername=rec.filter))
        self.add_provenance(hdus[0].header, self.provenance_inputs())
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
            hdus += [table_hdu(result.photref, "CAT.PHOTREF"), table_hdu(result.photcalib, "CAT.PHOTCALIB")]
        return hdus

    def _sky_and_gain(self) -> tuple[float, float]:
        """Median ``SKY_MEDI`` (ADU) and median ``GAIN`` (e-/ADU) of the detrended OTAs (header cards).

        The global sky fit arrives with the focal-plane step; -99999.99 without a sky level.
        """
        levels, gains = [], []
        for catalog in self.requires()["fixwcs"].requires()["catalogs"].values():
            hdr = fits.getheader(catalog.source().output().path, 1)
            gains.append(float(hdr.get("GAIN", 1.3)))
            if hdr.get("SKY_MEDI", -1) > -1000:
                levels.append(float(hdr["SKY_MEDI"]))
        return (float(np.median(levels)) if levels else -99999.99), float(np.median(gains))


def _ota_frames(fixwcs: FixWCS) -> dict[int, fits.Header]:
    """OTA -> calibrated WCS of the FixWCS product with the frame size ``NAXIS1/2`` (from the catalogue headers)."""
    frames = {}
    with fits.open(fixwcs.output().path) as hdul:
        for ota, catalog in fixwcs.requires()["catalogs"].items():
            hdr = hdul[f"OTA{ota:02d}.WCS"].header.copy()
            size = fits.getheader(catalog.output()["catalog"].path, "CAT.ODI")
            hdr["NAXIS"], hdr["NAXIS1"], hdr["NAXIS2"] = 2, int(size["IMWIDTH"]), int(size["IMHEIGHT"])
            frames[ota] = hdr
    return frames


class PhotflatFile(Mapping):
    """OTA -> map of a photometric-flat file, each read from disk when asked for (one map in memory at a time).

    Parameters
    ----------
    path : str
        A file in QuickReduce's photflat format (:func:`podisteps.photometry.photflat.photflat_hdulist`).
    """

    def __init__(self, path: str):
        self.path = path
        with fits.open(path) as hdul:
            self._otas = [int(h.name[3:5]) for h in hdul[1:] if h.name.endswith(".SCI")]

    def __getitem__(self, ota: int) -> np.ndarray:
        if ota not in self._otas:
            raise KeyError(ota)
        return fits.getdata(self.path, f"OTA{ota:02d}.SCI")

    def __iter__(self):
        return iter(self._otas)

    def __len__(self) -> int:
        return len(self._otas)


class PhotFlat(PodiTask):
    """``-autophotflat``: the photometric flat of one exposure from the zero-point residuals of its first
    calibration, in QuickReduce's ``photflat_<FILTER>_bin<B>.fits`` format (usable with ``-photflat``).

    A 9 x 9 node grid per OTA (spacing 1/8 of the OTA), 120" smoothing radius (docs/photometry.md, 'Photometric flat
    from the zero points'). Without a zero point it is 1 everywhere, with ``PHFSTARS = 0`` and ``PHFNOTE`` saying why.
    """

    obsid = luigi.Parameter()
    stage = "photflat"
    option_families = FAMILIES
    memory_gb = 2  # full-size maps: float32 64 MiB per OTA, all held until written

    def requires(self):
        init = PhotCalib(obsid=self.obsid, options=self.options)
        return {"photcal": init, "fixwcs": init.requires()["fixwcs"]}

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        rec = exposure_record(self.obsid)
        frames = _ota_frames(self.requires()["fixwcs"])
        with fits.open(self.input()["photcal"].path) as hdul:
            calib = Table(hdul["CAT.PHOTCALIB"].data) if hdul[0].header["PHOTZP"] != photometry.UNDEFINED else None
            note = str(hdul[0].header.get("PHOTNOTE", "no zero point"))
        step = int(next(iter(frames.values()))["NAXIS1"]) / (PHOTFLAT_NODES - 1)
        self.progress(20, f"{self.obsid}: photometric flat from the zero-point residuals")
        maps = {} if calib is None else photflat.photometric_flat(
            calib, frames, nodes=PHOTFLAT_NODES, step_px=step, smoothing_arcsec=PHOTFLAT_SMOOTHING_ARCSEC)
        n_stars = int(np.sum(photflat.flat_stars(calib))) if maps else 0
        if not maps:
            log.warning("%s: no photometric flat (1 everywhere): %s", self.obsid, note)
            maps = {ota: np.ones((h["NAXIS2"], h["NAXIS1"]), np.float32) for ota, h in frames.items()}
        cards = [("PHFSTARS", n_stars, "stars the photometric flat is built from"),
                 ("PHFNODES", PHOTFLAT_NODES, "grid nodes per OTA axis"),
                 ("PHFSTEP", step, "node spacing, px"),
                 ("PHFSMOOT", PHOTFLAT_SMOOTHING_ARCSEC, "smoothing radius, arcsec"),
                 ("PHFQUANT", photflat.QUANTIZE_STEP, "absolute quantisation step of the stored maps")]
        if not n_stars:
            cards.append(("PHFNOTE", f"no zero point: {note}"[:68], "why the flat is 1 everywhere"))
        inputs = {"photcal": self.input()["photcal"].path, "fixwcs": self.input()["fixwcs"].path}
        cards += provenance_cards(self, inputs)
        self.output().write_hdulist(photflat.photflat_hdulist(maps, filtername=rec.filter, binning=rec.binning,
                                                              cards=cards))


class AutoPhotCalib(PhotCalib):
    """``-autophotflat``: the zero point again, from the catalogue corrected by the exposure's ``PhotFlat``, with
    the first calibration's table as ``CAT.PHOTCALIB.RAW`` and the corrected ``CAT.ODI``."""

    stage = "autophotcal"

    def requires(self):
        init = self.reduction_options.replace(autophotflat=False, fitradialZP=False)  # QuickReduce's ``init``
        flat = PhotFlat.with_options(init, obsid=self.obsid)
        return {**super().requires(), "photflat": flat, "init": flat.requires()["photcal"]}

    def provenance_inputs(self) -> dict:
        inputs = self.input()
        return {**super().provenance_inputs(), "photflat": inputs["photflat"].path,
                "photcalib-init": inputs["init"].path}

    def _calibrated(self, rec, odi: Table, refs: Table, headers: dict) -> list:
        inputs = self.input()
        corrected = photflat.correct_magnitudes(odi, PhotflatFile(inputs["photflat"].path))
        hdus = super()._calibrated(rec, corrected, refs, headers)
        with fits.open(inputs["init"].path) as init:
            first = init[0].header
            raw = [init["CAT.PHOTCALIB"].copy()] if "CAT.PHOTCALIB" in init else []
        for hdu in raw:
            hdu.name = "CAT.PHOTCALIB.RAW"
        ph = hdus[0].header
        ph["PHZPINIT"] = (first["PHOTZP"], "PHOTZP of the first calibration (init), mag")
        ph["PHSDINIT"] = (first["PHOTZPSD"], "PHOTZPSD of the first calibration (init), mag")
        ph["PHFSTARS"] = (fits.getval(inputs["photflat"].path, "PHFSTARS"), "stars the photometric flat is built from")
        at = next((i for i, h in enumerate(hdus) if h.name == "CAT.PHOTREF"), len(hdus))
        return [*hdus[:at], *raw, *hdus[at:], table_hdu(corrected, "CAT.ODI")]


class RadialZP(PodiTask):
    """``-fitradialZP``: the product of :func:`calibration_task` with the radial zero-point fit (``RADZP*``;
    not applied)."""

    obsid = luigi.Parameter()
    stage = "radialzp"
    option_families = FAMILIES

    def requires(self):
        return calibration_task(self.obsid, self.reduction_options)

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
        self.add_provenance(primary, {"photcal": self.input().path})
        self.output().write_hdulist(hdus)


def _radial_center(ra: float, dec: float) -> tuple[float, float]:
    """QuickReduce's radial-fit centre: ``(ra, dec)`` (degrees) moved 240" East and 240" South."""
    shift = RADIAL_CENTER_SHIFT_ARCSEC / 3600.0
    return ra + shift / math.cos(math.radians(dec)), dec - shift


def _primary_card(rec, key: str, default):
    """A card of the exposure's raw primary header (first OTA file)."""
    hdr = read_primary_header(exposure_dir(rec.obsid) / ota_filename(rec.obsid, rec.otas[0], fz=rec.fz))
    return hdr.get(key, default)
