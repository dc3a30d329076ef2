"""Master bias, dark and flat from a night's own raw frames (docs/masters.md).

```
MasterOTA(night, kind, binning, filter, ota)     one OTA of a master, combined from DetrendOTA checkpoints
FlatLevel(obsid)                                 the normalisation level of one flat frame (small JSON)
MasterCalibration(night, kind, binning, filter)  the assembled MEF with QuickReduce's name, in <work>/<night>/cals/
```

Each input frame is detrended by ``DetrendOTA`` to the right level: biases with overscan and crosstalk;
darks also minus the night's master bias and divided by EXPMEAS (ADU/s); flats also minus bias and dark
and divided by the frame's level over the layout's normalisation OTAs. Frames are combined per pixel with
QuickReduce's sigma-clipped mean (docs/masters.md, 'Combining frames'), reading row blocks of the checkpoints
(FITS sections: no frame is read or mapped whole).
Flats below 0.1 are NaN.

Ghost-free flats (``-flatghost``, docs/masters.md, 'Flat' "optional pupil-ghost removal"): the pupil ghost of each flat
frame is fitted by ``FocalPlaneCorrections`` of that frame, exactly as for a science exposure with
``-pupilghost`` (centre on the pooled ghost OTAs, then the scale ``PUPLGFAC``), on the frame detrended as the
science is without a flat (gain-normalised: QuickReduce fitted the relative-gain-corrected flat). In flat
units the ghost is ``template x PUPLGFAC / level`` (``level``: ``FlatLevel`` of that same detrending), and it
is subtracted from the normalised frame before combining. Per frame, not on the combined master as
QuickReduce did: the ghost turns with the rotator, so flats at several rotator angles (which a ghost template
needs) hold rings at different places. The master's OTA headers get ``PGAFCTD = T`` and ``PGSCALNG`` (mean
subtracted scale, flat units); no ``PGCNTR_X/Y`` (the centres differ per frame; a science exposure's own
ghost centre is fitted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from podisteps import instrument, sanity
from podisteps.detrend import calibrate
from podisteps.focalplane.pupilghost import frame_scale, read_pupilghost_template
from podisteps.io.atomic import write_text_atomic
from podisteps.io.outputname import safe_component
from podisteps.io.streamed import write_fits_streamed
from podisteps.masters import combine, flatfield, flatghost, mastermef

from .base import FitsTarget, PodiTask, provenance_cards
from .calibrations import KINDS, frame_options, link_latest, master_options
from .detrend import DetrendOTA
from .focalplane import FocalPlaneCorrections, pupilghost_source
from .options import ReductionOptions
from .paths import checkpoint_path, night_index, work_root
from .runlock import discard_intermediates
from .saturation import exposure_record
from .settings import reduction_options

__all__ = ["MasterOTA", "FlatLevel", "MasterCalibration", "master_name"]


def master_name(kind: str, binning: int, filtername: str = "") -> str:
    """QuickReduce's file name stem: ``bias_bin1``, ``dark_yes_bin1``, ``dflat_odi_r_bin1``."""
    if kind == "bias":
        return calibrate.bias_filename(binning)[:-5]
    if kind == "dark":
        return calibrate.dark_filename(binning)[:-5]
    return calibrate.flat_filename(kind, safe_component(filtername), binning)[:-5]  # FILTER from a header


def _frames(night: str, kind: str, binning: int, filtername: str):
    return tuple(
        e for obstype in KINDS[kind]
        for e in night_index(night).select(obstype=obstype, binning=binning,
                                           filter=filtername if kind in ("dflat", "tflat") else None)
    )


class _MasterBase(PodiTask):
    night = luigi.Parameter(description="observing night YYYYMMDD")
    kind = luigi.ChoiceParameter(choices=tuple(KINDS), description="bias, dark, dflat or tflat")
    binning = luigi.IntParameter(default=1)
    filter = luigi.Parameter(default="", description="filter (flats only)")

    @property
    def name(self) -> str:
        """QuickReduce's name stem of this master."""
        return master_name(self.kind, self.binning, self.filter)

    def frames(self):
        """Night-index records of the input frames."""
        return _frames(self.night, self.kind, self.binning, self.filter)


