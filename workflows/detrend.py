"""Per-OTA detrending: ``SaturationCatalog(obsid, ota)`` and ``DetrendOTA(obsid, ota)``.

``DetrendOTA`` does QUICKREDUCE_SPEC.md section 3 steps 0-19 to one OTA: crosstalk, overscan,
non-linearity, assembly, bias, dark, flat, illumination, gain, BPM, saturation/bleed and persistency
masks, cosmic rays, the photometric flat (``-photflat``), the canned distortion WCS, and the sky boxes the
focal-plane fit needs. Persistency
is an explicit dependency: the task requires the ``SaturationCatalog`` of the same OTA of every earlier
exposure of the night inside the persistency window, found through the night index at scheduling time.

Checkpoint layout: PRIMARY (provenance), ``OTAxy.SCI`` (float32, NaN undefined), ``OTAxy.MASK``
(uint16 bits, ``podisteps.assemble.MASK_BITS``), ``SKYBOXES`` (table).
"""

from __future__ import annotations

import dataclasses
import warnings
import zlib
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps import (calibrate, cosmics, crosstalk, instrument, masks, nonlinearity, overscan, persistency, rawio,
                       sanity)
from podisteps.photflat import read_photflat
from podisteps import wcs as wcs_step
from podisteps.assemble import MASK_BITS, assemble_ota
from podisteps.background import sample_sky_boxes, sky_statistics
from podisteps.calselect import NoCalibrationError
from podisteps.errors import logger

from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .calibrations import bpm_file, flat_type, resolve_calibrations, warn_once
from .paths import checkpoint_path, night_index, night_of
from .saturation import (ExposureError, SaturationCatalog, SaturationExport, check_persistency_folder,
                         exposure_record, folder_catalogs, persistency_folder, raw_file)
from .settings import reduction_options

__all__ = ["SaturationCatalog", "DetrendOTA", "REDUCTION_LOG_KEYS", "ExposureError"]

#: Reduction-log keywords (spec section 4.12) in the order they are written.
REDUCTION_LOG_KEYS = {
    "overscan": "_OVERSCN", "crosstalk": "_XTALK", "gain": "_GAIN", "trimcell": "_TRIMCEL",
    "nonlinearity": "_NONLIN", "bias": "_BIAS", "dark": "_DARK", "flat": "_FLAT", "illumcorr": "_ILLUMCR",
    "bpm": "_BADPXLS", "persistency": "_PERSIST", "saturation": "_SATURAT", "wcs": "_WCSDIST",
    "cosmics": "_COSMICS", "techdata": "_TECHDAT", "photflat": "_FOTFLAT",
}

#: Rows per compression tile of the MASK extension.
MASK_TILE_ROWS = 256

#: Raw primary cards not copied into the OTA header (spec section 4.5, headers_to_delete_from_otas).
_DROP_CARDS = ("CELLGAP1", "CELLGAP2", "CNAXIS1", "CNAXIS2", "NAMPS", "NEXTEND", "PRESCAN1", "PRESCAN2",
               "OVRSCAN1", "OVRSCAN2", "IMNAXIS1", "IMNAXIS2", "EXTEND", "SIMPLE", "BITPIX", "NAXIS",
               "RADESYS")


