"""Which calibration files an exposure's detrending reads (resolved at scheduling time, stats only).

Sources, by option (``workflows.options``):

- ``-cals=dir[,dir]`` with per-type ``-bias``/``-dark``/``-flat``/``-illumcorr`` overrides: master files in
  QuickReduce's names (``bias_bin<B>.fits``, ``dark_yes_bin<B>.fits``, ``<type>_<FILTER>_bin<B>.fits``
  searched tflat, dflat, flat, ``illumination__<FILTER>_bin<B>.fits``);
- ``-crosstalk``, ``-nonlinearity``, ``-wcs``: a file, a folder with the type's ``.history``, or ``auto`` =
  the mastercals tree (``[podiflow] mastercals_dir``) chosen by MJD and layout;
- ``-bpm``: a folder of ``bpm_xyNN.reg`` files, one file for every OTA, or ``auto`` = ``bpm/<layout>/``;
- ``-photflat``: a file, a folder holding ``photflat_<FILTER>_bin<B>.fits``, or ``auto`` = the ``-cals``
  folders (where QuickReduce keeps it, spec section 5.1).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from podisteps import calibrate, history, instrument
from podisteps.calibrate import CalibrationError
from podisteps.photflat import photflat_filename
from podisteps.nightindex import ExposureRecord
from podisteps.rawio import resolve_file_or_dir

from .options import ReductionOptions
from .paths import mastercals_root

__all__ = ["CalibrationFiles", "resolve_calibrations", "bpm_file", "FALLBACKS", "warn_once"]

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