class FlatLevel(PodiTask):
    """The normalisation level of one flat frame: clipped median of 8x8 means over the normalisation OTAs."""

    obsid = luigi.Parameter()
    stage = "flatlevel"
    option_families = ("DetrendOTA",)  # the options of the detrended frames it measures

    def norm_otas(self) -> tuple:
        """Normalisation OTAs of this frame's filter that the frame has."""
        rec = exposure_record(self.obsid)
        wanted = instrument.layout_for_mjd(rec.mjd).flat_normalisation_otas(rec.filter)
        return tuple(o for o in wanted if o in rec.otas)

    def requires(self):
        return {ota: DetrendOTA(obsid=self.obsid, ota=ota, options=self.options) for ota in self.norm_otas()}

    def output(self):
        return luigi.LocalTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, suffix=".json")))

    def run(self):
        # read-only maps: each OTA's pages are released once averaged (flatfield.flat_level), one held at a time
        hduls = {ota: fits.open(t.path, memmap=True, mode="denywrite") for ota, t in self.input().items()}
        try:
            frames = {ota: h[1].data for ota, h in hduls.items()}
            gains = {ota: (h[1].header.get("GAIN", -1.0), h[1].header.get("NGAIN", 0)) for ota, h in hduls.items()}
            level = flatfield.flat_level(frames, list(frames))
            gain = flatfield.flat_gain(gains, list(frames))
        finally:
            for h in hduls.values():
                h.close()
        provenance = {k: v for k, v, _ in provenance_cards(self, {"frames": [t.path for t in self.input().values()]})}
        write_text_atomic(json.dumps({"obsid": self.obsid, "level": level, "gain": gain, "otas": list(frames),
                                      "provenance": provenance}), self.output().path)


