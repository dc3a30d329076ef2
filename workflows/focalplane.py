"""Focal-plane corrections: ``FocalPlaneSamples``, ``FocalPlaneCorrections`` and ``CorrectedOTA`` (issue 9).

QUICKREDUCE_SPEC.md §3 steps 14 and 23, §3.1, §4.2-4.4. The exposure-wide fit reads only small per-OTA
measurements, never images::

    FocalPlaneSamples     <work>/<night>/<obsid>/fpsamples/<obsid>.<OTA>.fpsamples.<id>.fits
        PRIMARY   OTA, SCALE (full-size px per px), AXIS_X/Y (optical axis, 0-based frame px, from CRPIX),
                  ROTSTART, GUIDEOTA, [PGCNTR_X/Y when the detrended header has the flat's centre]
        FRINGE    per fringe vector: QuickReduce's 7 columns (podisteps.fringe.FRINGE_COLUMNS)   [-fringe]
        PGBINS    X, Y, SKY: 64-px block medians of the detrended OTA                            [-pupilghost]
        SKYBOXES  the DetrendOTA sky boxes, plus FRNG_T (fringe template in each box)            [-fringe]
    FocalPlaneCorrections <work>/<night>/<obsid>/focalplane/<obsid>.focalplane.<id>.fits
        PRIMARY   SKYLEVEL ... (spec §4.2 keys), FRNG_SCL, FRNG_STD, FRNG_NV, PUPLGFAC, PGBGRND, PGOFFS_X/Y
        SKYLEVEL  the sky boxes used: OTA, X, Y, INTENSITY, CORRECTED
        PGCENTRE  OTA, PGCNTR_X, PGCNTR_Y (ghost centre per ghost OTA, frame px)                 [-pupilghost]
    CorrectedOTA          <work>/<night>/<obsid>/corrected/<obsid>.<OTA>.corrected.<id>.fits
        the DetrendOTA layout (PRIMARY, OTAxy.SCI, OTAxy.MASK, SKYBOXES) minus template x scale

The tasks open their inputs and write their products; the measurements, the fit and the correction are the
pure composites of :mod:`podisteps.focalfit` (``ota_samples``, ``fit_focal_plane``, ``correct_ota``).

Departures from QuickReduce, on purpose:

- the global sky uses the filter's photometry OTAs of the layout (QuickReduce's [bug] always took the
  central 3x3), guide OTAs left out, and is measured on the sky boxes *after* subtracting fringe x scale and
  ghost x scale at each box (QuickReduce measured before: the ghost, a one-sided +2-3 % ring, biased it);
- the ghost scale is fitted on 64-px block medians of every ghost OTA (rather than 750 random boxes), with
  a sky plane (:func:`podisteps.pupilghost.fit_pupilghost_scale`); without the flat's ``PGCNTR_X/Y`` the ghost
  centre is fitted once for the exposure on the pooled blocks of all ghost OTAs, relative to the optical
  axis, which the ghost follows.
"""

from __future__ import annotations

from contextlib import ExitStack

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps import focalfit, fringe, instrument

from .base import FitsTarget, PodiTask
from .detrend import DetrendOTA
from .saturation import exposure_record
from .fptemplates import (CENTRE_SUBSAMPLE, fringe_source, fringe_vector_file, frame_scale,
                          pupilghost_source, read_pupilghost_template)
from .options import ReductionOptions
from .paths import checkpoint_path

__all__ = ["FocalPlaneSamples", "FocalPlaneCorrections", "CorrectedOTA", "image_task", "FOCAL_FAMILIES"]

#: Task families whose options shape the focal-plane products.
FOCAL_FAMILIES = ["DetrendOTA", "FocalPlaneCorrections"]


def image_task(obsid: str, ota: int, options: ReductionOptions) -> PodiTask:
    """The image catalogues and the final MEF should read: CorrectedOTA with a focal-plane correction on,
    else DetrendOTA (the correction tasks are then skipped)."""
    if options.fringe or options.pupilghost:
        return CorrectedOTA.with_options(options, obsid=obsid, ota=ota)
    return DetrendOTA.with_options(options, obsid=obsid, ota=ota)


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

    def _detrend(self, ota: int) -> DetrendOTA:
        return DetrendOTA.with_options(self.reduction_options, obsid=self.obsid, ota=ota)

    def external_inputs(self):
        opts = self.reduction_options
        sources = [fringe_source(self.record, opts), pupilghost_source(self.record, opts)]
        return [s.path for s in sources if s is not None and s.path is not None]


