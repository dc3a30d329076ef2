"""Master bias, dark and flat from a night's own raw frames (QUICKREDUCE_SPEC.md section 5).

```
MasterOTA(night, kind, binning, filter, ota)     one OTA of a master, combined from DetrendOTA checkpoints
FlatLevel(obsid)                                 the normalisation level of one flat frame (small JSON)
MasterCalibration(night, kind, binning, filter)  the assembled MEF with QuickReduce's name, in <work>/<night>/cals/
```

Each input frame is detrended by ``DetrendOTA`` to the right level: biases with overscan and crosstalk;
darks also minus the night's master bias and divided by EXPMEAS (ADU/s); flats also minus bias and dark
and divided by the frame's level over the layout's normalisation OTAs. Frames are combined per pixel with
the spec's sigma-clipped mean, reading row blocks of memory-mapped checkpoints. Flats below 0.1 are NaN.

Ghost-free flats (``-flatghost``, spec §5.2 "optional pupil-ghost removal"): the pupil ghost of each flat
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

import functools
import json
import os
import re
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from podisteps import calibrate, calselect, combine, flatfield, instrument, mastermef, pupilghost, sanity
from podisteps.atomic import write_text_atomic
from podisteps.outputname import safe_component

from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .options import ReductionOptions
from .paths import checkpoint_path, night_index, raw_root, work_root
from .runlock import discard_intermediates
from .saturation import exposure_record
from .settings import reduction_options

__all__ = ["MasterOTA", "FlatLevel", "MasterCalibration", "KINDS", "master_name", "prerequisites", "link_latest",
           "select_night_master", "master_options"]

#: Master kinds and the OBSTYPEs they are built from.
KINDS = {"bias": ("BIAS",), "dark": ("DARK",), "dflat": ("DFLAT",), "tflat": ("TFLAT",)}


def prerequisites(kind: str) -> tuple[str, ...]:
    """Night masters an input frame of ``kind`` is detrended with (bias: none; dark: bias; flats: both)."""
    return {"bias": (), "dark": ("bias",)}.get(kind, ("bias", "dark"))


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


#: Nights beyond the validity window searched only to name the nearest rejected candidates in an error.
ERROR_SEARCH_DAYS = 7


#: Frame counts per night index object (the index is memoised while its folder is unchanged), holding the
#: index so that its id is not reused: the master of every DetrendOTA is chosen from these counts.
_COUNTS: dict = {}


def _frame_counts(night: str) -> dict:
    """``(kind, binning, filter) -> number of readable frames`` of the night's calibration exposures."""
    index = night_index(night)
    cached = _COUNTS.get(id(index))
    if cached is not None and cached[0] is index:
        return cached[1]
    if len(_COUNTS) > 64:
        _COUNTS.clear()
    by_obstype = {obstype: kind for kind, obstypes in KINDS.items() for obstype in obstypes}
    counts: dict = {}
    _COUNTS[id(index)] = (index, counts)
    for e in index.exposures:
        kind = by_obstype.get(e.obstype)
        if kind is not None and not e.error:
            key = (kind, e.binning, e.filter if kind in ("dflat", "tflat") else "")
            counts[key] = counts.get(key, 0) + 1
    return counts


def _nights_near(night: str, days: int) -> list:
    """Nights under the raw folder at most ``days`` nights from ``night`` (``night`` itself always)."""
    return sorted({night, *(n for n in _raw_nights() if abs(calselect.night_distance(night, n)) <= days)})


def _raw_nights() -> tuple:
    """The night folders (``YYYYMMDD``) under the raw root, listed again when the root's mtime changes."""
    root = raw_root()
    try:
        state = (str(root), root.stat().st_mtime_ns)
    except OSError:
        return ()
    return _list_nights(state)


@functools.lru_cache(maxsize=8)
def _list_nights(state: tuple) -> tuple:
    return tuple(p.name for p in Path(state[0]).iterdir() if p.is_dir() and re.fullmatch(r"\d{8}", p.name))


