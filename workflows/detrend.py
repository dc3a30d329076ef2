"""Per-OTA detrending: ``DetrendOTA(obsid, ota)`` (``SaturationCatalog`` is re-exported from ``saturation``).

``DetrendOTA`` opens one raw OTA and the calibrations it uses and runs :func:`podisteps.detrend.detrend_ota`
(crosstalk, overscan, non-linearity, assembly, bias, dark, flat, illumination, gain, BPM, saturation/bleed and
persistency masks, cosmic rays, the photometric flat, the WCS, the sky boxes the focal-plane fit needs; the
order in ``docs/architecture.md``, "Detrending one OTA"). Persistency is an explicit dependency: the task
requires the per-exposure ``SaturationCatalog`` of every earlier exposure of the night inside the
persistency window that has this OTA, found through the night index at scheduling time, and reads only this
OTA's table from each.

``DetrendOTA.write_detrended`` is also run, unscheduled, by the ``OTACatalog`` that detrends and catalogues an OTA
in one process when the exposure takes no focal-plane correction (docs/architecture.md, 'One task from raw to
catalogue').

Checkpoint layout: PRIMARY (provenance), ``OTAxy.SCI`` (float32, NaN undefined), ``OTAxy.MASK``
(uint16 bits, ``podisteps.maskbits.MASK_BITS``), ``SKYBOXES`` (table).
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from pathlib import Path

import luigi
from astropy.io import fits
from astropy.table import Table

from podisteps.detrend import (BadPixelRegions, Calibration, DetrendInputs, DetrendResult, DetrendSettings,
                               PersistencySource, detrend_ota, masks, persistency)
from podisteps.detrend.reductionlog import REDUCTION_LOG_KEYS
from podisteps.errors import logger
from podisteps.io import rawio
from podisteps.maskbits import MASK_BITS
from podisteps.masters.calselect import NoCalibrationError

from .base import CheckpointTarget, PodiTask
from .calibrations import (KINDS, bpm_file, flat_type, master_options, resolve_calibrations, select_night_master,
                           warn_once)
from .paths import checkpoint_path, night_index, night_of
from .saturation import (ExposureError, SaturationCatalog, SaturationExport, check_persistency_folder, exposure_record,
                         folder_catalogs, persistency_folder, raw_file)
from .settings import reduction_options
from .techdata import TechData

__all__ = ["SaturationCatalog", "DetrendOTA", "REDUCTION_LOG_KEYS", "ExposureError"]

def master_tasks():
    """``workflows.masters``, imported on first use: the one deferred import among the task modules.

    A night master is combined from the DetrendOTA products of its frames, and a DetrendOTA is detrended with
    the night's masters (``DetrendOTA -> MasterOTA -> DetrendOTA``, for other frames): ``masters`` imports
    this module, so this module cannot import ``masters`` while it is loaded.
    """
    from . import masters

    return masters


#: Rows per compression tile of the MASK extension.
MASK_TILE_ROWS = 256


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
        ghost-free with ``-flatghost`` (:func:`workflows.calibrations.master_options`).
        A night without enough frames of a kind borrows the nearest night's within ``-calwindow`` nights
        (:func:`workflows.calibrations.select_night_master`). A flat frame with no dark within reach is
        detrended without one (as QuickReduce makes flats on a night without darks; one warning).
        """
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
            out[step] = master_tasks().MasterOTA(night=chosen.night, kind=chosen.kind, binning=rec.binning,
                                                 filter=chosen.filter, ota=self.ota,
                                                 options=master_options(self.options, chosen.kind))
        if opts.techdata in ("auto", "from_flat") and self.calibrations.techdata is None:
            flattype = out["flat"].kind if "flat" in out else flat_type(self.calibrations.flat)
            out["techdata"] = TechData(night=night, filter=rec.filter, binning=rec.binning,
                                       flattype="tflat" if flattype == "tflat" else "dflat")
        return out

    def requires(self):
        masters = self.night_masters()
        req = {
            "persistency": [SaturationCatalog(obsid=o) for o in self.earlier_exposures()],
            "masters": masters,
            # the same per-OTA masters assembled into QuickReduce's MEFs in <work>/<night>/cals/ (for -cals)
            "master_mefs": [master_tasks().MasterCalibration(night=m.night, kind=m.kind, binning=m.binning,
                                                             filter=m.filter, options=m.options)
                            for step, m in masters.items() if step != "techdata"],
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
        return CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

    # ------------------------------------------------------------------------------------------------

    def run(self):
        self.write_detrended()

    def write_detrended(self, *, progress=None) -> DetrendResult:
        """Detrend the OTA and write the checkpoint (:meth:`output`, with this task's provenance).

        ``OTACatalog`` calls it on a DetrendOTA it does not schedule, to detrend and catalogue an OTA in one
        process (docs/architecture.md, 'One task from raw to catalogue').

        Parameters
        ----------
        progress : callable, optional
            ``progress(percent, message)``; default :meth:`progress` (this task's web UI status).

        Returns
        -------
        podisteps.detrend.DetrendResult
            The detrended OTA in memory: ``sci`` float32 and ``mask`` uint16, shape ``(ny, nx)``, as written;
            ``header`` the ``OTAxy.SCI`` header as it reads back from the file (parsed from its written cards).
        """
        progress = progress or self.progress
        cal = dataclasses.replace(self.calibrations,
                                  **{step: Path(t.path) for step, t in self.input()["masters"].items()})
        raw_path = raw_file(self.obsid, self.ota)
        progress(5, f"{self.obsid} OTA{self.ota:02d}: reading raw cells")
        raw = rawio.read_raw_ota(raw_path)
        with contextlib.ExitStack() as stack:
            result = detrend_ota(raw, ota=self.ota, settings=DetrendSettings.from_options(self.reduction_options),
                                 inputs=self._inputs(cal, stack),
                                 sky_seed=zlib.crc32(f"{self.obsid}.{self.ota}".encode()),
                                 progress=lambda pct, msg: progress(pct, f"{self.obsid} {msg}"))
        primary_hdu = fits.PrimaryHDU()
        self.add_provenance(primary_hdu.header, result.log.files())
        mask_header = fits.Header({"EXTNAME": f"OTA{self.ota:02d}.MASK"})
        for name, bit in MASK_BITS.items():
            mask_header[f"MASKB{bit.bit_length() - 1}"] = (name, f"bit value {bit}")
        sky_hdu = fits.table_to_hdu(Table(result.skyboxes, meta={}))
        sky_hdu.name = "SKYBOXES"
        mask = result.mask
        sci_hdu = fits.ImageHDU(result.sci, header=result.header)
        self.output().write_hdulist(fits.HDUList([
            primary_hdu,
            sci_hdu,
            # lossless, mostly 0; tiles of MASK_TILE_ROWS rows: astropy's default tile of one row costs 2-3x
            # more to write and read (4096 tiles per full-size OTA)
            fits.CompImageHDU(mask, header=mask_header, compression_type="RICE_1",
                              tile_shape=(min(MASK_TILE_ROWS, mask.shape[0]), mask.shape[1])),
            sky_hdu,
        ]))
        # the cards as written and read back: a float card's value is the one its text gives
        return dataclasses.replace(result, header=fits.Header.fromstring(sci_hdu.header.tostring()))

    def _inputs(self, cal, stack: contextlib.ExitStack) -> DetrendInputs:
        """Open this OTA's calibrations and earlier exposures' saturation catalogues (closed with ``stack``)."""
        def opened(path):
            return None if path is None else Calibration(stack.enter_context(fits.open(path)), path)

        bpm = bpm_file(cal.bpm, self.ota) if cal.bpm is not None else None
        missing = [*cal.missing, *set(self.master_steps()) - set(self.input()["masters"])]
        return DetrendInputs(
            **{step: opened(getattr(cal, step)) for step in _OPENED_STEPS},
            bpm=None if bpm is None else BadPixelRegions(masks.read_bpm_regions(bpm), bpm),
            bpm_missing=cal.bpm is not None and bpm is None, persistency=self._persistency_sources(),
            missing=tuple(missing))

    def _persistency_sources(self) -> tuple:
        """This OTA's part of the earlier exposures' saturation catalogues: the DAG's, then those of a
        ``-persistency`` folder (an OTA whose raw file was unreadable is skipped with a warning)."""
        if not self.reduction_options.persistency:
            return ()
        own = [(t.path, False) for t in self.input()["persistency"]]
        sources = []
        for path, imported in own + [(str(p), True) for p in self.imported_catalogs()]:
            with fits.open(path) as hdul:  # lazily: only this OTA's table is loaded
                catalog = persistency.read_saturation_catalog(hdul, otas=(self.ota,))
            skipped = catalog.error(self.ota)
            if skipped:
                logger.warning("%s OTA%02d: persistence of %s not masked: %s", self.obsid, self.ota, path, skipped)
            sources.append(PersistencySource(catalog, path, skipped=skipped, imported=imported))
        return tuple(sources)


#: Calibrations DetrendOTA opens and hands to :func:`podisteps.detrend.detrend_ota` as they are.
_OPENED_STEPS = ("crosstalk", "nonlinearity", "bias", "dark", "flat", "illumcorr", "techdata", "photflat", "wcs")


def detrend_options(options) -> dict:
    """The ``options`` parameter value of DetrendOTA for a full set of reduction options."""
    return DetrendOTA.options_for(options)