class FocalPlaneSamples(_FocalTask):
    """The small per-OTA measurements the focal-plane fit reads (fringe amplitudes, binned sky, sky boxes)."""

    ota = luigi.IntParameter()
    stage = "fpsamples"

    def requires(self):
        req = {"detrend": self._detrend(self.ota)}
        fringe_task = _template_requirements(self.record, self.reduction_options).get("fringe")
        return req | ({"fringe": fringe_task} if fringe_task is not None else {})

    def external_inputs(self):
        vectors = fringe_vector_file(self.record, self.reduction_options, self.ota)
        fringe_file = fringe_source(self.record, self.reduction_options)
        files = [fringe_file.path] if fringe_file is not None and fringe_file.path is not None else []
        return files + ([vectors] if vectors is not None and self.reduction_options.fringe else [])

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

    def run(self):
        opts = self.reduction_options
        path = self.input()["detrend"].path
        with fits.open(path) as hdul:
            data, header = hdul[1].data.astype(np.float32), hdul[1].header
            boxes = Table(hdul["SKYBOXES"].data)
        scale = frame_scale(data.shape)
        used, fringe_rows = {"detrended": path}, None
        template_path = _template_path(self, "fringe")
        vectors_path = fringe_vector_file(self.record, opts, self.ota)
        if template_path is not None:
            fringe_rows = focalfit.fringe_samples(data, self._fringe_template(template_path), vectors_path and
                                                  fringe.fringe_vectors_from_regions(vectors_path, scale=scale),
                                                  boxes, scale=scale)
            used |= {"fringe": template_path} | ({"fringevectors": vectors_path} if vectors_path else {})
        hdul = focalfit.ota_samples(data, header, boxes, ota=self.ota, scale=scale, fringe_rows=fringe_rows,
                                    pupilghost_bins=bool(opts.pupilghost))
        self.add_provenance(hdul[0].header, used)
        self.output().write_hdulist(hdul)

    def _fringe_template(self, template_path) -> np.ndarray | None:
        """This OTA of the fringe template, float32 (None if the template lacks it)."""
        with fits.open(template_path) as hdul:
            name = f"OTA{self.ota:02d}.SCI"
            return hdul[name].data.astype(np.float32) if name in hdul else None


class FocalPlaneCorrections(_FocalTask):
    """Global sky level, fringe scale and pupil-ghost scale of one exposure, from FocalPlaneSamples only."""

    stage = "focalplane"

    def requires(self):
        opts = self.reduction_options
        samples = {ota: FocalPlaneSamples.with_options(opts, obsid=self.obsid, ota=ota)
                   for ota in self.record.otas}
        ghost_task = _template_requirements(self.record, opts).get("pupilghost")
        return {"samples": samples} | ({"pupilghost": ghost_task} if ghost_task is not None else {})

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        samples = {}
        for ota, target in self.input()["samples"].items():
            with fits.open(target.path) as hdul:
                samples[ota] = {hdu.name: (Table(hdu.data) if hdu.name != "PRIMARY" else hdu.header.copy())
                                for hdu in hdul}
        used = {"samples": [t.path for t in self.input()["samples"].values()]}
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
    """One OTA minus fringe template x FRNG_SCL and ghost template x PUPLGFAC (spec §3.1), DetrendOTA layout."""

    ota = luigi.IntParameter()
    stage = "corrected"
    memory_gb = 1

    def requires(self):
        opts = self.reduction_options
        return {"detrend": self._detrend(self.ota),
                "corrections": FocalPlaneCorrections.with_options(opts, obsid=self.obsid),
                **_template_requirements(self.record, opts)}

    def output(self):
        return FitsTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

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
        """``fringe_template`` / ``ghost_template`` keywords of :func:`podisteps.focalfit.correct_ota`: the
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
