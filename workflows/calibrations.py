"""Which calibration files an exposure's detrending reads (resolved at scheduling time, stats only).

Sources, by option (``workflows.options``):

- ``-cals=dir[,dir]`` with per-type ``-bias``/``-dark``/``-flat``/``-illumcorr`` overrides: master files in
  QuickReduce's names (``bias_bin<B>.fits``, ``dark_yes_bin<B>.fits``, ``<type>_<FILTER>_bin<B>.fits``
  searched tflat, dflat, flat, ``illumination__<FILTER>_bin<B>.fits``);
- ``-crosstalk``, ``-nonlinearity``, ``-wcs``: a file, a folder with the type's ``.history``, or ``auto`` =
  the mastercals tree (``[podiflow] mastercals_dir``) chosen by MJD and layout;
- ``-bpm``: a folder of ``bpm_xyNN.reg`` files, one file for every OTA, or ``auto`` = ``bpm/<layout>/``;
- ``-photflat``: a file, a folder holding ``photflat_<FILTER>_bin<B>.fits``, or ``auto`` = the ``-cals``
  folders (where QuickReduce keeps it, docs/calibrations.md, 'Master files').

and the night masters the pipeline builds (``-masters``): which night's frames a master is made of
(:func:`select_night_master`), the options its frames are detrended with (:func:`frame_options`, from the
step table :data:`podisteps.detrend.LAST_STAGE`), and the ``<name>.fits`` link that makes
``<work>/<night>/cals/`` usable as ``-cals`` (:func:`link_latest`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from podisteps import instrument
from podisteps.detrend import MASTER_STEPS, calibrate, prerequisites, steps_after
from podisteps.errors import CalibrationError
from podisteps.io.nightindex import ExposureRecord
from podisteps.io.rawio import resolve_file_or_dir
from podisteps.masters import calselect, history
from podisteps.photometry.photflat import photflat_filename

from .base import options_param
from .options import OPTIONS_BY_NAME, ReductionOptions
from .paths import mastercals_root, night_index, raw_root

__all__ = ["CalibrationFiles", "resolve_calibrations", "bpm_file", "FALLBACKS", "warn_once", "KINDS",
           "select_night_master", "frame_options", "master_options", "flat_free_options", "link_latest"]

log = logging.getLogger("podiflow.calibrations")

#: What a step does when its ``auto`` file is not in the mastercals tree (QuickReduce reduces anyway).
FALLBACKS = {
    "crosstalk": "crosstalk not corrected",
    "nonlinearity": "non-linearity not corrected",
    "wcs": "nominal WCS from the instrument model (OTA positions, pixel scale, radial distortion)",
}


@dataclass(frozen=True)
class CalibrationFiles:
    """The external calibration files one exposure's detrending reads (None = step not applied)."""

    bias: Path | None = None
    dark: Path | None = None
    flat: Path | None = None
    illumcorr: Path | None = None
    crosstalk: Path | None = None
    nonlinearity: Path | None = None
    wcs: Path | None = None
    bpm: Path | None = None          # a folder of bpm_xyNN.reg, or one file used for every OTA
    techdata: Path | None = None
    photflat: Path | None = None
    missing: tuple = ()              # steps wanted but without a file: not applied, logged 'missing data'

    def files(self) -> dict:
        """``step -> path`` of the files that exist (the BPM folder is not a file)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, Path) and v.is_file()}


def _folders(value: str | None) -> list[Path]:
    return [Path(v.strip()) for v in str(value).split(",") if v.strip()] if value else []


def _master(options_value, cals: list[Path], name: str, what: str) -> Path | None:
    """A master from its own option (file/folder/list), else from -cals; error if asked for but absent."""
    if not options_value:
        return None
    if options_value != "auto":
        found = resolve_file_or_dir(options_value, name)
        if found is None:
            raise CalibrationError(f"-{what}={options_value}: no {name} there")
        return found
    found = calibrate.find_in_folders(cals, name)
    if found is None:
        where = ", ".join(str(c) for c in cals) or "(no -cals folder given)"
        raise CalibrationError(f"-{what}: no {name} in {where}")
    return found


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    """One warning line per message and process (the resolver runs for every OTA, many times)."""
    log.warning("%s", message)


def _from_cals(value, cals: list[Path], name: str, what: str, missing: list) -> Path | None:
    """A master of its own option (None: not given; False: ``-what=no``), else the one ``-cals`` implies.

    A file ``-cals`` implies but does not hold is skipped with one warning and added to ``missing``
    (QuickReduce reduces anyway and logs the step as not applied); an explicit request must be met.
    """
    if value is not None or not cals:
        return _master(value or None, cals, name, what)
    found = calibrate.find_in_folders(cals, name)
    if found is None:
        warn_once(f"no {name} in {', '.join(map(str, cals))} (-cals): {what} not applied")
        missing.append(what)
    return found


def _mastercal_dir(*parts: str) -> Path | None:
    root = mastercals_root()
    folder = root.joinpath(*parts)
    return folder if folder.is_dir() else None


def resolve_calibrations(record: ExposureRecord, options: ReductionOptions) -> CalibrationFiles:
    """Resolve every calibration file of one exposure.

    ``-cals`` switches bias, dark and flat on (QuickReduce: ``-cals`` implies all three). Only stats and
    small ``.history`` files are read.

    Raises
    ------
    CalibrationError
        A requested calibration is missing (the message says which file and where it was looked for).
    """
    cals = _folders(options.cals)
    binning, filt = record.binning, record.filter
    layout_model = instrument.layout_for_mjd(record.mjd)
    layout = layout_model.name
    missing: list[str] = []

    bias = _from_cals(options.bias, cals, calibrate.bias_filename(binning), "bias", missing)
    dark = _from_cals(options.dark, cals, calibrate.dark_filename(binning), "dark", missing)
    flat = _flat(options.flat, cals, filt, binning, missing)
    illum = _master(options.illumcorr, cals, calibrate.illumination_filename(filt, binning), "illumcorr")
    photflat = _master(options.photflat, cals, photflat_filename(filt, binning), "photflat")

    def typed(value, kind: str, history_name: str, *sub: str, since: float | None = None) -> Path | None:
        try:
            found = history.resolve_calibration(value, history_name=history_name, mjd=record.mjd,
                                                default_dir=_mastercal_dir(kind, *sub), since=since)
        except FileNotFoundError as exc:
            raise CalibrationError(f"-{kind}: {exc}") from None
        if found is None:
            warn_once(f"no {kind} file in {mastercals_root().joinpath(kind, *sub)} "
                      f"(-mastercals, [podiflow] mastercals_dir): {FALLBACKS[kind]}")
            missing.append(kind)
        return found

    crosstalk = typed(options.crosstalk, "crosstalk", "crosstalk.history", layout) if options.crosstalk else None
    # one history for both layouts: only the tables of the frame's layout count
    nonlin = (typed(options.nonlinearity, "nonlinearity", "nonlinearity.history", since=layout_model.mjd_min)
              if options.nonlinearity else None)
    wcs_file = None
    if options.wcs not in (None, "plain"):
        wcs_file = typed(options.wcs, "wcs", "wcs.history", layout)

    bpm = None
    if options.bpm == "auto":
        bpm = _mastercal_dir("bpm", layout)
        if bpm is None:
            raise CalibrationError(
                f"-bpm: no bpm/{layout}/ folder in the mastercals tree {mastercals_root()} "
                "([podiflow] mastercals_dir); give -bpm=FOLDER or FILE"
            )
    elif options.bpm:
        bpm = Path(options.bpm)
        if not bpm.exists():
            raise CalibrationError(f"-bpm={options.bpm}: no such file or folder")
    techdata = _techdata(options.techdata, cals, flat=flat, bias=bias, filtername=filt, binning=binning)
    return CalibrationFiles(bias=bias, dark=dark, flat=flat, illumcorr=illum, crosstalk=crosstalk,
                            nonlinearity=nonlin, wcs=wcs_file, bpm=bpm, techdata=techdata, photflat=photflat,
                            missing=tuple(missing))


def _flat(value, cals: list[Path], filtername: str, binning: int, missing: list) -> Path | None:
    """The master flat of ``-flat`` (a file, folders, 'auto' = -cals) or implied by ``-cals``; see _from_cals."""
    if value is False or (value is None and not cals):
        return None
    folders = cals if value in (None, "auto") else _folders(value)
    single = [f for f in folders if f.is_file()]
    flat = single[0] if single else calibrate.find_flat([f for f in folders if f.is_dir()], filtername, binning)
    if flat is not None:
        return flat
    text = f"no tflat/dflat/flat_{filtername}_bin{binning}.fits in {', '.join(map(str, folders)) or '(none)'}"
    if value is not None:
        raise CalibrationError(f"-flat: {text}")
    warn_once(f"{text} (-cals): flat not applied")
    missing.append("flat")
    return None


def flat_type(flat: Path | None) -> str:
    """``tflat``/``dflat``/``flat`` from a master flat's QuickReduce name (``dflat`` when there is none)."""
    name = flat.name if flat is not None else ""
    return next((t for t in calibrate.FLAT_ORDER if name.startswith(f"{t}_")), "dflat")


