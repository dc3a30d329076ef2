"""Focal-plane templates and corrections: ``FringeTemplate``, ``PupilGhostTemplate``, ``FocalPlaneSamples``,
``FocalPlaneCorrections`` and ``CorrectedOTA`` (issue 9), in one module: the DAG recurses through them.

docs/reduction-steps.md, 'Fringe amplitudes', 'Pupil-ghost samples', 'Subtracting the focal-plane templates', 'Global
sky level', 'Global fringe scale' and 'Global pupil-ghost scale'. The exposure-wide fit reads only small per-OTA
measurements, never images; they are taken by one ``FocalPlaneSamples`` task per exposure, which reads the
DetrendOTA checkpoints one after the other (the pixels, when needed, one OTA at a time) and writes one file::

    FocalPlaneSamples     <work>/<night>/<obsid>/fpsamples/<obsid>.fpsamples.<id>.fits
        PRIMARY         provenance only
        then per OTA, in the exposure's OTA order:
        OTAnn.SKYBOXES  the DetrendOTA sky boxes, plus FRNG_T (fringe template in each box)      [FRNG_T: -fringe]
                        header: OTA, SCALE (full-size px per px), AXIS_X/Y (optical axis, 0-based frame px,
                        from CRPIX), ROTSTART, GUIDEOTA, [PGCNTR_X/Y when the detrended header has the flat's
                        centre]
        OTAnn.FRINGE    per fringe vector: QuickReduce's 7 columns (podisteps.focalplane.fringe.FRINGE_COLUMNS)
                                                                                                 [-fringe]
        OTAnn.PGBINS    X, Y, SKY: 64-px block medians of the detrended OTA                      [-pupilghost]
    FocalPlaneCorrections <work>/<night>/<obsid>/focalplane/<obsid>.focalplane.<id>.fits
        PRIMARY   SKYLEVEL ... (docs/reduction-steps.md, 'Global sky level' keys), FRNG_SCL, FRNG_STD, FRNG_NV, PUPLGFAC, PGBGRND, PGOFFS_X/Y
        SKYLEVEL  the sky boxes used: OTA, X, Y, INTENSITY, CORRECTED
        PGCENTRE  OTA, PGCNTR_X, PGCNTR_Y (ghost centre per ghost OTA, frame px)                 [-pupilghost]
    CorrectedOTA          <work>/<night>/<obsid>/corrected/<obsid>.<OTA>.corrected.<id>.fits
        the DetrendOTA layout (PRIMARY, OTAxy.SCI, OTAxy.MASK, SKYBOXES) minus template x scale

The tasks open their inputs and write their products; the measurements, the fit and the correction are the
pure composites of :mod:`podisteps.focalplane.focalfit` (``ota_samples``, ``exposure_samples`` and
``read_exposure_samples``, ``fit_focal_plane``, ``correct_ota``).

Departures from QuickReduce, on purpose:

- the global sky uses the filter's photometry OTAs of the layout (QuickReduce's [bug] always took the
  central 3x3), guide OTAs left out, and is measured on the sky boxes *after* subtracting fringe x scale and
  ghost x scale at each box (QuickReduce measured before: the ghost, a one-sided +2-3 % ring, biased it);
- the ghost scale is fitted on 64-px block medians of every ghost OTA (rather than 750 random boxes), with
  a sky plane (:func:`podisteps.focalplane.pupilghost.fit_pupilghost_scale`); without the flat's
  ``PGCNTR_X/Y`` the ghost centre is fitted once for the exposure on the pooled blocks of all ghost OTAs,
  relative to the optical axis, which the ghost follows.

Templates: ``FringeTemplate`` and ``PupilGhostTemplate`` tasks, and which template a reduction uses.

```
FringeTemplate(nights, filter, binning)    <work>/<night>/cals/fringe__<FILTER>__<layout>_bin<B>.<id>.fits
PupilGhostTemplate(night, filter, binning) <work>/<night>/cals/pupilghost_template___level_<L>__bin<B>.<id>.fits
```

Both are written in QuickReduce's formats (docs/calibrations.md, 'Pupil-ghost templates' and 'Fringe templates and
vectors'), so a file made here can be handed to ``-fringe``/``-pupilghost`` of either pipeline. ``-fringe``,
``-pupilghost``: ``auto`` (the bare flag) takes the mastercals history
(``fringe/<layout>/<FILTER>/fringe_bin<B>.history``, ``pupilghost/<layout>/level<L>/pupilghost_bin<B>.history``) when it
names a file, else these tasks' products from the exposure's own night; a file or a folder holding the history file
chooses one explicitly. ``-fringevectors``: a folder of ``fringevectors__<FILTER>__OTAnn.reg`` files or one file for
every OTA; by default ``fringevectors/<layout>/<FILTER>/`` of the mastercals tree. Fringes are corrected only in filters
that have fringe vectors.

Templates are dimensionless (relative to the sky or flat level). The pupil-ghost ``COMBINED`` image and the
``RAWPROFILE`` radii carry ``PGSCALE`` (full-size bin1 px per px; QuickReduce's files have none: then the
binning), so test-instrument templates are read back at their own scale.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import luigi
import numpy as np
from luigi.parameter import ParameterVisibility
from astropy.io import fits
from astropy.table import Table

from podisteps import instrument
from podisteps.focalplane import focalfit, fringe, pupilghost
from podisteps.focalplane.pupilghost import frame_scale, read_pupilghost_template
from podisteps.io.mapped import release_pages
from podisteps.masters import history
from podisteps.stats import block_median

from .base import CheckpointTarget, FitsTarget, PodiTask
from .calibrations import flat_free_options
from .detrend import DetrendOTA
from .options import ReductionOptions
from .paths import checkpoint_path, mastercals_root, night_index, night_of, work_root
from .saturation import exposure_record

__all__ = ["FocalPlaneSamples", "FocalPlaneCorrections", "CorrectedOTA", "image_task", "image_target", "catalog_options",
           "focal_correction", "FOCAL_FAMILIES",
           "FringeTemplate", "PupilGhostTemplate", "TemplateSource", "fringe_source", "fringe_vector_file",
           "pupilghost_source"]

#: Pixel size at which fringe templates are source-masked and filtered, full-size bin1 px (fringes are far
#: coarser; at full size a single pixel's noise hides star halos).
COARSE_PX = 8
#: Block side of the binned flats the ghost profile is measured on, full-size bin1 px.
PROFILE_BLOCK_PX = 32.0
#: Every n-th block enters the centre searches (the profile uses them all): the searches cost per sample.
CENTRE_SUBSAMPLE = 4


def _coarse(shape: tuple[int, ...]) -> int:
    """Binning that brings an OTA frame of ``shape`` to 8 full-size px per px (1 for the test instrument):
    the scale at which fringe-template sources are detected and the template is filtered."""
    return max(1, COARSE_PX // frame_scale(shape))


def _cals_path(night: str, name: str, identity: str) -> Path:
    return work_root() / night / "cals" / f"{name}.{identity}.fits"


@dataclass(frozen=True)
class TemplateSource:
    """Where a template comes from: an external file (``path``) or a template task (``task``)."""

    path: Path | None = None
    task: PodiTask | None = None


def _resolve(value, *, history_name: str, mjd: float, default_dir: Path, what: str) -> Path | None:
    try:
        return history.resolve_calibration(value, history_name=history_name, mjd=mjd,
                                           default_dir=default_dir if default_dir.is_dir() else None)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"-{what}: {exc}") from None


def fringe_vector_file(record, options: ReductionOptions, ota: int) -> Path | None:
    """The fringe-vector region file of one OTA (None: no vectors for it, so no fringe measurement)."""
    layout = instrument.layout_for_mjd(record.mjd).name
    value = options.fringevectors
    folder = (mastercals_root() / "fringevectors" / layout / record.filter if value in (None, "", "auto")
              else Path(value))
    if folder.is_file():
        return folder
    candidate = folder / f"fringevectors__{record.filter}__OTA{ota:02d}.reg"
    return candidate if candidate.is_file() else None


def fringe_source(record, options: ReductionOptions) -> TemplateSource | None:
    """The fringe template of an exposure, or None when fringes are not corrected (off, or no vectors)."""
    if not options.fringe or not any(fringe_vector_file(record, options, o) for o in record.otas):
        return None
    layout = instrument.layout_for_mjd(record.mjd).name
    path = _resolve(options.fringe, history_name=f"fringe_bin{record.binning}.history", mjd=record.mjd,
                    default_dir=mastercals_root() / "fringe" / layout / record.filter, what="fringe")
    if path is not None:
        return TemplateSource(path=path)
    # its frames are the reduction's own, without the fringe correction
    return TemplateSource(task=FringeTemplate.with_options(options.replace(fringe=None), filter=record.filter,
                                                           nights=(night_of(record.obsid),), binning=record.binning))


def pupilghost_source(record, options: ReductionOptions) -> TemplateSource | None:
    """The pupil-ghost template of an exposure, or None when the ghost is not corrected."""
    if not options.pupilghost:
        return None
    layout = instrument.layout_for_mjd(record.mjd).name
    level = pupilghost.configured_filter_level(record.filter)
    default = mastercals_root() / "pupilghost" / layout / f"level{level}"
    path = _resolve(options.pupilghost, history_name=f"pupilghost_bin{record.binning}.history", mjd=record.mjd,
                    default_dir=default, what="pupilghost")
    if path is not None:
        return TemplateSource(path=path)
    return TemplateSource(task=PupilGhostTemplate(night=night_of(record.obsid), filter=record.filter,
                                                  binning=record.binning, options=flat_free_options(options)))


class FringeTemplate(PodiTask):
    """Fringe template of one filter from the science exposures of some nights (docs/calibrations.md, 'Fringe templates
    and vectors').

    Per OTA: sources masked (:func:`podisteps.focalplane.fringe.source_mask` on 8-px blocks, plus every mask bit),
    ``(data - sky) / sky`` with the sky a fitted plane (QuickReduce used the level ``SKY_MEDI``: a sky
    gradient then leaks into the template), frames with more than twice the nominal sky rate left out,
    ``nanmedian`` over the frames, then Wiener-filtered on 8-px blocks
    (:func:`podisteps.focalplane.fringe.denoise_template`; QuickReduce did not filter, but the median of a few frames is
    noisier than the fringes it measures, and a Gaussian smoothing that beats the noise down takes a few per
    cent of the fringe amplitude with it). The frames are the reduction's own, pupil-ghost-corrected when
    ``-pupilghost`` is on.
    """

    nights = luigi.ListParameter(description="observing nights YYYYMMDD whose science frames are combined")
    filter = luigi.Parameter()
    binning = luigi.IntParameter(default=1)
    wiener = luigi.FloatParameter(default=fringe.WIENER_THRESHOLD,
                                  description="noise multiple below which a frequency is dropped (0: no filter)")
    stage = "cals"
    memory_gb = 2
    option_families = ("DetrendOTA", "FocalPlaneCorrections")  # the options of its frames (image_task)

    def frames(self) -> list:
        """Night-index records of the science exposures used."""
        return [e for n in self.nights for e in night_index(n).select(obstype="OBJECT", binning=self.binning,
                                                                        filter=self.filter)]

    def requires(self):
        # the frames are focal-plane-corrected exposures, whose corrections need this template
        # (FringeTemplate -> CorrectedOTA -> FocalPlaneCorrections -> FringeTemplate without the fringe step)
        opts = self.reduction_options
        return {e.obsid: {ota: image_task(e.obsid, ota, opts) for ota in e.otas} for e in self.frames()}

    def output(self):
        rec = self.frames()[0]
        layout = instrument.layout_for_mjd(rec.mjd).name
        return FitsTarget(str(_cals_path(self.nights[0], f"fringe__{self.filter}__{layout}_bin{self.binning}",
                                         self.identity)))

    def run(self):
        inputs = self.input()
        otas = sorted({ota for per_ota in inputs.values() for ota in per_ota})
        hdus, used = [], 0
        for i, ota in enumerate(otas):
            self.progress(100 * i / len(otas), f"fringe template {self.filter}: OTA{ota:02d}")
            frames, skies, masks = [], [], []
            for obsid, per_ota in inputs.items():
                if ota not in per_ota:
                    continue
                with fits.open(per_ota[ota].path) as hdul:
                    data, bits = hdul[1].data.astype(np.float32), hdul[2].data
                    exptime = float(hdul[1].header.get("EXPTIME", 0.0))
                masked = (bits != 0) | ~np.isfinite(data) | fringe.source_mask(data, binning=_coarse(data.shape))
                sky = fringe.sky_plane(data, masked)
                rate = float(np.median(sky)) / max(exptime, 1e-9) / frame_scale(data.shape) ** 2
                nominal = fringe.NOMINAL_SKY_RATE.get(self.filter)
                if nominal is not None and not fringe.reject_bright_sky([rate], nominal)[0] or not np.all(sky > 0):
                    continue
                frames.append(data)
                skies.append(sky)
                masks.append(masked)
            if not frames:
                continue
            used = max(used, len(frames))
            template = fringe.fringe_template(frames, skies, masks)
            if self.wiener > 0:
                template = fringe.denoise_template(template, threshold=self.wiener, binning=_coarse(template.shape))
            hdu = fits.ImageHDU(template, name=f"OTA{ota:02d}.SCI")
            hdu.header["NFRAMES"] = (len(frames), "frames combined")
            hdus.append(hdu)
        primary = fits.PrimaryHDU()
        primary.header["FILTER"] = self.filter
        primary.header["BINNING"] = self.binning
        primary.header["NCOMBINE"] = (used, "most frames combined in an OTA")
        primary.header["FRNGWNR"] = (self.wiener, "Wiener threshold, x noise power (0: none)")
        paths = [t.path for per_ota in inputs.values() for t in per_ota.values()]
        self.add_provenance(primary.header, {"frame": paths})
        self.output().write_hdulist(fits.HDUList([primary, *hdus]))


class PupilGhostTemplate(PodiTask):
    """Pupil-ghost template of one filter from the night's flats at several rotator angles (docs/calibrations.md,
    'Pupil-ghost templates').

    Per flat: the ghost OTAs (layout list ``pupilghost_otas``) binned in 32-px blocks, positions relative to
    each OTA's optical axis (canned WCS ``CRPIX``), normalised; the centre is searched about the rotated
    canned guess with a generic ring, the profile measured (:func:`podisteps.focalplane.pupilghost.measure_profile`),
    the centre refined with that profile and the profile measured again. The template is the mean profile
    over the flats, rendered radially as ``COMBINED`` (so ``ROTANGLE = 0``: a rotation is a no-op); the
    per-flat profiles are the columns of ``RAWPROFILE`` after the mean. Flats are detrended as the science
    is, without a flat (the gain normalisation matters: cell gain steps would swamp the ring).
    """

    night = luigi.Parameter()
    filter = luigi.Parameter()
    binning = luigi.IntParameter(default=1)
    stage = "cals"
    memory_gb = 2

    def flats(self) -> list:
        """Night-index records of the flats of this filter and binning."""
        return [e for t in ("DFLAT", "TFLAT") for e in night_index(self.night).select(
            obstype=t, binning=self.binning, filter=self.filter)]

    def requires(self):
        flats = self.flats()
        if not flats:
            raise FileNotFoundError(f"PupilGhostTemplate: night {self.night} has no {self.filter} bin{self.binning} "
                                    "flats; give -pupilghost=FILE")
        ghost_otas = instrument.layout_for_mjd(flats[0].mjd).ota_list("pupilghost_otas")
        return {e.obsid: {ota: DetrendOTA(obsid=e.obsid, ota=ota, options=self.options)
                          for ota in ghost_otas if ota in e.otas} for e in flats}

    def output(self):
        level = pupilghost.configured_filter_level(self.filter)
        return FitsTarget(str(_cals_path(self.night, f"pupilghost_template___level_{level}__bin{self.binning}",
                                         self.identity)))

    def run(self):
        inputs = self.input()
        layout = instrument.layout_for_mjd(exposure_record(next(iter(inputs))).mjd).name
        profiles, angles, centres, level, scale, otas = [], [], [], None, 1, set()
        for obsid, per_ota in inputs.items():
            self.progress(90 * len(profiles) / len(inputs), f"ghost template {self.filter}: {obsid}")
            values, x, y, header = _binned_axis_relative({o: t.path for o, t in per_ota.items()})
            scale = header["SCALE"]
            level = level or pupilghost.filter_level(header)
            radii = pupilghost.PROFILE_RADII / scale
            rot = float(header.get("ROTSTART", 0.0))
            sub = slice(None, None, CENTRE_SUBSAMPLE)
            centre = pupilghost.fit_ghost_centre(
                values[sub], x[sub], y[sub], pupilghost.GENERIC_PROFILE[0] / scale, pupilghost.GENERIC_PROFILE[1],
                guess=pupilghost.centre_guess(layout, rot, scale=scale), search_px=pupilghost.CENTRE_SEARCH / scale)
            profile = pupilghost.measure_profile(values, x, y, centre, radii)
            centre = pupilghost.fit_ghost_centre(values[sub], x[sub], y[sub], radii, np.nan_to_num(profile),
                                                 guess=centre, search_px=pupilghost.CENTRE_SEARCH / 6 / scale)
            profiles.append(pupilghost.measure_profile(values, x, y, centre, radii))
            angles.append(rot), centres.append(centre), otas.update(per_ota)
        self.output().write_hdulist(self._hdulist(np.array(profiles), angles, centres, level, scale, sorted(otas),
                                                  [t.path for per_ota in inputs.values() for t in per_ota.values()]))

    def _hdulist(self, profiles, angles, centres, level, scale, otas, paths) -> fits.HDUList:
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(profiles, axis=0))
        radii = pupilghost.PROFILE_RADII / scale
        half = int(np.ceil(radii[-1]))
        combined = pupilghost.radial_template(radii, mean, (2 * half + 1, 2 * half + 1), (half, half))
        primary = fits.PrimaryHDU()
        primary.header["FILTER"] = self.filter
        primary.header["LEVEL"] = (level, "filter-arm level")
        primary.header["BINNING"] = self.binning
        self.add_provenance(primary.header, {"flat": paths})
        comb = fits.ImageHDU(combined, name="COMBINED")
        comb.header["OTAORDER"] = ";".join(f"OTA{o:02d}.SCI" for o in otas)
        comb.header["ROTANGLE"] = (0.0, "rotator angle of the template, deg")
        comb.header["RNDANGLE"] = 0
        comb.header["PGSCALE"] = (scale, "full-size bin1 px per template px")
        for angle, (cx, cy) in zip(angles, centres):
            tag = f"{int(round(angle)) % 1000:03d}"
            comb.header[f"CNTRV{tag}"] = (f"{cx * scale:.1f};{cy * scale:.1f}", "ghost centre - axis, px")
        table = np.column_stack([mean, profiles.T]).astype(np.float32)
        out = [primary, comb]
        for name in ("PROFILE", "RAWPROFILE"):
            hdu = fits.ImageHDU(table, name=name)
            hdu.header["CRVAL1"] = float(pupilghost.PROFILE_RADII[0])
            hdu.header["CD1_1"] = float(np.diff(pupilghost.PROFILE_RADII)[0])
            hdu.header["CTYPE1"] = "RADIUS"
            out.append(hdu)
        return fits.HDUList(out)


def _binned_axis_relative(paths: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Block medians of some OTAs of one exposure, x/y relative to each OTA's optical axis, normalised.

    Returns values, x, y (frame px) and a header-like dict (``SCALE`` and the first OTA's cards).
    """
    parts, header = [], None
    for ota, path in sorted(paths.items()):
        with fits.open(path) as hdul:
            data, hdr = hdul[1].data, hdul[1].header
            scale = frame_scale(data.shape)
            values, x, y = block_median(data, max(1, int(PROFILE_BLOCK_PX // scale)))
        axis_x, axis_y = float(hdr["CRPIX1"]) - 1.0, float(hdr["CRPIX2"]) - 1.0
        parts.append((values, x - axis_x, y - axis_y))
        header = header or {**dict(hdr), "SCALE": scale}
    values, x, y = (np.concatenate(a) for a in zip(*parts))
    return values / np.median(values), x, y, header


#: Task families whose options shape the focal-plane products.
FOCAL_FAMILIES = ["DetrendOTA", "FocalPlaneCorrections"]


def catalog_tasks():
    """``workflows.astrometry``, imported on first use: it imports this module (``OTACatalog`` requires
    ``CorrectedOTA``), and without a focal-plane correction :func:`image_task` names its ``OTACatalog``."""
    from . import astrometry

    return astrometry


def focal_correction(options: ReductionOptions) -> bool:
    """Whether an exposure reduced with ``options`` takes a focal-plane correction (``-fringe``, ``-pupilghost``)."""
    return bool(options.fringe or options.pupilghost)


def catalog_options(options: ReductionOptions) -> dict:
    """The ``options`` of the OTACatalog tasks that detrend an exposure's OTAs and catalogue them in one process.

    Those of the exposure's FixWCS when the reduction makes catalogues (``-fixwcs``, ``-photcalib``,
    ``-autophotflat``) of detrended OTAs (no focal-plane correction); ``{}`` otherwise (DetrendOTA detrends).
    """
    if focal_correction(options) or not (options.fixwcs or options.photcalib or options.autophotflat):
        return {}
    return catalog_tasks().FixWCS.options_for(options.replace(fixwcs=True))


def image_task(obsid: str, ota: int, options: ReductionOptions) -> PodiTask:
    """The task whose image catalogues and the final MEF read: CorrectedOTA with a focal-plane correction on;
    else, when the reduction makes catalogues, the OTACatalog that detrends the OTA and catalogues it in one
    process (:func:`catalog_options`; the image is its output's ``detrended`` target, :func:`image_target`);
    else DetrendOTA (the correction tasks are then skipped)."""
    if focal_correction(options):
        return CorrectedOTA.with_options(options, obsid=obsid, ota=ota)
    catalogs = catalog_options(options)
    if catalogs:
        return catalog_tasks().OTACatalog(obsid=obsid, ota=ota, options=catalogs)
    return DetrendOTA.with_options(options, obsid=obsid, ota=ota)


def image_target(output):
    """The image among the outputs of an :func:`image_task`: an OTACatalog's ``detrended`` target, else the output
    itself (a :class:`workflows.base.CheckpointTarget`)."""
    return output["detrended"] if isinstance(output, dict) else output


def _template_requirements(record, options) -> dict:
    """``{"fringe": task, "pupilghost": task}`` for the templates that come from template tasks."""
    sources = {"fringe": fringe_source(record, options), "pupilghost": pupilghost_source(record, options)}
    return {k: s.task for k, s in sources.items() if s is not None and s.task is not None}


def _template_path(task: PodiTask, kind: str):
    """Path of the fringe or ghost template an exposure uses (external file or template-task product)."""
    source = (fringe_source if kind == "fringe" else pupilghost_source)(task.record, task.reduction_options)
    if source is None:
        return None
    return source.path if source.path is not None else task.input()[kind].path


class _FocalTask(PodiTask):
    obsid = luigi.Parameter()
    option_families = tuple(FOCAL_FAMILIES)

    @property
    def record(self):
        """The exposure's night-index record."""
        return exposure_record(self.obsid)

    #: The options of the OTACatalog tasks that detrend this exposure's OTAs (:func:`catalog_options`, given by
    #: CollectCells), ``{}`` when DetrendOTA does. Not significant: it names the task that makes the same files.
    catalogs = luigi.DictParameter(default={}, significant=False, visibility=ParameterVisibility.HIDDEN)

    def _detrend(self, ota: int) -> PodiTask:
        """The task that detrends OTA ``ota``: the OTACatalog of :attr:`catalogs`, else DetrendOTA."""
        if self.catalogs:
            return catalog_tasks().OTACatalog(obsid=self.obsid, ota=ota, options=self.catalogs)
        return DetrendOTA.with_options(self.reduction_options, obsid=self.obsid, ota=ota)

    def external_inputs(self):
        opts = self.reduction_options
        sources = [fringe_source(self.record, opts), pupilghost_source(self.record, opts)]
        return [s.path for s in sources if s is not None and s.path is not None]


class FocalPlaneSamples(_FocalTask):
    """The small measurements the focal-plane fit reads (fringe amplitudes, binned sky, sky boxes) of every OTA of
    one exposure, in one file (:func:`podisteps.focalplane.focalfit.exposure_samples`)."""

    stage = "fpsamples"

    def requires(self):
        req = {"detrend": {ota: self._detrend(ota) for ota in self.record.otas}}
        fringe_task = _template_requirements(self.record, self.reduction_options).get("fringe")
        return req | ({"fringe": fringe_task} if fringe_task is not None else {})

    def external_inputs(self):
        fringe_file = fringe_source(self.record, self.reduction_options)
        files = [fringe_file.path] if fringe_file is not None and fringe_file.path is not None else []
        return files + (self._vector_files() if self.reduction_options.fringe else [])

    def _vector_files(self) -> list:
        """The fringe-vector files of the exposure's OTAs that have one."""
        vectors = (fringe_vector_file(self.record, self.reduction_options, ota) for ota in self.record.otas)
        return list(dict.fromkeys(v for v in vectors if v is not None))

    def output(self):
        return CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        template_path = _template_path(self, "fringe")
        detrended = {ota: image_target(t).path for ota, t in self.input()["detrend"].items()}
        per_ota = {}
        for i, (ota, path) in enumerate(detrended.items()):
            self.progress(100 * i / len(detrended), f"focal-plane samples: OTA{ota:02d}")
            per_ota[ota] = self._ota_samples(ota, path, template_path)
        used = {"detrended": list(detrended.values())}
        if template_path is not None:
            vectors = self._vector_files()
            used |= {"fringe": template_path} | ({"fringevectors": vectors} if vectors else {})
        hdul = focalfit.exposure_samples(per_ota)
        self.add_provenance(hdul[0].header, used)
        self.output().write_hdulist(hdul)

    def _ota_samples(self, ota: int, path: str, template_path) -> fits.HDUList:
        """:func:`podisteps.focalplane.focalfit.ota_samples` of one OTA: its pixels (64 MB full size) are read only
        for a fringe template or the ghost bins, and are released on return (one OTA image at a time)."""
        opts = self.reduction_options
        with fits.open(path, mode="denywrite") as hdul:
            header, boxes = hdul[1].header, Table(hdul["SKYBOXES"].data)
            # the image only for a fringe template or the ghost bins: the sky boxes are a table
            pixels = template_path is not None or bool(opts.pupilghost)
            data = hdul[1].data.astype(np.float32) if pixels else None
            if pixels:
                release_pages(hdul[1].data)
        scale = frame_scale((header["NAXIS2"], header["NAXIS1"]))
        fringe_rows = None
        if template_path is not None:
            vectors_path = fringe_vector_file(self.record, opts, ota)
            fringe_rows = focalfit.fringe_samples(data, self._fringe_template(template_path, ota), vectors_path and
                                                  fringe.fringe_vectors_from_regions(vectors_path, scale=scale),
                                                  boxes, scale=scale)
        return focalfit.ota_samples(data, header, boxes, ota=ota, scale=scale, fringe_rows=fringe_rows,
                                    pupilghost_bins=bool(opts.pupilghost))

    @staticmethod
    def _fringe_template(template_path, ota: int) -> np.ndarray | None:
        """OTA ``ota`` of the fringe template, float32 (None if the template lacks it)."""
        with fits.open(template_path) as hdul:
            name = f"OTA{ota:02d}.SCI"
            return hdul[name].data.astype(np.float32) if name in hdul else None


class FocalPlaneCorrections(_FocalTask):
    """Global sky level, fringe scale and pupil-ghost scale of one exposure, from FocalPlaneSamples only."""

    stage = "focalplane"

    def requires(self):
        opts = self.reduction_options
        samples = FocalPlaneSamples.with_options(opts, obsid=self.obsid, catalogs=self.catalogs)
        ghost_task = _template_requirements(self.record, opts).get("pupilghost")
        return {"samples": samples} | ({"pupilghost": ghost_task} if ghost_task is not None else {})

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        samples_path = self.input()["samples"].path
        with fits.open(samples_path) as hdul:
            samples = focalfit.read_exposure_samples(hdul)
        used = {"samples": samples_path}
        ghost_path = _template_path(self, "pupilghost")
        layout = instrument.layout_for_mjd(self.record.mjd)
        with ExitStack() as stack:
            template = None
            if ghost_path is not None:
                scale = int(next(iter(samples.values()))["PRIMARY"]["SCALE"])
                template = read_pupilghost_template(stack.enter_context(fits.open(ghost_path, memmap=True)),
                                                    data_scale=scale)
                used["pupilghost"] = ghost_path
            hdul = focalfit.fit_focal_plane(samples, ghost_template=template, layout=layout.name,
                                            sky_otas=layout.photometry_otas(self.record.filter),
                                            centre_subsample=CENTRE_SUBSAMPLE)
        self.add_provenance(hdul[0].header, used)
        self.output().write_hdulist(hdul)


class CorrectedOTA(_FocalTask):
    """One OTA minus fringe template x FRNG_SCL and ghost template x PUPLGFAC (docs/reduction-steps.md, 'Subtracting the
    focal-plane templates'), DetrendOTA layout."""

    ota = luigi.IntParameter()
    stage = "corrected"
    memory_gb = 1

    def requires(self):
        opts = self.reduction_options
        return {"detrend": self._detrend(self.ota),
                "corrections": FocalPlaneCorrections.with_options(opts, obsid=self.obsid),
                **_template_requirements(self.record, opts)}

    def output(self):
        return CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

    def run(self):
        inputs = self.input()
        used = {"detrended": inputs["detrend"].path, "focalplane": inputs["corrections"].path}
        with fits.open(inputs["corrections"].path) as hdul:
            fit = hdul[0].header
            centres = ({int(r["OTA"]): (float(r["PGCNTR_X"]), float(r["PGCNTR_Y"])) for r in hdul["PGCENTRE"].data}
                       if "PGCENTRE" in hdul else {})
        with fits.open(inputs["detrend"].path) as hdul:
            sci = hdul[1].data.astype(np.float32)
            header, mask = hdul[1].header.copy(), hdul[2].data
            mask_header, boxes = hdul[2].header.copy(), hdul["SKYBOXES"].copy()
        paths = {"fringe": _template_path(self, "fringe"), "pupilghost": _template_path(self, "pupilghost")}
        with ExitStack() as stack:
            templates = self._templates(stack, paths, sci.shape, fit, centres)
            sci, header, applied = focalfit.correct_ota(sci, header, fit, centres, ota=self.ota, **templates)
        used |= {k: paths[k] for k in applied}
        primary = fits.PrimaryHDU()
        self.add_provenance(primary.header, used)
        self.output().write_hdulist(fits.HDUList([
            primary, fits.ImageHDU(sci, header=header),
            fits.CompImageHDU(mask, header=mask_header, compression_type="RICE_1"), boxes]))

    def _templates(self, stack: ExitStack, paths: dict, shape: tuple, fit: fits.Header, centres: dict) -> dict:
        """``fringe_template`` / ``ghost_template`` keywords of :func:`podisteps.focalplane.focalfit.correct_ota`: the
        templates that apply to this OTA, read from ``paths`` (files kept open by ``stack``)."""
        out = {}
        name = f"OTA{self.ota:02d}.SCI"
        if paths["fringe"] is not None and fit["FRNG_SCL"] > 0:
            hdul = stack.enter_context(fits.open(paths["fringe"]))
            out["fringe_template"] = hdul[name].data if name in hdul else None
        if paths["pupilghost"] is not None and focalfit.ghost_applies(fit, centres, self.ota):
            hdul = stack.enter_context(fits.open(paths["pupilghost"], memmap=True))
            out["ghost_template"] = read_pupilghost_template(hdul, data_scale=frame_scale(shape))
        return out
