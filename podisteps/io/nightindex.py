"""The night index: every exposure of one observing night, read from primary headers only.

The index is what the DAG is scheduled from (docs/architecture.md, 'The DAG'): it must be cheap to consult, so it
is cached on disk as JSON and rebuilt only when the night folder changes (an exposure folder added,
removed or modified; raw data are otherwise immutable).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from astropy.coordinates import Angle
from astropy.time import Time

from ..sanity import check_known_filter, exposure_consistency
from .atomic import write_text_atomic
from .rawio import OBSID_PATTERN, ExposureFiles, RawFormatError, check_raw_file, find_exposure_files, get_binning

__all__ = [
    "ExposureRecord",
    "check_ota_files",
    "exposure_record",
    "read_exposure_record",
    "NightIndex",
    "observing_night",
    "night_signature",
    "exposure_files_key",
    "scan_night",
    "load_night_index",
    "INDEX_VERSION",
]

#: Bumped whenever the record layout changes, so stale caches are rebuilt.
INDEX_VERSION = 3

#: An exposure folder's name.
OBSID_RE = re.compile(OBSID_PATTERN)

#: Kitt Peak local time is UT - 7 h (no daylight saving in Arizona).
KITT_PEAK_UTC_OFFSET_HOURS = -7.0


def observing_night(when, *, utc_offset_hours: float = KITT_PEAK_UTC_OFFSET_HOURS) -> str:
    """Return the observing night ``YYYYMMDD`` of an instant: the local date of (local time - 12 h).

    Parameters
    ----------
    when : float, str or datetime
        An MJD (float), an ISO time string (UT), or a datetime (naive = UT).
    utc_offset_hours : float, optional
        Local time minus UT, hours (Kitt Peak: -7).

    Returns
    -------
    str
        e.g. ``"20130101"`` for every exposure from local noon 2013-01-01 to local noon 2013-01-02.
    """
    if isinstance(when, (int, float)):
        dt = Time(float(when), format="mjd", scale="utc").to_datetime()
    elif isinstance(when, str):
        dt = Time(when, format="isot", scale="utc").to_datetime()
    else:
        dt = when.astimezone(timezone.utc).replace(tzinfo=None) if when.tzinfo else when
    local = dt + timedelta(hours=utc_offset_hours) - timedelta(hours=12)
    return local.strftime("%Y%m%d")


@dataclass(frozen=True)
class ExposureRecord:
    """What the scheduler needs to know about one exposure (from its primary header).

    Attributes
    ----------
    obsid : str
        Exposure folder name with prefix letter, ``o20130101T123456.0``.
    path : str
        The exposure folder.
    obstype : str
        OBSTYPE (BIAS, DARK, DFLAT, TFLAT, OBJECT, FOCUS, ...).
    filter : str
        FILTER.
    binning : int
        1 or 2.
    exptime, expmeas : float
        Requested and measured exposure time, s.
    mjd : float
        MJD-OBS at the exposure start.
    ra, dec : float
        Telescope pointing, deg (NaN if the header has none).
    object : str
        OBJECT.
    otas : tuple of int
        OTA files present and readable (headers and layout checked, see :func:`check_ota_files`).
    fz : bool
        True if the OTA files are Rice-compressed ``.fits.fz``.
    error : str
        Empty for a readable exposure; otherwise why it cannot be reduced (the night goes on).
    bad_otas : tuple of (int, str)
        OTA files left out of ``otas`` and why (each costs its OTA, not the exposure).
    """

    obsid: str
    path: str
    obstype: str = ""
    filter: str = ""
    binning: int = 1
    exptime: float = 0.0
    expmeas: float = 0.0
    mjd: float = 0.0
    ra: float = float("nan")
    dec: float = float("nan")
    object: str = ""
    otas: tuple = ()
    fz: bool = False
    error: str = ""
    bad_otas: tuple = ()


def _sexagesimal(value, unit) -> float:
    try:
        return float(Angle(str(value).strip(), unit=unit).degree)
    except (ValueError, TypeError):
        return float("nan")


def check_ota_files(files: ExposureFiles) -> tuple[dict, dict]:
    """Check every OTA file of an exposure (headers and layout, no pixels) and their agreement.

    Parameters
    ----------
    files : podisteps.io.rawio.ExposureFiles
        The exposure's OTA files.

    Returns
    -------
    good : dict
        ``OTA -> primary header`` of the files that can be reduced.
    bad : dict
        ``OTA -> reason`` (naming the file) of the others: unreadable or defective files, and files whose
        OBSID, MJD-OBS, FILTER or EXPTIME disagree with the exposure's.
    """
    good, bad = {}, {}
    for ota, path in files.files.items():
        try:
            header = check_raw_file(path)
        except RawFormatError as exc:
            bad[ota] = str(exc)
            continue
        fppos = str(header["FPPOS"]).strip()
        if int(fppos[2:]) != ota:
            bad[ota] = f"{path}: FPPOS = {fppos!r} but the file name says OTA {ota:02d}"
        else:
            good[ota] = header
    strays = exposure_consistency({str(files.files[o]): h for o, h in good.items()}, obsid=files.obsid)
    for ota in [o for o in good if str(files.files[o]) in strays]:
        bad[ota] = strays[str(files.files[ota])]
        del good[ota]
    return good, dict(sorted(bad.items()))


def _exposure_error(bad: dict) -> str:
    """Why an exposure without a single good OTA file cannot be reduced (the first reason, and a count)."""
    first = next(iter(bad.values()))
    return first if len(bad) == 1 else f"{first} (and {len(bad) - 1} more OTA file(s) with errors)"


def exposure_record(files: ExposureFiles) -> ExposureRecord:
    """Build the record of one exposure from the primary headers of its OTA files.

    Every OTA file is checked (:func:`check_ota_files`); bad ones are listed in ``bad_otas`` and left out.

    Raises
    ------
    RawFormatError
        If no OTA file is good (the first file's reason), or the exposure's OBSTYPE is missing or its
        FILTER unknown.
    """
    good, bad = check_ota_files(files)
    if not good:
        raise RawFormatError(_exposure_error(bad))
    first_ota, hdr = next(iter(good.items()))
    first = files.files[first_ota]
    if "OBSTYPE" not in hdr:
        raise RawFormatError(f"{first}: primary header lacks OBSTYPE")
    obstype = str(hdr["OBSTYPE"]).strip().upper()
    check_known_filter(str(first), obstype, str(hdr["FILTER"]))
    return ExposureRecord(
        obsid=files.obsid,
        path=str(files.directory),
        obstype=obstype,
        filter=str(hdr["FILTER"]).strip(),
        binning=get_binning(hdr),
        exptime=float(hdr["EXPTIME"]),
        expmeas=float(hdr.get("EXPMEAS", hdr["EXPTIME"])),
        mjd=float(hdr["MJD-OBS"]),
        ra=_sexagesimal(hdr.get("RA", ""), "hourangle"),
        dec=_sexagesimal(hdr.get("DEC", ""), "deg"),
        object=str(hdr.get("OBJECT", "")).strip(),
        otas=tuple(good),
        fz=str(first).endswith(".fz"),
        bad_otas=tuple(bad.items()),
    )


def read_exposure_record(folder: str | os.PathLike) -> ExposureRecord:
    """The record of one exposure folder (:func:`exposure_record`).

    Never raises for bad data: an unreadable exposure gets a record with ``error`` set.
    """
    folder = Path(folder)
    try:
        return exposure_record(find_exposure_files(folder))
    except (RawFormatError, ValueError, TypeError, KeyError) as exc:
        return ExposureRecord(obsid=folder.name, path=str(folder), error=str(exc))


def night_signature(night_dir: str | os.PathLike) -> list:
    """Return what identifies the state of a night folder: (name, mtime_ns) of every entry in it.

    Adding, removing or rewriting an OTA file changes its folder's mtime (a rename or a new file does).
    Hidden entries (``.name``) are left out, and so are entries removed while the folder is read and links
    to nothing.
    """
    night_dir = Path(night_dir)
    sig = []
    with os.scandir(night_dir) as it:
        for entry in it:
            if not entry.name.startswith("."):
                try:
                    sig.append([entry.name, entry.stat().st_mtime_ns])
                except FileNotFoundError:
                    continue
    return sorted(sig)


def stray_reason(path: Path) -> str:
    """Why an entry of a night folder that is not an exposure folder is ignored (one line naming it)."""
    kind = "folder" if path.is_dir() else "file"
    return f"{path}: a {kind} that is not an exposure folder <obsid>/ (e.g. o20130101T123456.0/): ignored"


@dataclass(frozen=True)
class NightIndex:
    """All exposures of one night, sorted by MJD.

    Attributes
    ----------
    night : str
        ``YYYYMMDD``.
    exposures : tuple of ExposureRecord
    strays : tuple of (str, str)
        Entries of the night folder that are not exposure folders (a loose FITS file, another folder) and
        the line saying they were ignored.
    """

    night: str
    exposures: tuple
    strays: tuple = ()

    def by_obsid(self) -> dict:
        """Return ``{obsid: record}``."""
        return {e.obsid: e for e in self.exposures}

    def select(self, *, obstype: str | None = None, filter: str | None = None,
               binning: int | None = None) -> tuple:
        """Return the readable exposures matching the given OBSTYPE, FILTER and binning."""
        out = []
        for e in self.exposures:
            if e.error:
                continue
            if obstype is not None and e.obstype != obstype.upper():
                continue
            if filter is not None and e.filter != filter:
                continue
            if binning is not None and e.binning != binning:
                continue
            out.append(e)
        return tuple(out)

    @property
    def failed(self) -> tuple:
        """Exposures that cannot be read, each with its ``error``."""
        return tuple(e for e in self.exposures if e.error)


def exposure_files_key(folder: str | os.PathLike) -> list:
    """Return what an exposure's record is read from: ``[name, size, mtime_ns]`` of every entry of its folder.

    A record made when this key was the same is still right (raw files are replaced, not edited in place
    keeping their size and mtime).
    """
    with os.scandir(folder) as it:
        return sorted([e.name, st.st_size, st.st_mtime_ns] for e in it for st in [e.stat()])


def scan_night(night_dir: str | os.PathLike) -> NightIndex:
    """Read every exposure folder of ``night_dir`` into a :class:`NightIndex` (no caching)."""
    return _scan(Path(night_dir), {})[0]


def _scan(night_dir: Path, known: dict) -> tuple[NightIndex, dict]:
    """:func:`scan_night`, reusing ``known`` (``obsid -> (files key, record)``) for an exposure whose
    :func:`exposure_files_key` is unchanged; also return the ``obsid -> (files key, record)`` of this scan."""
    if not night_dir.is_dir():
        raise FileNotFoundError(f"{night_dir}: no such night folder")
    names = [name for name, _ in night_signature(night_dir)]
    exposure = [n for n in names if OBSID_RE.fullmatch(n) and (night_dir / n).is_dir()]
    scanned = {}
    for name in exposure:
        try:
            key = exposure_files_key(night_dir / name)
        except OSError:  # gone since the folder was listed: read_exposure_record says so
            key = None
        old_key, record = known.get(name, (None, None))
        reuse = key is not None and old_key == key
        scanned[name] = (key, record if reuse else read_exposure_record(night_dir / name))
    records = sorted((r for _, r in scanned.values()), key=lambda r: (r.mjd, r.obsid))
    strays = tuple((n, stray_reason(night_dir / n)) for n in names if n not in exposure)
    return NightIndex(night=night_dir.name, exposures=tuple(records), strays=strays), scanned


def _record(fields: dict) -> ExposureRecord:
    """An :class:`ExposureRecord` from its JSON form (``dataclasses.asdict``)."""
    return ExposureRecord(**{**fields, "otas": tuple(fields["otas"]),
                             "bad_otas": tuple((int(o), e) for o, e in fields["bad_otas"])})


def _read_json(path: Path) -> dict:
    """The JSON object in ``path`` if it was written with :data:`INDEX_VERSION`, else ``{}``."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) and payload.get("version") == INDEX_VERSION else {}


def _known_exposures(path: Path) -> dict:
    """``obsid -> (files key, record)`` of the exposure records cached in ``path`` (``{}`` if unusable)."""
    try:
        return {obsid: (entry["files"], _record(entry["record"]))
                for obsid, entry in _read_json(path).get("exposures", {}).items()}
    except (KeyError, TypeError, ValueError):
        return {}


def load_night_index(night_dir: str | os.PathLike, cache_path: str | os.PathLike) -> NightIndex:
    """Return the night index, from ``cache_path`` if it is current, else rescanned and re-cached.

    A rescan (the night folder changed: an exposure added while observing) reads again only the exposures
    whose files changed (:func:`exposure_files_key`); the others' records come from
    ``<cache_path stem>.exposures.json``, written beside the cache.

    Parameters
    ----------
    night_dir : path-like
        ``<raw>/<night>``.
    cache_path : path-like
        JSON cache file (written atomically).
    """
    night_dir, cache_path = Path(night_dir), Path(cache_path)
    signature = night_signature(night_dir)
    cached = _read_json(cache_path)
    if cached.get("signature") == signature:
        try:
            return NightIndex(night=cached["night"], exposures=tuple(_record(r) for r in cached["exposures"]),
                              strays=tuple(tuple(x) for x in cached["strays"]))
        except (KeyError, TypeError, ValueError):
            pass
    per_exposure = cache_path.with_suffix(".exposures.json")
    index, scanned = _scan(night_dir, _known_exposures(per_exposure))
    payload = {
        "version": INDEX_VERSION,
        "night": index.night,
        "signature": signature,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exposures": [asdict(e) for e in index.exposures],
        "strays": [list(x) for x in index.strays],
    }
    write_text_atomic(json.dumps(payload, indent=1, allow_nan=True), cache_path)
    exposures = {obsid: {"files": key, "record": asdict(r)} for obsid, (key, r) in scanned.items()}
    write_text_atomic(json.dumps({"version": INDEX_VERSION, "exposures": exposures}, allow_nan=True), per_exposure)
    return index