def _techdata(value, cals: list[Path], *, flat, bias, filtername: str, binning: int) -> Path | None:
    """The TECHDATA file of ``-techdata`` (None: off, or the night's own TechData task when 'auto' has no -cals)."""
    if not value:
        return None
    name = calibrate.techdata_filename(flat_type(flat), filtername, binning)
    if value in ("from_flat", "from_bias"):
        source = flat if value == "from_flat" else bias
        if source is None and value == "from_bias":
            raise CalibrationError("-techdata=from_bias needs a bias file (-bias or -cals)")
        if source is None:
            return None  # the flat comes from the night's masters: so does the TECHDATA file
        folders = [source.parent]
    elif value == "auto":
        if not cals:
            return None
        folders = cals
    else:
        return _master(value, cals, name, "techdata")
    return _master("auto", folders, name, f"techdata={value}")


def bpm_file(bpm: Path | None, ota: int) -> Path | None:
    """The region file of ``ota``: ``bpm/bpm_xyNN.reg`` in a folder (None if that OTA has none), or the file."""
    if bpm is None:
        return None
    if bpm.is_dir():
        candidate = bpm / f"bpm_xy{ota:02d}.reg"
        return candidate if candidate.is_file() else None
    return bpm


# -- night masters (-masters) ---------------------------------------------------------------------------