def select_night_master(step: str, *, night: str, binning: int, filtername: str, validity_days: int,
                        min_frames: int) -> calselect.MasterCandidate:
    """The night and kind of the master an exposure of ``night`` uses for ``step`` (bias, dark or flat).

    Candidates are the calibration frames of every night within ``validity_days`` (podisteps.calselect:
    own night first, then the nearest; flats prefer twilight to dome flats within a night).

    Raises
    ------
    podisteps.calselect.NoCalibrationError
        Nothing qualifies; the message lists the criteria and the nearest candidates with reasons.
    """
    kinds = {"bias": ("bias",), "dark": ("dark",), "flat": ("tflat", "dflat")}[step]

    def select(search_days: int) -> calselect.MasterCandidate:
        candidates = [
            calselect.MasterCandidate(night=n, kind=kind, binning=b, filter=f, ncombine=count)
            for n in _nights_near(night, search_days) for (kind, b, f), count in _frame_counts(n).items()
            if kind in kinds
        ]
        return calselect.select_master(candidates, night=night, kinds=kinds, binning=binning,
                                       filtername=filtername if step == "flat" else "",
                                       validity_days=validity_days, min_frames=min_frames)

    try:
        return select(validity_days)
    except calselect.NoCalibrationError:
        return select(validity_days + ERROR_SEARCH_DAYS)  # fails again, naming the nearest rejected masters


def frame_options(options: dict, kind: str) -> dict:
    """The DetrendOTA options of an input frame of ``kind``, from the master's own options."""
    from .options import OPTIONS_BY_NAME

    out = dict(options)
    out["masters"] = OPTIONS_BY_NAME["masters"].format(prerequisites(kind))
    for step in ("bias", "dark", "flat", "illumcorr", "photflat"):
        out[step] = OPTIONS_BY_NAME[step].format(None)  # not given: -masters' prerequisites apply
    out["crj"] = "0"
    out["gain"] = ""  # masters are in raw ADU: the gain step comes after bias, dark and flat
    out["flatghost"] = OPTIONS_BY_NAME["flatghost"].format(None)  # shapes the master, not its frames
    return out


