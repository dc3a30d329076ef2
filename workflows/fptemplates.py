"""Focal-plane templates: ``FringeTemplate`` and ``PupilGhostTemplate`` tasks, and which template a reduction uses.

```
FringeTemplate(nights, filter, binning)    <work>/<night>/cals/fringe__<FILTER>__<layout>_bin<B>.<id>.fits
PupilGhostTemplate(night, filter, binning) <work>/<night>/cals/pupilghost_template___level_<L>__bin<B>.<id>.fits
```

Both are written in QuickReduce's formats (QUICKREDUCE_SPEC.md §5.3, §5.4), so a file made here can be
handed to ``-fringe``/``-pupilghost`` of either pipeline. ``-fringe``, ``-pupilghost``: ``auto`` (the bare
flag) takes the mastercals history (``fringe/<layout>/<FILTER>/fringe_bin<B>.history``,
``pupilghost/<layout>/level<L>/pupilghost_bin<B>.history``) when it names a file, else these tasks' products
from the exposure's own night; a file or a folder holding the history file chooses one explicitly.
``-fringevectors``: a folder of ``fringevectors__<FILTER>__OTAnn.reg`` files or one file for every OTA; by
default ``fringevectors/<layout>/<FILTER>/`` of the mastercals tree. Fringes are corrected only in filters
that have fringe vectors.

Templates are dimensionless (relative to the sky or flat level). The pupil-ghost ``COMBINED`` image and the
``RAWPROFILE`` radii carry ``PGSCALE`` (full-size bin1 px per px; QuickReduce's files have none: then the
binning), so test-instrument templates are read back at their own scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from podisteps import fringe, history, instrument, pupilghost
from podisteps.stats import block_median

from .base import FitsTarget, PodiTask
from .calibrations import flat_free_options
from .detrend import DetrendOTA
from .saturation import exposure_record
from .options import ReductionOptions
from .paths import mastercals_root, night_index, night_of, work_root

__all__ = ["FringeTemplate", "PupilGhostTemplate", "TemplateSource", "fringe_source", "fringe_vector_file",
           "pupilghost_source", "read_pupilghost_template", "PupilGhostTemplateData", "frame_scale"]

#: Pixel size at which fringe templates are source-masked and filtered, full-size bin1 px (fringes are far
#: coarser; at full size a single pixel's noise hides star halos).
COARSE_PX = 8
#: Block side of the binned flats the ghost profile is measured on, full-size bin1 px.
PROFILE_BLOCK_PX = 32.0
#: Every n-th block enters the centre searches (the profile uses them all): the searches cost per sample.
CENTRE_SUBSAMPLE = 4


def frame_scale(shape: tuple[int, ...]) -> int:
    """Full-size bin1 px per frame px of an OTA image of ``shape`` (4096 // width: 1, 2, or 8 x binning)."""
    return max(1, 4096 // shape[-1])


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
    """Fringe template of one filter from the science exposures of some nights (spec §5.4).

    Per OTA: sources masked (:func:`podisteps.fringe.source_mask` on 8-px blocks, plus every mask bit),
    ``(data - sky) / sky`` with the sky a fitted plane (QuickReduce used the level ``SKY_MEDI``: a sky
    gradient then leaks into the template), frames with more than twice the nominal sky rate left out,
    ``nanmedian`` over the frames, then Wiener-filtered on 8-px blocks
    (:func:`podisteps.fringe.denoise_template`; QuickReduce did not filter, but the median of a few frames is
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
        # deferred: the frames are focal-plane-corrected exposures, whose corrections need this template
        # (FringeTemplate -> CorrectedOTA -> FocalPlaneCorrections -> FringeTemplate without the fringe step)
        from .focalplane import image_task

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
    """Pupil-ghost template of one filter from the night's flats at several rotator angles (spec §5.3).

    Per flat: the ghost OTAs (layout list ``pupilghost_otas``) binned in 32-px blocks, positions relative to
    each OTA's optical axis (canned WCS ``CRPIX``), normalised; the centre is searched about the rotated
    canned guess with a generic ring, the profile measured (:func:`podisteps.pupilghost.measure_profile`),
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


@dataclass(frozen=True)
class PupilGhostTemplateData:
    """A pupil-ghost template file read for use (``combined`` may be memory-mapped: keep the file open)."""

    combined: np.ndarray
    otas: frozenset
    profile_r: np.ndarray      # frame px of the data it is applied to
    profile_v: np.ndarray
    rotangle: float


def read_pupilghost_template(hdul: fits.HDUList, *, data_scale: int) -> PupilGhostTemplateData:
    """Read QuickReduce's (or podiflow's) template for data of ``data_scale`` full-size px per px.

    Raises
    ------
    ValueError
        If the template's pixel scale differs from the data's (no resampling is done).
    """
    comb = hdul["COMBINED"]
    scale = int(comb.header.get("PGSCALE", hdul[0].header.get("BINNING", data_scale)))
    if scale != data_scale:
        raise ValueError(f"{hdul.filename()}: pupil-ghost template at {scale} full-size px per px, "
                         f"data at {data_scale}")
    prof = hdul["RAWPROFILE"]
    radii = float(prof.header["CRVAL1"]) + float(prof.header["CD1_1"]) * np.arange(prof.data.shape[0])
    otas = frozenset(int(n[3:5]) for n in str(comb.header.get("OTAORDER", "")).split(";") if n.strip())
    return PupilGhostTemplateData(comb.data, otas, radii / scale, np.nan_to_num(prof.data[:, 0].astype(float)),
                                  float(comb.header.get("ROTANGLE", 0.0)))
