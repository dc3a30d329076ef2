"""``detrend_ota``: one raw OTA to its detrended SCI, MASK, header and sky boxes, in memory.

The steps run in :data:`podisteps.detrend.steps.STEPS` order, each a small function of the frame being
detrended (:class:`_Frame`) and the inputs (:class:`DetrendInputs`). Nothing here opens a file: the caller
reads the raw OTA and opens the calibrations; the paths it hands in are only written into the log.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import instrument, sanity
from ..errors import PodiflowError, logger
from ..maskbits import MASK_BITS
from ..photometry.photflat import read_photflat
from . import calibrate, cosmics, crosstalk, masks, nonlinearity, overscan, persistency
from . import wcs as wcs_step
from .assemble import assemble_ota
from .background import sample_sky_boxes, sky_statistics
from .reductionlog import ReductionLog
from .steps import STEPS

__all__ = ["detrend_ota", "DetrendSettings", "DetrendInputs", "Calibration", "BadPixelRegions",
           "PersistencySource", "DetrendResult", "FrameMismatchError", "DROP_CARDS"]

#: Raw primary cards not copied into the OTA header (QuickReduce's ``headers_to_delete_from_otas``).
DROP_CARDS = ("CELLGAP1", "CELLGAP2", "CNAXIS1", "CNAXIS2", "NAMPS", "NEXTEND", "PRESCAN1", "PRESCAN2",
              "OVRSCAN1", "OVRSCAN2", "IMNAXIS1", "IMNAXIS2", "EXTEND", "SIMPLE", "BITPIX", "NAXIS", "RADESYS")


class FrameMismatchError(PodiflowError, ValueError):
    """A raw OTA file whose header contradicts what it was handed as (e.g. FPPOS against its OTA)."""


@dataclass(frozen=True)
class DetrendSettings:
    """The reduction options that shape a detrended OTA (names, meanings and defaults as ``podiflow options``).

    Build it from any object carrying those attributes with :meth:`from_options`; the pipeline always does, so
    the defaults here serve direct callers only.
    """

    overscan: str = "scalar"
    keepcells: Any = None
    trimcell: int = 0
    gain: str | None = None
    crj: int = 0
    crjsigclip: float = 5.0
    crjsigfrac: float = 0.3
    crjobjlim: float = 5.0
    crjsaturation: float = 55000.0
    persistency: Any = "auto"
    wcs: Any = "auto"
    target: str | None = None
    wcsoffset: tuple | None = None
    tanwcs: bool = False
    simplewcs: bool = False

    @classmethod
    def from_options(cls, options) -> "DetrendSettings":
        """The settings of ``options`` (e.g. a ``workflows.options.ReductionOptions``), by attribute name."""
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Calibration:
    """An opened calibration file and where it came from (``source``: written into the log, never opened)."""

    hdul: fits.HDUList
    source: Any


@dataclass(frozen=True)
class BadPixelRegions:
    """The parsed bad-pixel region file of this OTA (:func:`podisteps.detrend.masks.read_bpm_regions`)."""

    regions: Any
    source: Any


@dataclass(frozen=True)
class PersistencySource:
    """The saturation catalogue of an earlier exposure (:func:`podisteps.detrend.persistency.read_saturation_catalog`).

    ``skipped`` is the reason an unreadable earlier OTA file was skipped (its catalogue's ``SATERRnn``), else None;
    ``imported`` says it came from a ``-persistency`` folder rather than the pipeline's own catalogues.
    """

    catalog: Any
    source: Any
    skipped: str | None = None
    imported: bool = False


@dataclass(frozen=True)
class DetrendInputs:
    """Everything ``detrend_ota`` applies besides the raw OTA: opened calibrations (None = step not applied).

    ``bpm_missing`` says a bad-pixel folder was given but has no file for this OTA; ``missing`` lists steps
    asked for whose file is not there (logged ``missing data``).
    """

    crosstalk: Calibration | None = None
    nonlinearity: Calibration | None = None
    bias: Calibration | None = None
    dark: Calibration | None = None
    flat: Calibration | None = None
    illumcorr: Calibration | None = None
    techdata: Calibration | None = None
    photflat: Calibration | None = None
    wcs: Calibration | None = None
    bpm: BadPixelRegions | None = None
    bpm_missing: bool = False
    persistency: tuple = ()
    missing: tuple = ()


@dataclass
class DetrendResult:
    """The detrended OTA.

    Attributes
    ----------
    sci : numpy.ndarray
        float32, shape ``(ny, nx)`` of the assembled OTA, NaN where undefined.
    mask : numpy.ndarray
        uint16 mask bits (:data:`podisteps.maskbits.MASK_BITS`), same shape.
    header : astropy.io.fits.Header
        The OTA header (``OTAxy.SCI``) with the WCS, the sky statistics and the reduction-log cards.
    skyboxes : astropy.table.Table
        The sky boxes (:func:`podisteps.detrend.background.sample_sky_boxes`).
    log : podisteps.detrend.reductionlog.ReductionLog
        What each step did and the files it read.
    """

    sci: np.ndarray
    mask: np.ndarray
    header: fits.Header
    skyboxes: Table
    log: ReductionLog


@dataclass
class _Frame:
    """The OTA while it is detrended: raw cells until ``assemble``, then ``sci``/``mask``."""

    raw: Any
    ota: int
    header: fits.Header
    log: ReductionLog
    settings: DetrendSettings
    inputs: DetrendInputs
    keep: Any
    garbage: dict
    saturated: Any
    cells: dict
    sky_seed: int
    sci: np.ndarray | None = None
    mask: np.ndarray | None = None
    nonlin_table: Any = None
    used: dict = field(default_factory=dict)
    flat_gain: Any = None
    boxes: Any = None

    @property
    def geo(self) -> instrument.CellGeometry:
        """The cell geometry of the raw OTA."""
        return self.raw.geometry

    @property
    def primary(self) -> fits.Header:
        """The raw primary header."""
        return self.raw.primary


def detrend_ota(raw, *, ota: int, settings: DetrendSettings, inputs: DetrendInputs, sky_seed: int,
                progress: Callable[[float, str], None] | None = None) -> DetrendResult:
    """Detrend one raw OTA: QuickReduce's per-OTA steps 0-19, in :data:`~podisteps.detrend.steps.STEPS` order.

    Parameters
    ----------
    raw : podisteps.io.rawio.RawOTA
        The raw OTA, read with float32 cells (it is modified: its cells are corrected in place).
    ota : int
        The OTA position the raw file was handed as; its ``FPPOS`` must agree.
    settings : DetrendSettings
        The options.
    inputs : DetrendInputs
        The opened calibrations and earlier exposures' saturation catalogues.
    sky_seed : int
        Seed of the random sky-box positions (the same seed gives the same boxes).
    progress : callable, optional
        ``progress(percent, message)`` before the longer steps.

    Returns
    -------
    DetrendResult

    Raises
    ------
    FrameMismatchError
        ``FPPOS`` names another OTA.
    podisteps.errors.CalibrationError
        A calibration without this OTA, or a master that fails its sanity check.
    """
    frame = _start(raw, ota=ota, settings=settings, inputs=inputs, sky_seed=sky_seed)
    for step in STEPS:
        if progress is not None and step in _PROGRESS:
            progress(_PROGRESS[step][0], f"OTA{ota:02d}: {_PROGRESS[step][1]}")
        _RUNNERS[step](frame)
    frame.log.write_cards()
    return DetrendResult(sci=frame.sci, mask=frame.mask, header=frame.header, skyboxes=frame.boxes, log=frame.log)


def _start(raw, *, ota: int, settings: DetrendSettings, inputs: DetrendInputs, sky_seed: int) -> _Frame:
    """Check the raw OTA, mask garbage cells, find its own saturated pixels and start its header and log."""
    garbage = sanity.bad_cells(raw.cells)  # all-NaN or outside the ADC range: masked and flagged
    for c in garbage:
        raw.cells[c] = np.zeros_like(raw.cells[c])
    saturated = persistency.saturated_pixels(raw.cells)  # this OTA's own (SaturationCatalog is for later ones)
    fppos = str(raw.primary["FPPOS"]).strip()
    if int(fppos[2:]) != ota:
        raise FrameMismatchError(f"{raw.path}: FPPOS = {fppos!r} but the file name says OTA {ota:02d}")
    header = _ota_header(raw.primary, ota)
    log = ReductionLog(header, missing=inputs.missing)
    log.read("raw", raw.path)
    return _Frame(raw=raw, ota=ota, header=header, log=log, settings=settings, inputs=inputs,
                  keep=instrument.parse_keepcells(settings.keepcells), garbage=garbage, saturated=saturated,
                  cells=raw.cells, sky_seed=sky_seed)


def _ota_header(primary: fits.Header, ota: int) -> fits.Header:
    header = fits.Header()
    header["EXTNAME"] = f"OTA{ota:02d}.SCI"
    header["OTA"] = (ota, "OTA position")
    header["INHERIT"] = True
    for card in primary.cards:
        if card.keyword not in DROP_CARDS and card.keyword not in header and card.keyword:
            header.append(card)
    header["SOFTBIN"] = 0
    return header


# -- cell steps -----------------------------------------------------------------------------------------

def _crosstalk(f: _Frame) -> None:
    cal = f.inputs.crosstalk
    if cal is not None:
        f.cells = crosstalk.correct_crosstalk(f.cells, crosstalk.read_crosstalk(cal.hdul), inplace=True)
        f.log.applied("crosstalk", cal.source)


def _overscan(f: _Frame) -> None:
    if f.settings.overscan == "none":
        return
    levels = {}
    for c in instrument.CELL_IDS:
        f.cells[c], levels[c] = overscan.subtract_overscan(f.cells[c], f.geo, rowwise=f.settings.overscan == "rowwise",
                                                           inplace=True)
    f.header["OVSCNMED"] = (float(np.median([np.median(v) for v in levels.values()])),
                            "median overscan level of the cells, ADU")
    f.log.applied("overscan")


def _nonlinearity(f: _Frame) -> None:
    cal = f.inputs.nonlinearity
    if cal is None:
        return
    with warnings.catch_warnings():  # old tables lack cards astropy's verification wants
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        f.nonlin_table = nonlinearity.read_nonlinearity(cal.hdul)
    if f.ota not in f.nonlin_table.otas:
        raise calibrate.CalibrationError(
            f"{cal.source}: non-linearity table has no rows for OTA {f.ota:02d} "
            f"(it lists {', '.join(f'{o:02d}' for o in f.nonlin_table.otas)}): a table for another layout?"
        )
    coeffs = f.nonlin_table.for_ota(f.ota)
    ds = f.geo.data_section()
    for c in instrument.CELL_IDS:
        f.cells[c][ds] = nonlinearity.apply_nonlinearity(f.cells[c][ds], coeffs[c].c2, coeffs[c].c3)
    f.log.applied("nonlinearity", cal.source)


def _assemble(f: _Frame) -> None:
    primary = f.primary
    cellmode = str(primary["CELLMODE"])
    f.used = {
        (cx, cy): instrument.cell_is_used(f.ota, cx, cy, cellmode=cellmode, serial=str(primary["OTA_ID"]).strip(),
                                          mjd=float(primary["MJD-OBS"]), keepcells=f.keep)
        for cx, cy in instrument.CELL_IDS
    }
    f.used.update(dict.fromkeys(f.garbage, False))
    f.header.extend(masks.unused_cell_cards(f.used, cellmode, f.garbage))
    f.sci, f.mask = assemble_ota(f.cells, f.geo, used=f.used, trimcell=f.settings.trimcell)
    f.cells = {}
    f.raw.cells.clear()  # the raw cells are not needed again: free them
    trim = f.settings.trimcell
    f.header["TRIMCELL"] = (trim if trim else -1, "pixels trimmed off every cell edge")
    if trim:
        f.log.applied("trimcell")


# -- calibration steps ----------------------------------------------------------------------------------

def _master(f: _Frame, step: str) -> tuple[Calibration, np.ndarray] | None:
    """The opened master of ``step`` (bias, dark, flat, illumcorr) and this OTA's frame of it, or None."""
    cal = getattr(f.inputs, step)
    if cal is None:
        return None
    fppos = str(f.primary["FPPOS"]).strip()
    filt = str(f.primary.get("FILTER", "")).strip()
    kind = "illumination" if step == "illumcorr" else step
    fill = calibrate.KEEPCELLS_NAN_FILL if f.keep.mode != "none" else {}
    frame = calibrate.master_frame(cal.hdul, fppos, f.geo, source=str(cal.source), nan_fill=fill.get(kind),
                                   filtername=filt if step in ("flat", "illumcorr") else None, copy=False)
    if step != "illumcorr":  # a master of zeros or NaN fails here with the reason
        sanity.check_calibration(f"{cal.source} [{fppos}]", step, frame)
    return cal, frame


def _bias(f: _Frame) -> None:
    if (found := _master(f, "bias")) is not None:
        f.sci = calibrate.subtract_bias(f.sci, found[1], out=f.sci)
        f.log.applied("bias", found[0].source, history=True)


def _dark(f: _Frame) -> None:
    if (found := _master(f, "dark")) is not None:
        cal, frame = found
        scale = calibrate.dark_scale(f.primary, cal.hdul[0].header)
        f.sci = calibrate.subtract_dark(f.sci, frame, scale, out=f.sci)
        f.header["DARKSCL"] = (scale, "dark scale factor (EXPTIME / dark EXPMEAS)")
        f.log.applied("dark", cal.source, history=True)


def _flat(f: _Frame) -> None:
    if (found := _master(f, "flat")) is not None:
        cal, frame = found
        f.sci, f.mask = calibrate.divide_flat(f.sci, f.mask, frame, inplace=True)
        f.flat_gain = calibrate.flat_gain(cal.hdul)
        ext = calibrate.find_fppos_extension(cal.hdul, str(f.primary["FPPOS"]).strip(), source=str(cal.source))
        f.header.update(calibrate.flat_pupilghost_cards(ext.header))  # the flat's pupil-ghost centre
        f.log.applied("flat", cal.source, history=True)


def _illumcorr(f: _Frame) -> None:
    if (found := _master(f, "illumcorr")) is not None:
        f.sci = calibrate.divide_illumination(f.sci, found[1])
        f.log.applied("illumcorr", found[0].source, history=True)


def _gain(f: _Frame) -> None:
    table = f.nonlin_table
    method = calibrate.choose_gain_method(f.settings.gain,
                                          relative_gains_available=table is not None and table.has_relative_gain)
    noise = calibrate.cell_noise_from_headers(f.raw.cell_headers)
    cal = f.inputs.techdata
    if cal is not None:
        noise = calibrate.merge_cell_noise(calibrate.read_techdata(cal.hdul, f.ota, source=str(cal.source)), noise)
        f.log.applied("techdata", cal.source)
    elif method == "techdata":
        raise calibrate.CalibrationError("-gain=techdata needs a TECHDATA file: give -techdata")
    if method is not None:
        rel = {c: k.relative_gain for c, k in table.for_ota(f.ota).items()} if method == "relative" else None
        factors, noise = calibrate.gain_factors(method, noise, relative_gain=rel)
        f.sci, f.mask = calibrate.apply_cell_factors(f.sci, f.mask, f.geo, factors, trimcell=f.settings.trimcell)
        f.log.applied("gain")
    f.header.update(calibrate.gain_summary(noise, [c for c, u in f.used.items() if u], method=method,
                                           flat_gain_value=f.flat_gain))


# -- masks ----------------------------------------------------------------------------------------------

def _bpm(f: _Frame) -> None:
    regions = f.inputs.bpm
    if regions is None:
        if f.inputs.bpm_missing:
            f.log.missing("bpm")
        return
    bad, ignored = masks.bpm_mask(regions.regions, f.geo)
    masks.apply_mask(f.sci, f.mask, bad, "BPM")
    f.header["BPMFILE"] = (_name(regions.source), "bad-pixel regions applied")
    f.header["BPMNIGN"] = (len(ignored), "region lines ignored (see the task log)")
    for item in ignored:
        logger.warning("%s:%s: ignored: %s", regions.source, item.line, item.reason)
    f.log.applied("bpm", regions.source)


def _saturation(f: _Frame) -> None:
    if len(f.saturated):  # the usual OTA has none: no full-frame masks to build and scan
        saturated, bleed = masks.saturation_masks(f.saturated, f.geo, catalog_binning=f.geo.binning)
        masks.apply_mask(f.sci, f.mask, saturated, "SATURATED")
        masks.apply_mask(f.sci, f.mask, bleed & ~saturated, "BLEED")
    f.header["NSATPIX"] = (int(len(f.saturated)), "saturated raw pixels")
    f.log.applied("saturation")


def _persistency(f: _Frame) -> None:
    """Mask the persistence of earlier exposures' saturated pixels (their catalogues, in the given order)."""
    if not f.settings.persistency:
        return
    n = 0
    for source in f.inputs.persistency:
        if source.skipped:  # an unreadable earlier exposure: skipped with a warning, never blocking this one
            f.header.add_history(f"persistency source skipped: {source.skipped}")
            f.header["PERSKIP"] = (f.header.get("PERSKIP", 0) + 1, "unreadable persistency sources skipped")
        table = source.catalog.table(f.ota)
        if len(table):
            n += 1
            region = masks.persistency_mask(table, f.geo, catalog_binning=source.catalog.binning)
            masks.apply_mask(f.sci, f.mask, region, "PERSISTENCY")
            f.header[f"PERSIS{n:02d}"] = (_name(source.source), "persistency source")
    f.log.read("saturation", [s.source for s in f.inputs.persistency if not s.imported])
    imported = [s.source for s in f.inputs.persistency if s.imported]
    if imported:
        f.log.read("persistency", imported)
    f.log.applied("persistency")
    f.header["NPERSIST"] = (n, "earlier exposures whose persistence is masked")


def _cosmics(f: _Frame) -> None:
    s = f.settings
    if s.crj <= 0:
        f.header.update(cosmics.crj_header(None))
        return
    params = cosmics.CosmicParameters(niter=s.crj, sigclip=s.crjsigclip, sigfrac=s.crjsigfrac,
                                      objlim=s.crjobjlim, satlevel=s.crjsaturation)
    f.sci, crmask = cosmics.remove_cosmics(f.sci, f.geo, gain=float(f.header.get("GAINX", 1.3)),
                                           readnoise=float(f.header.get("RDNOISEE", 8.5)), params=params,
                                           trimcell=s.trimcell)
    f.mask[crmask] |= MASK_BITS["COSMIC"]
    f.header.update(cosmics.crj_header(params))
    f.log.applied("cosmics")


def _photflat(f: _Frame) -> None:
    """The photometric flat: after the cosmic rays, before the catalogues."""
    cal = f.inputs.photflat
    if cal is None:
        return
    pf = read_photflat(cal.hdul, f.ota, filtername=str(f.primary.get("FILTER", "")).strip(),
                       binning=f.geo.binning, shape=f.sci.shape, source=str(cal.source))
    f.sci, f.mask = calibrate.divide_flat(f.sci, f.mask, pf, inplace=True)
    f.log.applied("photflat", cal.source, history=True)


# -- WCS and sky ----------------------------------------------------------------------------------------

def _wcs(f: _Frame) -> None:
    s, primary, geo = f.settings, f.primary, f.geo
    if s.wcs is None:
        return
    ra, dec = wcs_step.pointing_from_header(primary, target=s.target)
    if s.wcsoffset:
        ra, dec = wcs_step.offset_pointing(ra, dec, s.wcsoffset)
    if s.wcs == "plain":
        cd = [[float(primary.get("CD1_1", 3.125e-5)), float(primary.get("CD1_2", 0.0))],
              [float(primary.get("CD2_1", 0.0)), float(primary.get("CD2_2", 3.125e-5))]]
        wcs_step.apply_wcs(f.header, wcs_step.plain_wcs_cards(f.ota, ra=ra, dec=dec, cd=cd, scale=geo.scale))
        f.log.applied("wcs")
        return
    cal = f.inputs.wcs
    if cal is None:  # no canned distortion: the nominal WCS of the instrument model (the caller warned)
        plane = instrument.focal_plane(instrument.layout_for_mjd(float(primary["MJD-OBS"])).name)
        wcs_step.apply_wcs(f.header, wcs_step.nominal_wcs_cards(
            f.ota, plane, ra=ra, dec=dec, frame_px=geo.ota_size * geo.scale, scale=geo.scale,
            simple=s.simplewcs))
        f.header["WCSNOMIN"] = (True, "nominal WCS of the instrument model")
        return
    try:
        canned = cal.hdul[f"OTA{f.ota:02d}.SCI"].header
    except KeyError:
        raise calibrate.CalibrationError(f"{cal.source}: no extension OTA{f.ota:02d}.SCI") from None
    wcs_step.apply_wcs(f.header, wcs_step.canned_wcs_cards(canned, ra=ra, dec=dec, scale=geo.scale,
                                                           tanwcs=s.tanwcs, simple=s.simplewcs))
    f.log.applied("wcs", cal.source)


def _skyboxes(f: _Frame) -> None:
    geo = f.geo
    f.boxes = sample_sky_boxes(f.sci, rng=np.random.default_rng(f.sky_seed), box=max(4, 60 // geo.scale),
                               min_distance=90 / geo.scale)
    stats = sky_statistics(np.asarray(f.boxes["INTENSITY"]))
    f.header["SKY_MEDI"] = (stats["SKYLEVEL"], "median sky of the sky boxes, ADU")
    f.header["SKY_MEAN"] = (float(np.mean(f.boxes["INTENSITY"])) if len(f.boxes) else stats["SKYLEVEL"],
                            "mean sky of the sky boxes, ADU")
    f.header["SKY_STD"] = (stats["SKYBGSTD"], "std of the sky boxes, ADU")


def _name(source) -> str:
    """The file name of a source path (as text)."""
    return str(source).replace("\\", "/").rsplit("/", 1)[-1]


#: Step name -> the function that does it.
_RUNNERS = {
    "crosstalk": _crosstalk, "overscan": _overscan, "nonlinearity": _nonlinearity, "assemble": _assemble,
    "bias": _bias, "dark": _dark, "flat": _flat, "illumcorr": _illumcorr, "gain": _gain, "bpm": _bpm,
    "saturation": _saturation, "persistency": _persistency, "cosmics": _cosmics, "photflat": _photflat,
    "wcs": _wcs, "skyboxes": _skyboxes,
}

#: Progress reported before these steps: percent done, what is next.
_PROGRESS = {"overscan": (20, "overscan, non-linearity, assembly"), "bias": (40, "bias, dark, flat"),
             "bpm": (60, "masks"), "cosmics": (75, "cosmic rays"), "skyboxes": (90, "sky boxes")}