class MasterOTA(_MasterBase):
    """One OTA of a master calibration; a flat with ``-flatghost`` is ghost-free (module docstring)."""

    ota = luigi.IntParameter()
    stage = "cals"
    memory_gb = 2

    def requires(self):
        frames = self.frames()
        opts = frame_options(self.options, self.kind)
        req = {"frames": [DetrendOTA(obsid=e.obsid, ota=self.ota, options=opts) for e in frames
                          if self.ota in e.otas]}
        if self.kind in ("dflat", "tflat"):
            req["levels"] = [FlatLevel(obsid=e.obsid, options=opts) for e in frames if self.ota in e.otas]
        ghost = self._ghost_fit_options()
        if ghost is not None:
            req["ghost"] = [FocalPlaneCorrections.with_options(ghost, obsid=e.obsid) for e in frames
                            if self.ota in e.otas]
            req["ghostlevels"] = [FlatLevel.with_options(ghost, obsid=e.obsid) for e in frames if self.ota in e.otas]
            source = self._ghost_source(ghost)
            if source.task is not None:
                req["pupilghost"] = source.task
        return req

    def _ghost_fit_options(self) -> ReductionOptions | None:
        """Options of the per-frame ghost fits (``-pupilghost`` = the ``-flatghost`` value), or None."""
        opts = self.reduction_options
        if self.kind not in ("dflat", "tflat") or not opts.flatghost:
            return None
        return opts.replace(flatghost=None, pupilghost=opts.flatghost)

    def _ghost_source(self, ghost_options):
        return pupilghost_source(self.frames()[0], ghost_options)

    def external_inputs(self):
        ghost = self._ghost_fit_options()
        path = self._ghost_source(ghost).path if ghost is not None else None
        return [path] if path is not None else []

    def output(self):
        path = work_root() / self.night / "cals" / "ota" / f"{self.name}.{self.ota:02d}.{self.identity}.fits"
        return FitsTarget(str(path))

    def run(self):
        inputs = self.input()
        paths = [t.path for t in inputs["frames"]]
        minimum = reduction_options().mincalframes
        if len(paths) < minimum:
            raise calibrate.CalibrationError(
                f"{self.name} OTA{self.ota:02d} of night {self.night}: {len(paths)} input frame(s), at least "
                f"{minimum} needed ([reduction] mincalframes)"
            )
        levels = [json.loads(Path(t.path).read_text()) for t in inputs.get("levels", [])]
        hduls = [fits.open(p, memmap=False) for p in paths]  # read by row blocks (sections): no frame held whole
        cards = {}
        try:
            headers = [h[1].header for h in hduls]
            scale = self._scales(headers, levels)
            ghosts = self._ghosts(inputs, headers, hduls[0][1].shape, cards) if "ghost" in inputs else None
            frames = [_Scaled(h[1].section, s, minus=g) for h, s, g in zip(hduls, scale, ghosts or [None] * len(hduls))]
            self.progress(30, f"{self.name} OTA{self.ota:02d}: combining {len(frames)} frames")
            master, n_used = combine.sigma_clip_mean(frames)
            first = headers[0]
        finally:
            for h in hduls:
                h.close()
        cards |= {"NCOMBINE": (len(paths), "frames combined"), "NMINUSED": (int(n_used.min()), "fewest per pixel")}
        if self.kind in ("dflat", "tflat"):
            low = ~(master >= 0.1)
            master[low] = np.nan
            cards["GAIN"] = (float(np.mean([lv["gain"] for lv in levels])), "flat gain, e-/ADU")
            cards["FF_NORM"] = (float(np.mean([lv["level"] for lv in levels])), "mean normalisation level, ADU")
        sanity.check_calibration(self.output().path, "flat" if self.kind in ("dflat", "tflat") else self.kind, master)
        cards["GAINMTHD"] = first.get("GAINMTHD", "none")
        primary = self._primary(first)
        if "GAIN" in cards:
            primary["GAIN"] = cards["GAIN"]
        hdul = mastermef.master_hdulist({self.ota: master}, filelist=[os.path.basename(p) for p in paths],
                                        primary=primary, ota_headers={self.ota: cards})
        used = {"frames": paths}
        if "ghost" in inputs:
            hdul[0].header["PGREMOVD"] = (bool(cards["PGAFCTD"][0]), "pupil ghost removed from the flat frames")
            used |= {"ghostfit": [t.path for t in inputs["ghost"]],
                     "pupilghost": self._template_path(inputs)}
        self.add_provenance(hdul[0].header, used)
        self.output().write_hdulist(hdul)
        if not reduction_options().keepcalframes:  # intermediates of calibration frames: the master is kept
            discard_intermediates(paths, work=work_root())

    def _template_path(self, inputs) -> str:
        source = self._ghost_source(self._ghost_fit_options())
        return str(source.path) if source.path is not None else inputs["pupilghost"].path

    def _ghosts(self, inputs, headers, shape, cards) -> list:
        """Per frame the ghost in flat units (:func:`podisteps.masters.flatghost.flat_ghosts`; None where no ghost
        was fitted on this OTA); sets ``PGAFCTD``, ``PGSCALNG`` in ``cards``."""
        fits_read = []
        for header, fit_target, level_target in zip(headers, inputs["ghost"], inputs["ghostlevels"]):
            level = json.loads(Path(level_target.path).read_text())["level"]
            with fits.open(fit_target.path) as fit:
                fits_read.append(flatghost.GhostFit.from_product(fit, level=level,
                                                                 rotator=float(header.get("ROTSTART", 0.0))))
        with fits.open(self._template_path(inputs), memmap=True) as hdul:
            template = read_pupilghost_template(hdul, data_scale=frame_scale(shape))
            result = flatghost.flat_ghosts(template.combined, fits_read, ota=self.ota, shape=shape,
                                           template_angle=template.rotangle)
        cards |= result.cards
        return result.ghosts

    def _scales(self, headers, levels) -> list:
        if self.kind == "dark":
            return [1.0 / float(h.get("EXPMEAS", h.get("EXPTIME", 1.0)) or 1.0) for h in headers]
        if self.kind in ("dflat", "tflat"):
            return [1.0 / lv["level"] for lv in levels]
        return [1.0] * len(headers)

    def _primary(self, first: fits.Header) -> dict:
        cards = {"OBSTYPE": self.kind.upper(), "BINNING": self.binning, "NIGHT": self.night}
        if self.filter:
            cards["FILTER"] = self.filter
        if self.kind == "dark":
            cards["EXPTIME"] = cards["EXPMEAS"] = (1.0, "master dark is in ADU/s")
        for key in ("INSTRUME", "MJD-OBS"):
            if key in first:
                cards[key] = first[key]
        return cards