#: Master kinds and the OBSTYPEs they are built from.
KINDS = {"bias": ("BIAS",), "dark": ("DARK",), "dflat": ("DFLAT",), "tflat": ("TFLAT",)}

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

    Candidates are the calibration frames of every night within ``validity_days`` (podisteps.masters.calselect:
    own night first, then the nearest; flats prefer twilight to dome flats within a night).

    Raises
    ------
    podisteps.masters.calselect.NoCalibrationError
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


#: Option that switches each step of :data:`podisteps.detrend.SIGNAL_CHAIN` off, and its off value
#: (None: not given, so ``-masters`` or nothing applies).
_STEP_OFF = {"bias": ("bias", None), "dark": ("dark", None), "flat": ("flat", None),
             "illumcorr": ("illumcorr", None), "gain": ("gain", None), "cosmics": ("crj", 0),
             "photflat": ("photflat", None)}


def frame_options(options: dict, kind: str) -> dict:
    """The DetrendOTA options of an input frame of a master of ``kind`` (bias, dark, dflat, tflat).

    The reduction's options, with the master steps taken from the night's own masters up to the frame
    kind's last stage (:data:`podisteps.detrend.LAST_STAGE`) and every later signal step switched off.
    ``-flatghost`` shapes the master, not its frames.
    """
    out = dict(options)
    out["masters"] = OPTIONS_BY_NAME["masters"].format(prerequisites(kind))
    for step in (*MASTER_STEPS, *steps_after(kind)):
        name, off = _STEP_OFF[step]
        out[name] = OPTIONS_BY_NAME[name].format(off)
    out["flatghost"] = OPTIONS_BY_NAME["flatghost"].format(None)
    return out


def master_options(options: dict, kind: str) -> dict:
    """The options of the ``MasterOTA`` of ``kind`` that a DetrendOTA with ``options`` uses.

    The frame options (:func:`frame_options`), except for a flat with ``-flatghost``: then the DetrendOTA
    options without flat-type steps (the ghost is fitted on the flats detrended as the science is, without a
    flat; :func:`flat_free_options`) plus ``flatghost``.
    """
    parsed = ReductionOptions.from_mapping(dict(options))
    if kind not in ("dflat", "tflat") or not parsed.flatghost:
        return frame_options(options, kind)
    return {**flat_free_options(parsed.replace(flatghost=None)), "flatghost": options["flatghost"]}


def flat_free_options(options: ReductionOptions) -> dict:
    """DetrendOTA options of flats a pupil-ghost template or fit is made of: the science's, without flat-type
    steps.

    The gain normalisation is kept (cell gain steps would swamp a 2-3 % ring); bias and dark stay as the
    science has them (night masters included).

    Raises
    ------
    ValueError
        With ``-cals``, which always implies a flat (the flats would be divided by themselves).
    """
    if options.cals:
        raise ValueError("-pupilghost with -cals: give the template file (-pupilghost=FILE); podiflow builds "
                         "ghost templates only from flats reduced with -bias/-dark or -masters")
    flat_free = options.replace(flat=None, illumcorr=None, crj=0,
                                masters=tuple(m for m in options.masters if m != "flat"))
    return options_param(flat_free, ["DetrendOTA"])


def link_latest(path: str, name: str) -> None:
    """Point the symbolic link ``name`` beside ``path`` at it (atomically), so the folder works as ``-cals``."""
    link = os.path.join(os.path.dirname(path), name)
    tmp = f"{link}.tmp-{os.getpid()}"
    os.symlink(os.path.basename(path), tmp)
    os.replace(tmp, link)