class DetrendOTA(PodiTask):
    """One OTA detrended: SCI + MASK + sky boxes, with the canned distortion WCS."""

    obsid = luigi.Parameter(description="exposure, e.g. o20130301T040000.0")
    ota = luigi.IntParameter(description="OTA position, e.g. 33")
    stage = "detrend"
    memory_gb = 1

    @property
    def record(self):
        """The exposure's night-index record."""
        return exposure_record(self.obsid)

    @property
    def calibrations(self):
        """The external calibration files (resolved from the options; stats only)."""
        return resolve_calibrations(self.record, self.reduction_options)

    def earlier_exposures(self) -> list:
        """Exposures of the night whose persistence reaches this one (same OTA present)."""
        opts = self.reduction_options
        if not opts.persistency:
            return []
        me = self.record
        return [
            e.obsid for e in night_index(night_of(self.obsid)).exposures
            if not e.error and self.ota in e.otas and e.obsid != self.obsid
            and persistency.in_persistency_window(me.mjd, e.mjd, e.exptime, window=opts.persistency_window)
        ]

    def imported_catalogs(self) -> list:
        """``-persistency=DIR`` catalogue files of earlier exposures that are not in the night index.

        Exposures of the night index come from their own SaturationCatalog tasks; a file in DIR counts
        only for an exposure podiflow does not have (a QuickReduce folder, the previous night).
        """
        opts = self.reduction_options
        folder = persistency_folder(opts.persistency)
        if folder is None:
            return []
        known = [e.mjd for e in night_index(night_of(self.obsid)).exposures if not e.error]
        me = self.record
        return [
            Path(path) for path, mjd, exptime in folder_catalogs(folder)
            if not any(persistency.is_same_frame(mjd, k) for k in known)
            and persistency.in_persistency_window(me.mjd, mjd, exptime, window=opts.persistency_window)
        ]

    def master_steps(self) -> list:
        """The steps of ``-masters`` this exposure takes from night masters: not overridden by an explicit
        ``-bias``/``-dark``/``-flat`` (a file, or ``=no``) or ``-cals``."""
        opts = self.reduction_options
        for step in opts.masters:
            if step not in ("bias", "dark", "flat"):
                raise ExposureError(f"-masters: unknown calibration {step!r} (bias, dark, flat)")
        return [s for s in opts.masters if getattr(opts, s) is None and not opts.cals]

    def night_masters(self) -> dict:
        """``step -> MasterOTA`` for the calibrations built from the night's own frames (``-masters``).

        Flats: twilight flats of the filter if the night has any, else dome flats (QuickReduce's order);
        ghost-free with ``-flatghost`` (:func:`workflows.masters.master_options`).
        A night without enough frames of a kind borrows the nearest night's within ``-calwindow`` nights
        (:func:`workflows.masters.select_night_master`). A flat frame with no dark within reach is
        detrended without one (as QuickReduce makes flats on a night without darks; one warning).
        """
        from .masters import KINDS, MasterOTA, master_options, select_night_master

        opts, rec = self.reduction_options, self.record
        night = night_of(self.obsid)
        out = {}
        night_wide = reduction_options()  # [reduction] settings that choose a master, not shape a product
        for step in self.master_steps():
            try:
                chosen = select_night_master(step, night=night, binning=rec.binning, filtername=rec.filter,
                                             validity_days=night_wide.calwindow, min_frames=night_wide.mincalframes)
            except NoCalibrationError as exc:
                if step == "dark" and rec.obstype in KINDS["dflat"] + KINDS["tflat"]:
                    warn_once(f"night {night}: no master dark within -calwindow={night_wide.calwindow}: "
                              "flats made without a dark")
                    continue
                raise ExposureError(f"{self.obsid}: -masters {step}: {exc}") from None
            out[step] = MasterOTA(night=chosen.night, kind=chosen.kind, binning=rec.binning, filter=chosen.filter,
                                  ota=self.ota, options=master_options(self.options, chosen.kind))
        if opts.techdata in ("auto", "from_flat") and self.calibrations.techdata is None:
            from .techdata import TechData

            flattype = out["flat"].kind if "flat" in out else flat_type(self.calibrations.flat)
            out["techdata"] = TechData(night=night, filter=rec.filter, binning=rec.binning,
                                       flattype="tflat" if flattype == "tflat" else "dflat")
        return out

    def requires(self):
        from .masters import MasterCalibration, MasterOTA

        masters = self.night_masters()
        req = {
            "persistency": [SaturationCatalog(obsid=o, ota=self.ota) for o in self.earlier_exposures()],
            "masters": masters,
            # the same per-OTA masters assembled into QuickReduce's MEFs in <work>/<night>/cals/ (for -cals)
            "master_mefs": [MasterCalibration(night=m.night, kind=m.kind, binning=m.binning, filter=m.filter,
                                              options=m.options) for m in masters.values() if isinstance(m, MasterOTA)],
        }
        folder = persistency_folder(self.reduction_options.persistency)
        if folder is not None:
            check_persistency_folder(self.reduction_options.persistency)
            req["export"] = SaturationExport(obsid=self.obsid, folder=str(folder))
        return req

    def external_inputs(self):
        cal = self.calibrations
        files = [raw_file(self.obsid, self.ota), *cal.files().values(), *self.imported_catalogs()]
        bpm = bpm_file(cal.bpm, self.ota)
        return files + ([bpm] if bpm is not None else [])

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

    # ------------------------------------------------------------------------------------------------

    def run(self):
        opts = self.reduction_options
        cal = dataclasses.replace(self.calibrations,
                                  **{step: Path(t.path) for step, t in self.input()["masters"].items()})
        raw_path = raw_file(self.obsid, self.ota)
        log = dict.fromkeys(REDUCTION_LOG_KEYS, "not selected")
        # wanted, no file or master: not applied (warned once)
        log.update(dict.fromkeys([*cal.missing, *set(self.master_steps()) - set(self.input()["masters"])],
                                 "missing data"))
        used_files = {"raw": raw_path}

        self.progress(5, f"{self.obsid} OTA{self.ota:02d}: reading raw cells")
        raw = rawio.read_raw_ota(raw_path)
        geo, primary = raw.geometry, raw.primary
        garbage = sanity.bad_cells(raw.cells)  # all-NaN or outside the ADC range: masked and flagged
        for c in garbage:
            raw.cells[c] = np.zeros_like(raw.cells[c])
        saturated = persistency.saturated_pixels(raw.cells)  # this OTA's own (SaturationCatalog is for later ones)
        fppos = str(primary["FPPOS"]).strip()
        if int(fppos[2:]) != self.ota:
            raise ExposureError(f"{raw_path}: FPPOS = {fppos!r} but the file name says OTA {self.ota:02d}")
        header = self._ota_header(primary)

        cells = raw.cells
        if cal.crosstalk is not None:
            with fits.open(cal.crosstalk) as hdul:
                cells = crosstalk.correct_crosstalk(cells, crosstalk.read_crosstalk(hdul))
            log["crosstalk"], used_files["crosstalk"] = "successful", cal.crosstalk

        self.progress(20, f"{self.obsid} OTA{self.ota:02d}: overscan, non-linearity, assembly")
        if opts.overscan != "none":
            levels = {}
            for c in instrument.CELL_IDS:
                cells[c], levels[c] = overscan.subtract_overscan(cells[c], geo, rowwise=opts.overscan == "rowwise")
            header["OVSCNMED"] = (float(np.median([np.median(v) for v in levels.values()])),
                                  "median overscan level of the cells, ADU")
            log["overscan"] = "successful"

        nonlin_table = None
        if cal.nonlinearity is not None:
            with warnings.catch_warnings(), fits.open(cal.nonlinearity) as hdul:
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                nonlin_table = nonlinearity.read_nonlinearity(hdul)
            if self.ota not in nonlin_table.otas:
                raise calibrate.CalibrationError(
                    f"{cal.nonlinearity}: non-linearity table has no rows for OTA {self.ota:02d} "
                    f"(it lists {', '.join(f'{o:02d}' for o in nonlin_table.otas)}): a table for another layout?"
                )
            coeffs = nonlin_table.for_ota(self.ota)
            ds = geo.data_section()
            for c in instrument.CELL_IDS:
                k = coeffs[c]
                cells[c][ds] = nonlinearity.apply_nonlinearity(cells[c][ds], k.c2, k.c3)
            log["nonlinearity"], used_files["nonlinearity"] = "successful", cal.nonlinearity

        keep = instrument.parse_keepcells(opts.keepcells)
        used = {
            (cx, cy): instrument.cell_is_used(self.ota, cx, cy, cellmode=str(primary["CELLMODE"]),
                                              serial=str(primary["OTA_ID"]).strip(), mjd=float(primary["MJD-OBS"]),
                                              keepcells=keep)
            for cx, cy in instrument.CELL_IDS
        }
        used.update(dict.fromkeys(garbage, False))
        header.extend(masks.unused_cell_cards(used, str(primary["CELLMODE"]), garbage))
        sci, mask = assemble_ota(cells, geo, used=used, trimcell=opts.trimcell)
        cell_headers = raw.cell_headers
        del cells, raw
        header["TRIMCELL"] = (opts.trimcell if opts.trimcell else -1, "pixels trimmed off every cell edge")
        log["trimcell"] = "successful" if opts.trimcell else "not selected"

        self.progress(40, f"{self.obsid} OTA{self.ota:02d}: bias, dark, flat")
        sci, mask, flat_gain = self._calibrate(sci, mask, header, primary, geo, cal, opts, keep, log, used_files)
        sci, mask = self._gain(sci, mask, header, geo, cell_headers, nonlin_table, used, flat_gain, cal, opts, log,
                               used_files)

        self.progress(60, f"{self.obsid} OTA{self.ota:02d}: masks")
        if cal.bpm is not None:
            region_path = bpm_file(cal.bpm, self.ota)
            if region_path is not None:
                region_file = masks.read_bpm_regions(region_path)
                bad, ignored = masks.bpm_mask(region_file, geo)
                masks.apply_mask(sci, mask, bad, "BPM")
                header["BPMFILE"] = (region_path.name, "bad-pixel regions applied")
                header["BPMNIGN"] = (len(ignored), "region lines ignored (see the task log)")
                for item in ignored:
                    logger.warning("%s:%s: ignored: %s", region_path, item.line, item.reason)
                used_files["bpm"] = region_path
                log["bpm"] = "successful"
            else:
                log["bpm"] = "missing data"

        self._saturation(sci, mask, header, geo, log, used_files, own=saturated)

        if opts.crj > 0:
            self.progress(75, f"{self.obsid} OTA{self.ota:02d}: cosmic rays")
            params = cosmics.CosmicParameters(niter=opts.crj, sigclip=opts.crjsigclip, sigfrac=opts.crjsigfrac,
                                              objlim=opts.crjobjlim, satlevel=opts.crjsaturation)
            sci, crmask = cosmics.remove_cosmics(sci, geo, gain=float(header.get("GAINX", 1.3)),
                                                 readnoise=float(header.get("RDNOISEE", 8.5)), params=params,
                                                 trimcell=opts.trimcell)
            mask[crmask] |= MASK_BITS["COSMIC"]
            header.update(cosmics.crj_header(params))
            log["cosmics"] = "successful"
        else:
            header.update(cosmics.crj_header(None))

        if cal.photflat is not None:  # spec step 19: after the cosmic rays, before the catalogues
            with fits.open(cal.photflat) as hdul:
                pf = read_photflat(hdul, self.ota, filtername=str(primary.get("FILTER", "")).strip(),
                                   binning=geo.binning, shape=sci.shape, source=str(cal.photflat))
            sci, mask = calibrate.divide_flat(sci, mask, pf)
            header["HISTORY"] = f"CC-PHOTFLAT: {cal.photflat}"
            used_files["photflat"], log["photflat"] = cal.photflat, "successful"

        self._attach_wcs(header, primary, geo, cal, opts, log, used_files)

        self.progress(90, f"{self.obsid} OTA{self.ota:02d}: sky boxes, writing")
        rng = np.random.default_rng(zlib.crc32(f"{self.obsid}.{self.ota}".encode()))
        boxes = sample_sky_boxes(sci, rng=rng, box=max(4, 60 // geo.scale), min_distance=90 / geo.scale)
        stats = sky_statistics(np.asarray(boxes["INTENSITY"]))
        header["SKY_MEDI"] = (stats["SKYLEVEL"], "median sky of the sky boxes, ADU")
        header["SKY_MEAN"] = (float(np.mean(boxes["INTENSITY"])) if len(boxes) else stats["SKYLEVEL"],
                              "mean sky of the sky boxes, ADU")
        header["SKY_STD"] = (stats["SKYBGSTD"], "std of the sky boxes, ADU")
        for step, key in REDUCTION_LOG_KEYS.items():
            header[key] = (log[step], f"reduction log: {step}")

        primary_hdu = fits.PrimaryHDU()
        inputs = self.input()
        for key, value, comment in provenance_cards(self, {**used_files, "saturation": [
                t.path for t in inputs["persistency"]]}):
            primary_hdu.header[key] = (value, comment)
        mask_header = fits.Header({"EXTNAME": f"OTA{self.ota:02d}.MASK"})
        for name, bit in MASK_BITS.items():
            mask_header[f"MASKB{bit.bit_length() - 1}"] = (name, f"bit value {bit}")
        sky_hdu = fits.table_to_hdu(Table(boxes, meta={}))
        sky_hdu.name = "SKYBOXES"
        self.output().write_hdulist(fits.HDUList([
            primary_hdu,
            fits.ImageHDU(sci, header=header),
            # lossless, mostly 0; tiles of MASK_TILE_ROWS rows: astropy's default tile of one row costs 2-3x
            # more to write and read (4096 tiles per full-size OTA)
            fits.CompImageHDU(mask, header=mask_header, compression_type="RICE_1",
                              tile_shape=(min(MASK_TILE_ROWS, mask.shape[0]), mask.shape[1])),
            sky_hdu,
        ]))

    # ------------------------------------------------------------------------------------------------

    def _ota_header(self, primary: fits.Header) -> fits.Header:
        header = fits.Header()
        header["EXTNAME"] = f"OTA{self.ota:02d}.SCI"
        header["OTA"] = (self.ota, "OTA position")
        header["INHERIT"] = True
        for card in primary.cards:
            if card.keyword not in _DROP_CARDS and card.keyword not in header and card.keyword:
                header.append(card)
        header["SOFTBIN"] = 0
        return header

    def _calibrate(self, sci, mask, header, primary, geo, cal, opts, keep, log, used_files):
        fppos, filt = str(primary["FPPOS"]).strip(), str(primary.get("FILTER", "")).strip()
        fill = calibrate.KEEPCELLS_NAN_FILL if keep.mode != "none" else {}
        flat_gain = None
        for step in ("bias", "dark", "flat", "illumcorr"):
            path = getattr(cal, step)
            if path is None:
                continue
            with fits.open(path) as hdul:
                kind = "illumination" if step == "illumcorr" else step
                frame = calibrate.master_frame(hdul, fppos, geo, source=str(path), nan_fill=fill.get(kind),
                                               filtername=filt if step in ("flat", "illumcorr") else None)
                if step != "illumcorr":  # a master of zeros or NaN fails here with the reason
                    sanity.check_calibration(f"{path} [{fppos}]", step, frame)
                if step == "bias":
                    sci = calibrate.subtract_bias(sci, frame)
                elif step == "dark":
                    scale = calibrate.dark_scale(primary, hdul[0].header)
                    sci = calibrate.subtract_dark(sci, frame, scale)
                    header["DARKSCL"] = (scale, "dark scale factor (EXPTIME / dark EXPMEAS)")
                elif step == "flat":
                    sci, mask = calibrate.divide_flat(sci, mask, frame)
                    flat_gain = calibrate.flat_gain(hdul)
                    ext = calibrate.find_fppos_extension(hdul, fppos, source=str(path))
                    header.update(calibrate.flat_pupilghost_cards(ext.header))  # spec step 8: PGCNTR_X/Y
                else:
                    sci = calibrate.divide_illumination(sci, frame)
            header["HISTORY"] = f"CC-{step.upper()}: {path}"
            used_files[step] = path
            log[step] = "successful"
        return sci, mask, flat_gain

    def _gain(self, sci, mask, header, geo, cell_headers, nonlin_table, used, flat_gain, cal, opts, log, used_files):
        relative = nonlin_table is not None and nonlin_table.has_relative_gain
        method = calibrate.choose_gain_method(opts.gain, relative_gains_available=relative)
        noise = calibrate.cell_noise_from_headers(cell_headers)
        if cal.techdata is not None:
            with fits.open(cal.techdata) as hdul:
                noise = calibrate.merge_cell_noise(calibrate.read_techdata(hdul, self.ota, source=str(cal.techdata)),
                                                   noise)
            used_files["techdata"] = cal.techdata
            log["techdata"] = "successful"
        elif method == "techdata":
            raise calibrate.CalibrationError("-gain=techdata needs a TECHDATA file: give -techdata")
        if method is not None:
            rel = ({c: k.relative_gain for c, k in nonlin_table.for_ota(self.ota).items()}
                   if method == "relative" else None)
            factors, noise = calibrate.gain_factors(method, noise, relative_gain=rel)
            sci, mask = calibrate.apply_cell_factors(sci, mask, geo, factors, trimcell=opts.trimcell)
            log["gain"] = "successful"
        summary = calibrate.gain_summary(noise, [c for c, u in used.items() if u], method=method,
                                         flat_gain_value=flat_gain)
        header.update(summary)
        return sci, mask

    def _saturation(self, sci, mask, header, geo, log, used_files, *, own):
        """Saturation and bleed masks from ``own`` (:func:`podisteps.persistency.saturated_pixels` of this OTA's
        raw cells), then the persistency masks of the earlier exposures' catalogues."""
        inputs = self.input()
        saturated, bleed = masks.saturation_masks(own, geo, catalog_binning=geo.binning)
        masks.apply_mask(sci, mask, saturated, "SATURATED")
        masks.apply_mask(sci, mask, bleed & ~saturated, "BLEED")
        header["NSATPIX"] = (int(len(own)), "saturated raw pixels")
        log["saturation"] = "successful"
        if not self.reduction_options.persistency:
            return
        n = 0
        imported = self.imported_catalogs()
        for path in [t.path for t in inputs["persistency"]] + [str(p) for p in imported]:
            with fits.open(path) as hdul:
                earlier = persistency.read_saturation_catalog(hdul)
                skipped = hdul[0].header.get("SATERR")
            if skipped:  # an unreadable earlier exposure: skipped with a warning, never blocking this one
                header.add_history(f"persistency source skipped: {skipped}")
                header["PERSKIP"] = (header.get("PERSKIP", 0) + 1, "unreadable persistency sources skipped")
            table = earlier.table(self.ota)
            if len(table):
                n += 1
                region = masks.persistency_mask(table, geo, catalog_binning=earlier.binning)
                masks.apply_mask(sci, mask, region, "PERSISTENCY")
                header[f"PERSIS{n:02d}"] = (Path(path).name, "persistency source")
        if imported:
            used_files["persistency"] = imported
        log["persistency"] = "successful"
        header["NPERSIST"] = (n, "earlier exposures whose persistence is masked")

    def _attach_wcs(self, header, primary, geo, cal, opts, log, used_files):
        if opts.wcs is None:
            return
        ra, dec = wcs_step.pointing_from_header(primary, target=opts.target)
        if opts.wcsoffset:
            ra, dec = wcs_step.offset_pointing(ra, dec, opts.wcsoffset)
        if opts.wcs == "plain":
            cd = [[float(primary.get("CD1_1", 3.125e-5)), float(primary.get("CD1_2", 0.0))],
                  [float(primary.get("CD2_1", 0.0)), float(primary.get("CD2_2", 3.125e-5))]]
            wcs_step.apply_wcs(header, wcs_step.plain_wcs_cards(self.ota, ra=ra, dec=dec, cd=cd, scale=geo.scale))
            log["wcs"] = "successful"
            return
        if cal.wcs is None:  # no canned distortion in the mastercals tree (warned at scheduling, in cal.missing)
            plane = instrument.focal_plane(instrument.layout_for_mjd(self.record.mjd).name)
            wcs_step.apply_wcs(header, wcs_step.nominal_wcs_cards(self.ota, plane, ra=ra, dec=dec,
                                                                  frame_px=geo.ota_size * geo.scale, scale=geo.scale,
                                                                  simple=opts.simplewcs))
            header["WCSNOMIN"] = (True, "nominal WCS of the instrument model")
            return
        with fits.open(cal.wcs) as hdul:
            try:
                canned = hdul[f"OTA{self.ota:02d}.SCI"].header
            except KeyError:
                raise calibrate.CalibrationError(f"{cal.wcs}: no extension OTA{self.ota:02d}.SCI") from None
            cards = wcs_step.canned_wcs_cards(canned, ra=ra, dec=dec, scale=geo.scale,
                                              tanwcs=opts.tanwcs, simple=opts.simplewcs)
        wcs_step.apply_wcs(header, cards)
        used_files["wcs"] = cal.wcs
        log["wcs"] = "successful"


def detrend_options(options) -> dict:
    """The ``options`` parameter value of DetrendOTA for a full set of reduction options."""
    return options_param(options, ["DetrendOTA"])
