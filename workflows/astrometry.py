"""Source catalogues and astrometric calibration: ``OTACatalog``, ``ReferenceCatalog``, ``FixWCS``.

``OTACatalog(obsid, ota)`` runs sep on the OTA (the CorrectedOTA with a focal-plane correction; without one it
detrends the OTA itself and hands the image to sep in memory: one task per OTA from raw to catalogue) and keeps
the OTA's WCS cards in the table header, so ``FixWCS`` never opens an image.
``ReferenceCatalog(obsid)`` cuts the reference stars around the pointing (radius 0.8 deg + the largest
pointing error searched) and moves them to the exposure epoch. ``FixWCS(obsid)`` solves the pointing and
rotation over the focal plane, then refines each OTA (docs/astrometry.md). With
``-nonsidereal=dra,ddec,ref`` it then moves every OTA's ``CRVAL`` by the target's motion since the
reference (an MJD, or a FITS file's ``MJD-OBS``) to the exposure's ``MJD-OBS`` (docs/astrometry.md, 'Non-sidereal
targets'), solved or not; the catalogue tables stay in the frame of the stars. It states what the reference catalogue
gave (stars in the field, matched: ``ASTRMCAT``, ``WCSNREF``, ``WCSNMTCH``, the log, and one console warning
without a solution; docs/integrity.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from podisteps import astrometry
from podisteps.catalog import detect, refcat
from podisteps.detrend.wcs import WCS_CARD_RE
from podisteps.errors import logger
from podisteps.io.atomic import TornFileError
from podisteps.io.planes import plain_pixels, stored_integers
from podisteps.io.plaintable import read_table

from .base import CheckpointTarget, FitsTarget, PodiTask
from .detrend import DetrendOTA
from .focalplane import focal_correction, image_task
from .paths import checkpoint_path
from .saturation import exposure_record
from .settings import site

__all__ = ["OTACatalog", "ReferenceCatalog", "FixWCS", "SEARCH_RADIUS_DEG", "table_hdu"]

#: Reference cut-out radius around the pointing: the field (0.8 deg) plus the largest pointing error searched.
SEARCH_RADIUS_DEG = 0.8 + 20.0 / 60.0

#: Source selection for the solution (docs/astrometry.md, 'Source selection').
MIN_FWHM_ARCSEC, MAX_MAGERR_4 = 0.3, 0.3

# The FWHM table (0.08 s) is made here, in the scheduling process, so that the worker processes Luigi forks
# for each OTACatalog inherit it instead of each making it again.
detect.half_light_table()


def table_hdu(table: Table, name: str, header_cards=()) -> fits.BinTableHDU:
    """A FITS table extension of a catalogue.

    Parameters
    ----------
    table : astropy.table.Table
        The rows (any length, zero included).
    name : str
        Extension name (``EXTNAME``), e.g. ``"CAT.ODI"``.
    header_cards : iterable of tuple
        ``(keyword, value, comment)`` cards added to the extension header.

    Returns
    -------
    astropy.io.fits.BinTableHDU
    """
    hdu = fits.table_to_hdu(table)
    hdu.name = name
    for key, value, comment in header_cards:
        hdu.header[key] = (value, comment)
    return hdu


class OTACatalog(PodiTask):
    """The sep catalogue of one OTA with QuickReduce's ``CAT.ODI`` columns (canned WCS).

    Without a focal-plane correction (:attr:`fused`) this task also detrends the OTA, in the same process
    (docs/architecture.md, 'One task from raw to catalogue'): it requires what DetrendOTA requires, writes
    DetrendOTA's checkpoint (same path, bytes and cards: :meth:`workflows.detrend.DetrendOTA.write_detrended` of
    :meth:`source`, a DetrendOTA that is never scheduled) and hands the image to sep in memory; a whole checkpoint
    already on disk is read instead. Its output is then ``{"catalog", "detrended"}``. With a correction it
    requires CorrectedOTA and reads its product; its output is ``{"catalog"}``.
    """

    obsid = luigi.Parameter()
    ota = luigi.IntParameter()
    stage = "catalog"
    memory_gb = 1  # an OTA image, detrended here without a focal-plane correction (as DetrendOTA's)

    #: The family of the step that runs, for failure reports (:mod:`workflows.failures`): ``"DetrendOTA"`` while
    #: this task detrends, else None (the catalogue).
    step_family = None

    @property
    def fused(self) -> bool:
        """Whether this task detrends its OTA itself (no focal-plane correction)."""
        return not focal_correction(self.reduction_options)

    def source(self) -> PodiTask:
        """The task whose product is catalogued: DetrendOTA (run by this task, :attr:`fused`) or CorrectedOTA."""
        opts = self.reduction_options
        if self.fused:
            return DetrendOTA.with_options(opts, obsid=self.obsid, ota=self.ota)
        return image_task(self.obsid, self.ota, opts)

    def requires(self):
        return self.source().requires() if self.fused else self.source()

    def reads(self) -> list:
        return [self.source()]

    def identity_for(self, reader: PodiTask) -> str:
        """The catalogue's identity for FixWCS; the detrended image's for the tasks that read it (:func:`image_task`)."""
        return self.source().identity if self.fused and not isinstance(reader, FixWCS) else self.identity

    def output(self):
        catalog = CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))
        return {"catalog": catalog, "detrended": self.source().output()} if self.fused else {"catalog": catalog}

    def run(self):
        self.step_family = None
        if not self.fused:
            self._catalogue_file(self.input().path)
        elif _whole(self.source().output()):
            self._catalogue_file(self.source().output().path)
        else:
            self.step_family = "DetrendOTA"
            image = self.source().write_detrended(progress=lambda pct, msg: self.progress(0.8 * pct, msg))
            self.step_family = None
            self._catalogue(image.sci, image.header, image.mask, self.source().output().path, scratch=True)

    def _catalogue_file(self, path: str) -> None:
        """Catalogue the OTA checkpoint at ``path`` (planes as stored: :mod:`podisteps.io.planes`)."""
        with fits.open(path, do_not_scale_image_data=True) as hdul:
            self._catalogue(plain_pixels(hdul[1], path), hdul[1].header, stored_integers(hdul[2], path), path)

    def _catalogue(self, data: np.ndarray, header: fits.Header, mask: np.ndarray, path: str, *,
                   scratch: bool = False) -> None:
        """Write the catalogue of one OTA image.

        Parameters
        ----------
        data : numpy.ndarray
            The ``OTAxy.SCI`` pixels, ADU, float32 of either byte order (sep gets its own native copy unless
            ``scratch``), shape ``(ny, nx)``.
        header : astropy.io.fits.Header
            Its header (WCS, ``GAIN``).
        mask : numpy.ndarray
            The uint16 ``OTAxy.MASK`` bits, shape ``(ny, nx)``.
        path : str
            The checkpoint the image is (provenance role ``detrended``).
        scratch : bool, optional
            Whether ``data`` is this task's own copy, already written, that the catalogue may overwrite
            (:func:`podisteps.catalog.detect.source_catalog`'s ``overwrite``).
        """
        self.progress(85, f"{self.obsid} OTA{self.ota:02d}: source catalogue")
        ny, nx = data.shape
        scale = max(1, 4096 // ny)
        catalog = detect.source_catalog(data, header, ota=self.ota, mask=mask, back_size=max(8, 64 // scale),
                                        gain=float(header.get("GAIN", 1.3)), overwrite=scratch)
        wcs_cards = [(c.keyword, c.value, c.comment) for c in header.cards if WCS_CARD_RE.match(c.keyword)
                     or c.keyword in ("CRVAL1", "CRVAL2")]
        hdu = table_hdu(catalog, "CAT.ODI", wcs_cards + [("OTA", self.ota, "OTA position"),
                                                          ("IMWIDTH", nx, "image width, px"),
                                                          ("IMHEIGHT", ny, "image height, px")])
        primary = fits.PrimaryHDU()
        self.add_provenance(primary.header, {"detrended": path})
        self.output()["catalog"].write_hdulist(fits.HDUList([primary, hdu]))


def _whole(target: CheckpointTarget) -> bool:
    """Whether a checkpoint is on disk and whole (one cut short is removed, with a warning, and made again)."""
    if not target.exists():
        return False
    try:
        target.check_whole()
    except TornFileError as exc:
        logger.warning("%s", exc)
        return False
    return True


class ReferenceCatalog(PodiTask):
    """Reference stars around an exposure, at its epoch (``-wcscatalog``; default ``[podiflow] refcat``)."""

    obsid = luigi.Parameter()
    stage = "refcat"
    option_families = ("FixWCS",)  # the options of the solution it serves (-wcscatalog)

    def source(self) -> str:
        """The catalogue: a file, a sharded folder, or an online provider name."""
        value = self.reduction_options.wcscatalog
        source = site().refcat if value in (None, "auto") else value
        if not source:
            raise refcat.NetworkDisabledError(
                "no reference catalogue: set [podiflow] refcat (a file or SkyTable folder) or -wcscatalog"
            )
        return source

    def external_inputs(self):
        src = Path(self.source())
        return [src] if src.is_file() else ([src / "SkyTable.fits"] if (src / "SkyTable.fits").is_file() else [])

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        rec = exposure_record(self.obsid)
        epoch = Time(rec.mjd, format="mjd").jyear
        table = refcat.load_reference(self.source(), rec.ra, rec.dec, SEARCH_RADIUS_DEG, epoch=epoch,
                                      allow_network=site().allow_network)
        cards = [("REFCAT", Path(self.source()).name, "reference catalogue"), ("EPOCH", epoch, "yr"),
                 ("RADIUS", SEARCH_RADIUS_DEG, "cut-out radius, deg"), ("NREF", len(table), "stars"),
                 ("NCATROWS", table.meta.get("NTOTAL", -1), "stars in the whole catalogue file (-1: unknown)")]
        primary = fits.PrimaryHDU()
        self.add_provenance(primary.header, {"refcat": self.external_inputs()})
        self.output().write_hdulist(fits.HDUList([primary, table_hdu(table, "CAT.WCSREF", cards)]))


def _wcs_header(header: fits.Header) -> fits.Header:
    """The WCS cards of a header (``CRVAL`` included), nothing else."""
    return fits.Header([c for c in header.cards if WCS_CARD_RE.match(c.keyword) or c.keyword in ("CRVAL1", "CRVAL2")])


def _nonsidereal_parts(value: str) -> tuple[float, float, str]:
    """``-nonsidereal=dra,ddec,ref`` -> rates (arcsec/hour) and the reference text."""
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) != 3:
        raise ValueError(f"-nonsidereal needs 'dra,ddec,ref', got {value!r}")
    return float(parts[0]), float(parts[1]), parts[2]


def _reference_file(ref: str) -> str | None:
    """The reference of ``-nonsidereal`` as a file name, None if it is an MJD."""
    try:
        float(ref)
    except ValueError:
        return ref
    return None


def nonsidereal_correction(value: str | None, mjd: float, dec: float) -> dict | None:
    """The ``-nonsidereal`` offsets (:func:`podisteps.astrometry.nonsidereal_offsets`); None without the option.

    Parameters
    ----------
    value : str or None
        The option ``dra,ddec,ref``: rates ``dRA cos(Dec)`` and ``dDec`` in arcsec/hour and the reference,
        an MJD or a FITS file whose primary ``MJD-OBS`` is used.
    mjd : float
        The exposure's ``MJD-OBS``.
    dec : float
        Declination of the optical axis, degrees.
    """
    if not value:
        return None
    dra, ddec, ref = _nonsidereal_parts(value)
    ref_file = _reference_file(ref)
    ref_mjd = float(fits.getheader(ref_file)["MJD-OBS"]) if ref_file else float(ref)
    return astrometry.nonsidereal_offsets(dra, ddec, ref_mjd, mjd, dec)


def _apply_nonsidereal(headers: dict, primary: fits.Header, offsets: dict) -> dict:
    """Move every OTA's ``CRVAL`` by the non-sidereal offsets and write the keywords of docs/astrometry.md,
    'Non-sidereal targets'."""
    out = {}
    for ota, h in headers.items():
        h = h.copy()
        h["CRVAL1"] = (float(h["CRVAL1"]) + offsets["dcrval1"]) % 360.0
        h["CRVAL2"] = float(h["CRVAL2"]) + offsets["dcrval2"]
        h["NSIDDRA"] = (offsets["NSIDDRA"], "non-sidereal CRVAL1 offset, deg")
        h["NSIDDDEC"] = (offsets["NSIDDDEC"], "non-sidereal CRVAL2 offset, deg")
        out[ota] = h
    primary["NSIDPMRA"] = (offsets["NSIDPMRA"], "non-sidereal rate dRA cos(Dec), arcsec/h")
    primary["NSIDPMDE"] = (offsets["NSIDPMDE"], "non-sidereal rate dDec, arcsec/h")
    primary["NSIDBASE"] = (offsets["NSIDBASE"], "non-sidereal reference MJD")
    primary["NSIDDMJD"] = (offsets["NSIDDMJD"], "MJD-OBS minus the reference MJD, d")
    primary["NSID_DHR"] = (offsets["NSID_DHR"], "MJD-OBS minus the reference MJD, h")
    return out


def _selected_sources(cat: Table) -> tuple:
    """``(x, y, mag, centroid error)`` of the sources usable for the solution: clean with a complete 4"
    aperture (:func:`podisteps.catalog.detect.clean_rows`), resolved, 4" error < 0.3 mag."""
    good = (detect.clean_rows(cat, aperture="D40") & (cat["FWHM_WORLD"] > MIN_FWHM_ARCSEC) & (cat["MAGERR_D40"] < MAX_MAGERR_4)
            & np.isfinite(cat["MAG_AUTO"]))
    return (np.asarray(cat["X"][good], float), np.asarray(cat["Y"][good], float),
            np.asarray(cat["MAG_AUTO"][good], float),
            astrometry.centroid_sigma(cat["FWHM_WORLD"][good], cat["MAGERR_AUTO"][good]))


class FixWCS(PodiTask):
    """Astrometric calibration of an exposure: solved WCS per OTA, quality keywords and tables."""

    obsid = luigi.Parameter()
    stage = "fixwcs"
    option_families = ("DetrendOTA", "FocalPlaneCorrections", "OTACatalog", "FixWCS")  # and of its catalogues

    def requires(self):
        rec = exposure_record(self.obsid)
        return {
            "catalogs": {ota: OTACatalog(obsid=self.obsid, ota=ota, options=self.options) for ota in rec.otas},
            "refcat": ReferenceCatalog.with_options(self.reduction_options, obsid=self.obsid),
        }

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        inputs = self.input()
        headers, catalogs, sources = {}, {}, {}
        sized = {}
        for ota, target in inputs["catalogs"].items():
            path = target["catalog"].path
            with fits.open(path) as hdul:
                hdr = hdul["CAT.ODI"].header
                headers[ota] = _wcs_header(hdr)
                catalogs[ota] = read_table(hdul["CAT.ODI"], path)
            sized[ota] = headers[ota].copy()  # the OTA's extent places the refinement's control points
            sized[ota]["NAXIS1"], sized[ota]["NAXIS2"] = int(hdr["IMWIDTH"]), int(hdr["IMHEIGHT"])
            sources[ota] = _selected_sources(catalogs[ota])
        with fits.open(inputs["refcat"].path) as hdul:
            refs = read_table(hdul["CAT.WCSREF"], inputs["refcat"].path)
            n_total = int(hdul["CAT.WCSREF"].header.get("NCATROWS", -1))
        self.progress(30, f"{self.obsid}: solving the WCS with {sum(len(s[0]) for s in sources.values())} "
                          f"sources and {len(refs)} reference stars")
        solution = astrometry.solve_focal_plane(sized, sources, (np.asarray(refs["ra"]), np.asarray(refs["dec"])),
                                                mode="otashear", ref_sigma_arcsec=np.hypot(
                                                    refs["ra_error"], refs["dec_error"]) / math.sqrt(2.0) / 1000.0)
        solution.headers = {ota: _wcs_header(h) for ota, h in solution.headers.items()}
        outcome = self._reference_outcome(solution, sized, refs, n_total)
        hdul = self._products(solution, headers, catalogs, refs)
        hdul[0].header.update(outcome.cards())
        self.output().write_hdulist(hdul)

    def _reference_outcome(self, solution, sized: dict, refs: Table, n_total: int) -> refcat.ReferenceOutcome:
        """What the reference catalogue gave this exposure, logged; a warning (one console line) when no
        solution was accepted, saying whether the catalogue had any star in the field."""
        first = sized[next(iter(sized))]
        ra, dec = np.asarray(refs["ra"], float), np.asarray(refs["dec"], float)
        outcome = refcat.ReferenceOutcome(
            catalogue=self.requires()["refcat"].source(), center=(float(first["CRVAL1"]), float(first["CRVAL2"])),
            n_cutout=len(refs), n_field=refcat.stars_in_field(ra, dec, sized),
            n_matched=sum(len(pair[0]) for pair in solution.matches.values()) if solution.valid else 0,
            solved=bool(solution.valid), n_total=n_total if n_total >= 0 else None)
        logger.info("%s: %s", self.obsid, outcome.summary())
        problem = outcome.problem()
        if problem:
            logger.warning("%s: %s", self.obsid, problem)
        return outcome

    def external_inputs(self):
        value = self.reduction_options.nonsidereal
        ref_file = _reference_file(_nonsidereal_parts(value)[2]) if value else None
        return [Path(ref_file)] if ref_file else []

    def _products(self, solution, headers, catalogs, refs) -> fits.HDUList:
        primary = fits.PrimaryHDU()
        hdr = primary.header
        p = solution.pointing
        hdr["WCSCAL"] = (bool(solution.valid), "valid astrometric solution")
        hdr["WCSFIXED"] = (bool(solution.valid), "WCS changed by fixwcs")
        hdr["WCS_MODE"] = ("otashear", "fixwcs mode")
        hdr["WCS1_DA"] = (float(p.angle), "rotation found, deg")
        hdr["WCS1_DRA"] = (float(p.shift[0]), "shift found, dRA cos(Dec), arcsec")
        hdr["WCS1_DDE"] = (float(p.shift[1]), "shift found, dDec, arcsec")
        hdr["WCS1_N"] = (int(p.n_matches), "matches of the search")
        hdr["WCS_QUAL"] = (float(p.contrast) if math.isfinite(p.contrast) else -1.0, "contrast of the solution")
        hdr["WCSMXPOS"] = (float(p.radius), "search radius used, arcmin")
        hdr["WCSQUALS"] = (str([round(q, 1) for q in p.qualities])[:68], "contrast per radius")
        hdr["WCSSIGNF"] = (float(p.significance), "-log10 chance probability of the matches")
        for key, value in solution.quality.items():
            hdr[key] = float(value) if math.isfinite(value) else -1.0
        hdr["WCSXRMS"], hdr["WCSYRMS"] = hdr.get("WCS_RMSA", -1.0), hdr.get("WCS_RMSD", -1.0)
        final = solution.headers if solution.valid else headers
        first = final[next(iter(final))]
        offsets = nonsidereal_correction(self.reduction_options.nonsidereal, exposure_record(self.obsid).mjd,
                                         float(first["CRVAL2"]))
        if offsets is not None:
            final = _apply_nonsidereal(final, hdr, offsets)
        inputs = {"catalogs": [t["catalog"].path for t in self.input()["catalogs"].values()],
                  "refcat": self.input()["refcat"].path, "nonsidereal-reference": self.external_inputs()}
        self.add_provenance(hdr, inputs)
        hdus = [primary]
        for ota, h in final.items():
            ext = fits.ImageHDU(header=h.copy())
            ext.name = f"OTA{ota:02d}.WCS"
            for key, value in solution.quality_by_ota.get(ota, {}).items():
                ext.header[key] = float(value) if math.isfinite(value) else -1.0
            hdus.append(ext)
        if solution.valid:
            hdus += self._tables(solution, catalogs, refs)
        return fits.HDUList(hdus)

    @staticmethod
    def _tables(solution, catalogs, refs) -> list:
        pairs, odi = [], Table()
        if catalogs:  # stacked once; RA, DEC of every row with its OTA's solved WCS
            odi = vstack(list(catalogs.values()))
            radec = [astrometry.odi2wcs(solution.headers, ota, np.asarray(cat["X"], float), np.asarray(cat["Y"], float))
                     for ota, cat in catalogs.items()]
            odi["RA"] = np.concatenate([ra for ra, _ in radec])
            odi["DEC"] = np.concatenate([dec for _, dec in radec])
        for ota, (i1, i2) in solution.matches.items():
            ra, dec = solution.radec[ota]
            pairs.append(Table({"ODI_RA": ra[i1], "ODI_DEC": dec[i1], "REF_RA": np.asarray(refs["ra"])[i2],
                                "REF_DEC": np.asarray(refs["dec"])[i2], "OTA": np.full(len(i1), ota, np.int16)}))
        cal = vstack(pairs) if pairs else Table()
        return [table_hdu(refs, "CAT.WCSREF"), table_hdu(odi, "CAT.ODI"),
                table_hdu(cal, "WCSCAL.CAT", [("MATCHRAD", 2.0, "match radius, arcsec")])]