def master_options(options: dict, kind: str) -> dict:
    """The options of the ``MasterOTA`` of ``kind`` that a DetrendOTA with ``options`` uses.

    The frame options (:func:`frame_options`), except for a flat with ``-flatghost``: then the DetrendOTA
    options without flat-type steps (the ghost is fitted on the flats detrended as the science is, without a
    flat; :func:`workflows.fptemplates._flat_options`) plus ``flatghost``.
    """
    from .fptemplates import _flat_options

    parsed = ReductionOptions.from_mapping(dict(options))
    if kind not in ("dflat", "tflat") or not parsed.flatghost:
        return frame_options(options, kind)
    return {**_flat_options(parsed.replace(flatghost=None)), "flatghost": options["flatghost"]}


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

    def norm_otas(self) -> tuple:
        """Normalisation OTAs of this frame's filter that the frame has."""
        rec = exposure_record(self.obsid)
        wanted = instrument.layout_for_mjd(rec.mjd).flat_normalisation_otas(rec.filter)
        return tuple(o for o in wanted if o in rec.otas)

    def requires(self):
        from .detrend import DetrendOTA

        return {ota: DetrendOTA(obsid=self.obsid, ota=ota, options=self.options) for ota in self.norm_otas()}

    def output(self):
        return luigi.LocalTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, suffix=".json")))

    def run(self):
        hduls = {ota: fits.open(t.path, memmap=True) for ota, t in self.input().items()}
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
        from .detrend import DetrendOTA

        frames = self.frames()
        opts = frame_options(self.options, self.kind)
        req = {"frames": [DetrendOTA(obsid=e.obsid, ota=self.ota, options=opts) for e in frames
                          if self.ota in e.otas]}
        if self.kind in ("dflat", "tflat"):
            req["levels"] = [FlatLevel(obsid=e.obsid, options=opts) for e in frames if self.ota in e.otas]
        ghost = self._ghost_fit_options()
        if ghost is not None:
            from .focalplane import FOCAL_FAMILIES, FocalPlaneCorrections

            fit_options = options_param(ghost, FOCAL_FAMILIES)
            detrended = options_param(ghost, ["DetrendOTA"])
            req["ghost"] = [FocalPlaneCorrections(obsid=e.obsid, options=fit_options) for e in frames
                            if self.ota in e.otas]
            req["ghostlevels"] = [FlatLevel(obsid=e.obsid, options=detrended) for e in frames if self.ota in e.otas]
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
        from .fptemplates import pupilghost_source

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
        hduls = [fits.open(p, memmap=True) for p in paths]
        cards = {}
        try:
            headers = [h[1].header for h in hduls]
            scale = self._scales(headers, levels)
            ghosts = self._ghosts(inputs, headers, hduls[0][1].data.shape, cards) if "ghost" in inputs else None
            frames = [_Scaled(h[1].data, s, minus=g) for h, s, g in zip(hduls, scale, ghosts or [None] * len(hduls))]
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
        for key, value, comment in provenance_cards(self, used):
            hdul[0].header[key] = (value, comment)
        self.output().write_hdulist(hdul)
        if not reduction_options().keepcalframes:  # intermediates of calibration frames: the master is kept
            discard_intermediates(paths, work=work_root())

    def _template_path(self, inputs) -> str:
        source = self._ghost_source(self._ghost_fit_options())
        return str(source.path) if source.path is not None else inputs["pupilghost"].path

    def _ghosts(self, inputs, headers, shape, cards) -> list:
        """Per frame the ghost in flat units, ``template x PUPLGFAC / level`` placed at the frame's fitted
        centre and rotator angle (None where no ghost was fitted on this OTA); sets ``PGAFCTD``, ``PGSCALNG``.

        Returns
        -------
        list of numpy.ndarray or None
            Shape ``shape`` (this OTA's frame), float32, one per input frame.
        """
        from .fptemplates import frame_scale, read_pupilghost_template

        ghosts, factors = [], []
        with fits.open(self._template_path(inputs), memmap=True) as hdul:
            template = read_pupilghost_template(hdul, data_scale=frame_scale(shape))
            for header, fit_target, level_target in zip(headers, inputs["ghost"], inputs["ghostlevels"]):
                with fits.open(fit_target.path) as fit:
                    factor = float(fit[0].header["PUPLGFAC"])
                    centres = ({int(r["OTA"]): (float(r["PGCNTR_X"]), float(r["PGCNTR_Y"]))
                                for r in fit["PGCENTRE"].data} if "PGCENTRE" in fit else {})
                if factor <= 0 or self.ota not in centres:
                    ghosts.append(None)
                    continue
                relative = factor / json.loads(Path(level_target.path).read_text())["level"]
                placed = pupilghost.place_template(template.combined, shape, centres[self.ota],
                                                   angle=float(header.get("ROTSTART", 0.0)) - template.rotangle)
                ghosts.append(placed * np.float32(relative))
                factors.append(relative)
        cards["PGAFCTD"] = (bool(factors), "pupil ghost removed from this flat")
        cards["PGSCALNG"] = (float(np.mean(factors)) if factors else 0.0,
                             "mean ghost scale removed, flat units")
        return ghosts

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
    """A lazily scaled 2-D frame: ``frame[rows] * factor - minus[rows]`` (so combining reads row blocks of
    memmaps); ``minus`` (same shape, in the scaled units) is optional."""

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
        frames, headers, filelist, gains = {}, {}, None, {}
        for ota, target in parts.items():
            with fits.open(target.path) as hdul:
                frames[ota] = hdul[1].data.astype(np.float32)
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
        hdul = mastermef.master_hdulist(frames, filelist=filelist, primary=keep, ota_headers=headers,
                                        associations=[("master-ota", t.path) for t in parts.values()])
        for key, value, comment in provenance_cards(self, {"otas": [t.path for t in parts.values()]}):
            hdul[0].header[key] = (value, comment)
        target = self.output()
        target.write_hdulist(hdul)
        link_latest(target.path, f"{self.name}.fits")


def link_latest(path: str, name: str) -> None:
    """Point the symbolic link ``name`` beside ``path`` at it (atomically), so the folder works as ``-cals``."""
    link = os.path.join(os.path.dirname(path), name)
    tmp = f"{link}.tmp-{os.getpid()}"
    os.symlink(os.path.basename(path), tmp)
    os.replace(tmp, link)