class _Scaled:
    """A lazily scaled 2-D frame: ``frame[rows] * factor - minus[rows]`` (so combining reads row blocks of a
    FITS section or memmap); ``minus`` (same shape, in the scaled units) is optional."""

    def __init__(self, data, factor: float, *, minus: np.ndarray | None = None):
        self.data, self.factor, self.minus = data, np.float32(factor), minus
        self.shape, self.ndim, self.dtype = data.shape, 2, np.dtype(np.float32)

    def __getitem__(self, key):
        scaled = np.asarray(self.data[key], dtype=np.float32) * self.factor
        return scaled if self.minus is None else scaled - self.minus[key]


class MasterCalibration(_MasterBase):
    """A master calibration MEF in QuickReduce's name, e.g. ``<work>/<night>/cals/bias_bin1.<id>.fits``.

    A symbolic link ``<name>.fits`` beside it points at the newest one, so ``<work>/<night>/cals/`` can be
    handed to ``-cals`` as QuickReduce's calibration folder.
    """

    stage = "cals"

    def otas(self) -> tuple:
        """OTAs present in any input frame, in the layout's order."""
        present = {o for e in self.frames() for o in e.otas}
        if not present:
            return ()
        layout = instrument.layout_for_mjd(self.frames()[0].mjd)
        return tuple(o for o in layout.otas if o in present)

    def requires(self):
        # the options DetrendOTA asks its night masters with: one product whoever asks
        options = master_options(self.options, self.kind)
        return {ota: MasterOTA(night=self.night, kind=self.kind, binning=self.binning, filter=self.filter,
                               ota=ota, options=options) for ota in self.otas()}

    def output(self):
        return FitsTarget(str(work_root() / self.night / "cals" / f"{self.name}.{self.identity}.fits"))

    def run(self):
        parts = self.input()
        if not parts:
            raise calibrate.CalibrationError(
                f"night {self.night}: no {'/'.join(KINDS[self.kind])} frames at bin{self.binning}"
                + (f" in {self.filter}" if self.filter else "")
            )
        headers, filelist, gains = {}, None, {}
        for ota, target in parts.items():  # headers only: the frames are read one at a time while writing
            with fits.open(target.path) as hdul:
                headers[ota] = hdul[1].header.copy()
                filelist = filelist or mastermef.master_filelist(hdul)
                primary = hdul[0].header
        if self.kind in ("dflat", "tflat"):
            layout = instrument.layout_for_mjd(float(primary.get("MJD-OBS", 0.0)))
            norm = layout.flat_normalisation_otas(self.filter)
            gains = {o: (h.get("GAIN", -1.0), 1) for o, h in headers.items()}
            primary["GAIN"] = (flatfield.flat_gain(gains, norm), "NGAIN-weighted flat gain, e-/ADU")
        keep = {k: primary[k] for k in ("OBSTYPE", "BINNING", "NIGHT", "FILTER", "EXPTIME", "EXPMEAS", "GAIN",
                                        "MJD-OBS") if k in primary}
        hdus = mastermef.master_hdus(_ota_frames(parts, headers), filelist=filelist, primary=keep,
                                     associations=[("master-ota", t.path) for t in parts.values()])
        target = self.output()
        used = {"otas": [t.path for t in parts.values()]}
        write_fits_streamed(hdus, target.path, durable=target.durable,
                            prepare=lambda header: self.add_provenance(header, used))
        link_latest(target.path, f"{self.name}.fits")


def _ota_frames(parts: dict, headers: dict):
    """Yield ``(ota, frame, header)`` of MasterOTA products, each frame memory-mapped only while it is used."""
    for ota, target in parts.items():
        with fits.open(target.path, memmap=True) as hdul:
            yield ota, hdul[1].data, headers[ota]
