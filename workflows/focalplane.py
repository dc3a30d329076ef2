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

import math

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from podisteps import fringe, instrument, pupilghost
from podisteps.stats import block_median
from podisteps.background import sky_statistics

from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .detrend import DetrendOTA
from .saturation import exposure_record
from .fptemplates import (CENTRE_SUBSAMPLE, fringe_source, fringe_vector_file, frame_scale,
                          pupilghost_source, read_pupilghost_template)
from .options import ReductionOptions
from .paths import checkpoint_path

__all__ = ["FocalPlaneSamples", "FocalPlaneCorrections", "CorrectedOTA", "image_task", "FOCAL_FAMILIES"]

#: Task families whose options shape the focal-plane products.
FOCAL_FAMILIES = ["DetrendOTA", "FocalPlaneCorrections"]
#: Block side of the binned sky for the ghost fit, full-size bin1 px.
PG_BLOCK_PX = 64
#: Written for a scale that was not fitted (QuickReduce's convention).
NOT_DONE = -1.0


def image_task(obsid: str, ota: int, options: ReductionOptions) -> PodiTask:
    """The image catalogues and the final MEF should read: CorrectedOTA with a focal-plane correction on,
    else DetrendOTA (the correction tasks are then skipped)."""
    if options.fringe or options.pupilghost:
        return CorrectedOTA(obsid=obsid, ota=ota, options=options_param(options, FOCAL_FAMILIES))
    return DetrendOTA(obsid=obsid, ota=ota, options=options_param(options, ["DetrendOTA"]))


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

    @property
    def record(self):
        """The exposure's night-index record."""
        return exposure_record(self.obsid)

    def _detrend(self, ota: int) -> DetrendOTA:
        return DetrendOTA(obsid=self.obsid, ota=ota, options=options_param(self.reduction_options, ["DetrendOTA"]))

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
        primary = fits.PrimaryHDU()
        ph = primary.header
        ph["OTA"] = self.ota
        ph["SCALE"] = (scale, "full-size bin1 px per px")
        ph["AXIS_X"] = (float(header.get("CRPIX1", math.nan)) - 1.0, "optical axis x, 0-based px")
        ph["AXIS_Y"] = (float(header.get("CRPIX2", math.nan)) - 1.0, "optical axis y, 0-based px")
        ph["ROTSTART"] = float(header.get("ROTSTART", 0.0))
        ph["GUIDEOTA"] = (instrument.is_guide_ota(str(header.get("CELLMODE", ""))), "OTA has video cells")
        for key in ("PGCNTR_X", "PGCNTR_Y"):
            if key in header:
                ph[key] = (float(header[key]), "ghost centre from the flat, px")
        hdus, used = [primary], {"detrended": path}
        template_path = _template_path(self, "fringe")
        vectors_path = fringe_vector_file(self.record, opts, self.ota)
        if template_path is not None:
            rows, boxes["FRNG_T"] = self._fringe(data, scale, boxes, template_path, vectors_path)
            hdus.append(fits.BinTableHDU(Table(rows, names=fringe.FRINGE_COLUMNS), name="FRINGE"))
            used |= {"fringe": template_path} | ({"fringevectors": vectors_path} if vectors_path else {})
        if opts.pupilghost:
            values, x, y = block_median(data, max(1, PG_BLOCK_PX // scale))
            hdus.append(fits.BinTableHDU(Table([x, y, values], names=("X", "Y", "SKY")), name="PGBINS"))
        hdus.append(fits.BinTableHDU(boxes, name="SKYBOXES"))
        for key, value, comment in provenance_cards(self, used):
            ph[key] = (value, comment)
        self.output().write_hdulist(fits.HDUList(hdus))

    def _fringe(self, data, scale, boxes, template_path, vectors_path) -> tuple[np.ndarray, np.ndarray]:
        """Per-vector amplitudes and the template's box medians at the sky boxes (zeros: no template)."""
        with fits.open(template_path) as hdul:
            name = f"OTA{self.ota:02d}.SCI"
            template = hdul[name].data.astype(np.float32) if name in hdul else None
        if template is None or template.shape != data.shape:
            return np.empty((0, len(fringe.FRINGE_COLUMNS))), np.zeros(len(boxes))
        rows = np.empty((0, len(fringe.FRINGE_COLUMNS)))
        if vectors_path is not None:
            vectors = fringe.fringe_vectors_from_regions(vectors_path, scale=scale)
            rows = fringe.fringe_amplitudes(data, template, vectors, scale=scale)
        half = max(4, 60 // scale) // 2  # the DetrendOTA sky box
        at_boxes = fringe.box_medians(template, np.asarray(boxes["X"], float), np.asarray(boxes["Y"], float), half)
        return rows, np.nan_to_num(at_boxes)


class FocalPlaneCorrections(_FocalTask):
    """Global sky level, fringe scale and pupil-ghost scale of one exposure, from FocalPlaneSamples only."""

    stage = "focalplane"
    option_families = tuple(FOCAL_FAMILIES)

    def requires(self):
        opts = self.reduction_options
        samples = {ota: FocalPlaneSamples(obsid=self.obsid, ota=ota, options=options_param(opts, FOCAL_FAMILIES))
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
        primary = fits.PrimaryHDU()
        ph = primary.header
        frng_scl, frng_std, nvec = self._fringe_scale(samples)
        ph["FRNG_SCL"] = (frng_scl, "fringe scale, ADU (-1: not done)")
        ph["FRNG_STD"] = (frng_std, "std of the clipped vector scales")
        ph["FRNG_NV"] = (nvec, "fringe vectors measured")
        used = {"samples": [t.path for t in self.input()["samples"].values()]}
        ghost_path = _template_path(self, "pupilghost")
        centres, ghost_at_boxes = {}, {}
        if ghost_path is not None:
            with fits.open(ghost_path, memmap=True) as hdul:
                scale = int(next(iter(samples.values()))["PRIMARY"]["SCALE"])
                template = read_pupilghost_template(hdul, data_scale=scale)
                factor, background, offset, centres, ghost_at_boxes = self._ghost(samples, template)
            ph["PUPLGFAC"] = (factor, "pupil-ghost scale, ADU (-1: not done)")
            ph["PGBGRND"] = (background, "background of the ghost fit, ADU")
            ph["PGOFFS_X"] = (offset[0], "ghost centre - optical axis, x px")
            ph["PGOFFS_Y"] = (offset[1], "ghost centre - optical axis, y px")
            used["pupilghost"] = ghost_path
        else:
            ph["PUPLGFAC"] = (NOT_DONE, "pupil-ghost scale (-1: not done)")
        sky_hdu = self._sky(ph, samples, ghost_at_boxes)
        for key, value, comment in provenance_cards(self, used):
            ph[key] = (value, comment)
        hdus = [primary, sky_hdu]
        if centres:
            hdus.append(fits.BinTableHDU(Table(rows=[(o, c[0], c[1]) for o, c in sorted(centres.items())],
                                               names=("OTA", "PGCNTR_X", "PGCNTR_Y"), dtype=("i2", "f8", "f8")),
                                         name="PGCENTRE"))
        self.output().write_hdulist(fits.HDUList(hdus))

    @staticmethod
    def _fringe_scale(samples) -> tuple[float, float, int]:
        rows = [np.asarray(s["FRINGE"].as_array().tolist(), float).reshape(-1, len(fringe.FRINGE_COLUMNS))
                for s in samples.values() if "FRINGE" in s and not s["PRIMARY"]["GUIDEOTA"]]
        if not rows:
            return NOT_DONE, NOT_DONE, 0
        scale, std = fringe.fringe_scale(rows)
        n = sum(len(r) for r in rows)
        return (scale, std, n) if math.isfinite(scale) else (NOT_DONE, NOT_DONE, n)

    def _ghost(self, samples, template):
        """Centre (fitted unless every ghost OTA has the flat's PGCNTR), scale, and the template at the sky boxes."""
        ghost = {o: s for o, s in samples.items() if o in template.otas and "PGBINS" in s}
        if not ghost:
            return NOT_DONE, NOT_DONE, (math.nan, math.nan), {}, {}
        first = next(iter(ghost.values()))["PRIMARY"]
        rot, scale = float(first["ROTSTART"]), int(first["SCALE"])
        axes = {o: (s["PRIMARY"]["AXIS_X"], s["PRIMARY"]["AXIS_Y"]) for o, s in ghost.items()}
        if all("PGCNTR_X" in s["PRIMARY"] for s in ghost.values()):
            centres = {o: (s["PRIMARY"]["PGCNTR_X"], s["PRIMARY"]["PGCNTR_Y"]) for o, s in ghost.items()}
            offset = (math.nan, math.nan)
        else:
            pooled = [(np.asarray(s["PGBINS"]["SKY"]), np.asarray(s["PGBINS"]["X"]) - axes[o][0],
                       np.asarray(s["PGBINS"]["Y"]) - axes[o][1]) for o, s in ghost.items()]
            values, x, y = (np.concatenate(a) for a in zip(*pooled))
            layout = instrument.layout_for_mjd(self.record.mjd).name
            sub = slice(None, None, CENTRE_SUBSAMPLE)
            offset = pupilghost.fit_ghost_centre(values[sub], x[sub], y[sub], template.profile_r, template.profile_v,
                                                 guess=pupilghost.centre_guess(layout, rot, scale=scale),
                                                 search_px=pupilghost.CENTRE_SEARCH / scale)
            centres = {o: (axes[o][0] + offset[0], axes[o][1] + offset[1]) for o in ghost}
        angle = rot - template.rotangle

        def at(ota, x, y):
            return pupilghost.template_values(template.combined, np.asarray(x, float), np.asarray(y, float),
                                              centres[ota], angle=angle)

        rows = [np.column_stack([np.asarray(s["PGBINS"]["X"]) - axes[o][0], np.asarray(s["PGBINS"]["Y"]) - axes[o][1],
                                 np.asarray(s["PGBINS"]["SKY"]), at(o, s["PGBINS"]["X"], s["PGBINS"]["Y"])])
                for o, s in ghost.items()]
        factor, background = pupilghost.fit_pupilghost_scale(rows)
        if not math.isfinite(factor):
            factor = background = NOT_DONE
        at_boxes = {o: at(o, s["SKYBOXES"]["X"], s["SKYBOXES"]["Y"]) for o, s in ghost.items()}
        return factor, background, offset, centres, at_boxes

    def _sky(self, ph, samples, ghost_at_boxes) -> fits.BinTableHDU:
        """Global sky over the filter's photometry OTAs (guide OTAs left out), boxes corrected (spec §4.2)."""
        wanted = instrument.layout_for_mjd(self.record.mjd).photometry_otas(self.record.filter)
        frng = max(ph["FRNG_SCL"], 0.0)
        ghost = max(ph["PUPLGFAC"], 0.0)
        tables = []
        for ota in wanted:
            s = samples.get(ota)
            if s is None or s["PRIMARY"]["GUIDEOTA"] or not len(s["SKYBOXES"]):
                continue
            boxes = s["SKYBOXES"]
            corrected = np.asarray(boxes["INTENSITY"], float)
            if "FRNG_T" in boxes.colnames:
                corrected = corrected - frng * np.asarray(boxes["FRNG_T"], float)
            if ota in ghost_at_boxes:
                corrected = corrected - ghost * ghost_at_boxes[ota]
            tables.append(Table({"OTA": np.full(len(boxes), ota, np.int16), "X": boxes["X"], "Y": boxes["Y"],
                                 "INTENSITY": boxes["INTENSITY"], "CORRECTED": corrected.astype(np.float32)}))
        table = vstack(tables) if tables else Table(names=("OTA", "X", "Y", "INTENSITY", "CORRECTED"))
        stats = sky_statistics(np.asarray(table["CORRECTED"], float))
        for key, value in stats.items():
            ph[key] = (value, "global sky after fringe and ghost, ADU")
        hdu = fits.table_to_hdu(table)
        hdu.name = "SKYLEVEL"
        for key, value in stats.items():
            hdu.header[key] = (value, "sky statistics, ADU")
        return hdu


class CorrectedOTA(_FocalTask):
    """One OTA minus fringe template x FRNG_SCL and ghost template x PUPLGFAC (spec §3.1), DetrendOTA layout."""

    ota = luigi.IntParameter()
    stage = "corrected"
    memory_gb = 1

    def requires(self):
        opts = self.reduction_options
        return {"detrend": self._detrend(self.ota),
                "corrections": FocalPlaneCorrections(obsid=self.obsid, options=options_param(opts, FOCAL_FAMILIES)),
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
        name = f"OTA{self.ota:02d}.SCI"
        fringe_path = _template_path(self, "fringe")
        if fringe_path is not None and fit["FRNG_SCL"] > 0:
            with fits.open(fringe_path) as hdul:
                if name in hdul:
                    sci -= np.nan_to_num(hdul[name].data.astype(np.float32)) * np.float32(fit["FRNG_SCL"])
                    used["fringe"] = fringe_path
        header["FRNG_SCL"] = (fit["FRNG_SCL"], "fringe scale subtracted (-1: none)")
        ghost_path = _template_path(self, "pupilghost")
        header["PGAFCTD"] = (False, "pupil ghost subtracted")
        if ghost_path is not None and fit["PUPLGFAC"] > 0 and self.ota in centres:
            with fits.open(ghost_path, memmap=True) as hdul:
                template = read_pupilghost_template(hdul, data_scale=frame_scale(sci.shape))
                placed = pupilghost.place_template(template.combined, sci.shape, centres[self.ota],
                                                   angle=float(header.get("ROTSTART", 0.0)) - template.rotangle)
            sci -= placed * np.float32(fit["PUPLGFAC"])
            header["PGAFCTD"] = True
            header["PGCNTR_X"], header["PGCNTR_Y"] = (centres[self.ota][0], "ghost centre x, px"), (
                centres[self.ota][1], "ghost centre y, px")
            used["pupilghost"] = ghost_path
        header["PUPLGFAC"] = (fit["PUPLGFAC"], "pupil-ghost scale subtracted (-1: none)")
        primary = fits.PrimaryHDU()
        for key, value, comment in provenance_cards(self, used):
            primary.header[key] = (value, comment)
        self.output().write_hdulist(fits.HDUList([
            primary, fits.ImageHDU(sci, header=header),
            fits.CompImageHDU(mask, header=mask_header, compression_type="RICE_1"), boxes]))
