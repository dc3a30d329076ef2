"""Raw ODI OTA files: finding them, reading them into cells, resolving calibration paths (writing them:
:mod:`podisteps.io.rawwrite`).

Raw format (docs/formats.md, 'Raw exposures'): one file per OTA,
``<dir>/<base>.<OTA:02d>.fits`` or ``.fits.fz``, with a header-only primary and 64 cell image HDUs
``xy00`` .. ``xy77`` of uint16 (BITPIX 16, BZERO 32768). Cells are looked up by lower-cased EXTNAME;
``WN_CELLX``/``WN_CELLY`` must agree with it.
"""

from __future__ import annotations

import mmap
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits

from .. import instrument
from ..errors import RawFormatError
from .rawheaders import check_count, check_extent, walk_hdus, walk_headers

__all__ = [
    "RawFormatError",
    "ExposureFiles",
    "RawOTA",
    "OTA_FILE_RE",
    "OBSID_PATTERN",
    "ota_filename",
    "find_exposure_files",
    "read_primary_header",
    "check_raw_file",
    "read_raw_ota",
    "read_raw_stored",
    "get_binning",
    "resolve_file_or_dir",
    "REQUIRED_PRIMARY_KEYS",
]

#: An exposure name: ``<letter><YYYYMMDD>T<HHMMSS>.<n>``.
OBSID_PATTERN = r"[a-z]\d{8}T\d{6}\.\d+"

#: ``<base>.<OTA>.fits[.fz]`` where base is an exposure name.
OTA_FILE_RE = re.compile(rf"^(?P<base>{OBSID_PATTERN})\.(?P<ota>\d{{2}})\.fits(?P<fz>\.fz)?$")

#: Primary keywords without which an OTA cannot be reduced (docs/formats.md, 'Raw primary header').
REQUIRED_PRIMARY_KEYS = (
    "OBSID", "FILTER", "OBJECT", "EXPTIME", "DATE-OBS", "MJD-OBS", "FPPOS", "RA", "DEC", "OTA_ID", "CELLMODE",
    "FLTARM1A", "FLTARM1B", "FLTARM1C", "FLTARM2A", "FLTARM2B", "FLTARM2C", "FLTARM3A", "FLTARM3B", "FLTARM3C",
)


def ota_filename(base: str, ota: int, *, fz: bool = False) -> str:
    """Return the raw file name of OTA ``ota`` of exposure ``base`` (``o20130101T123456.0.33.fits``)."""
    return f"{base}.{ota:02d}.fits" + (".fz" if fz else "")


@dataclass(frozen=True)
class ExposureFiles:
    """The raw OTA files of one exposure.

    Attributes
    ----------
    obsid : str
        Exposure name with its prefix letter, e.g. ``o20130101T123456.0``.
    directory : pathlib.Path
        The exposure folder.
    files : dict
        OTA number -> path, in ascending OTA order.
    """

    obsid: str
    directory: Path
    files: dict = field(default_factory=dict)

    @property
    def otas(self) -> tuple[int, ...]:
        """OTA numbers present."""
        return tuple(self.files)


def find_exposure_files(path: str | os.PathLike) -> ExposureFiles:
    """Find the OTA files of an exposure from its folder or from any one of its OTA files.

    Parameters
    ----------
    path : path-like
        An exposure folder ``.../o20130101T123456.0/`` or one file ``.../o20130101T123456.0.33.fits``.

    Raises
    ------
    RawFormatError
        If the path does not exist, holds no OTA files, or holds OTA files of several exposures; or
        if an OTA is present both as ``.fits`` and ``.fits.fz``.
    """
    path = Path(path)
    if path.is_file():
        m = OTA_FILE_RE.match(path.name)
        if not m:
            raise RawFormatError(f"{path}: not a raw OTA file name (<obsid>.<OTA>.fits[.fz])")
        base, directory = m["base"], path.parent
    elif path.is_dir():
        base, directory = path.name, path
    else:
        raise RawFormatError(f"{path}: no such exposure folder or OTA file")

    found: dict[int, Path] = {}
    bases: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(directory)):
        m = OTA_FILE_RE.match(entry)
        if not m:
            continue
        bases.setdefault(m["base"], []).append(entry)
        if m["base"] != base and path.is_file():
            continue
        ota = int(m["ota"])
        if ota in found:
            raise RawFormatError(f"{directory}: OTA {ota:02d} is present twice ({found[ota].name}, {entry})")
        found[ota] = directory / entry
    if path.is_dir():
        if len(bases) > 1 or (bases and base not in bases):
            detail = "; ".join(f"{b}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for b, v in bases.items())
            raise RawFormatError(
                f"{directory}: OTA files of {len(bases)} different exposures in one folder "
                f"(the folder name says {base}): {detail}"
            )
    if not found:
        raise RawFormatError(f"{directory}: no raw OTA files named {base}.<OTA>.fits[.fz]")
    return ExposureFiles(obsid=base, directory=directory, files=dict(sorted(found.items())))


@contextmanager
def _open(path: Path):
    """Open a FITS file for reading; any failure (also astropy's truncation warning) is a RawFormatError.

    The file handle is ours, so it is closed whatever astropy does on a corrupt file.
    """
    if path.is_file() and path.stat().st_size == 0:
        raise RawFormatError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as fh, warnings.catch_warnings():
        # astropy only warns about a truncated file; for raw data that is an error.
        warnings.filterwarnings("error", message=".*truncated.*")
        try:
            hdul = fits.open(fh, memmap=False, lazy_load_hdus=True)
        except (OSError, ValueError, TypeError, IndexError, Warning) as exc:
            raise RawFormatError(f"{path}: not a readable FITS file ({exc})") from None
        with hdul:
            yield hdul


def read_primary_header(path: str | os.PathLike) -> fits.Header:
    """Read only the primary header of a raw OTA file.

    Raises
    ------
    RawFormatError
        If the file is empty or not FITS.
    """
    path = Path(path)
    with _open(path) as hdul:
        return hdul[0].header


def get_binning(header: fits.Header) -> int:
    """Return the binning from ``CCDBIN1``, else the first integer of ``CCDSUM``, else 1."""
    if "CCDBIN1" in header:
        return int(header["CCDBIN1"])
    if "CCDSUM" in header:
        return int(str(header["CCDSUM"]).split()[0])
    return 1


@dataclass
class RawOTA:
    """One raw OTA file read into memory.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    primary : astropy.io.fits.Header
        The primary header.
    cells : dict
        ``(cx, cy)`` -> raw cell array, shape ``(ny, nx)``; dtype as requested (uint16 or float32).
    cell_headers : dict
        ``(cx, cy)`` -> cell header: a mapping keyword -> value (an ``astropy.io.fits.Header`` for ``.fz``
        files and unusual layouts, a :class:`podisteps.io.rawheaders.Cards` of the value cards for plain
        uint16 files).
    geometry : podisteps.instrument.CellGeometry
        The detector geometry recognised from the cell shape and binning.
    """

    path: Path
    primary: fits.Header
    cells: dict
    cell_headers: dict
    geometry: instrument.CellGeometry

    @property
    def ota(self) -> int:
        """The OTA position number, ``int(FPPOS[2:])``."""
        return int(str(self.primary["FPPOS"]).strip()[2:])

    @property
    def binning(self) -> int:
        """On-chip binning (1 or 2)."""
        return self.geometry.binning


def _number(path: Path, header: fits.Header, key: str, *, minimum: float) -> None:
    """RawFormatError unless ``header[key]`` is a finite number >= ``minimum``."""
    try:
        value = float(header[key])
    except (TypeError, ValueError):
        raise RawFormatError(f"{path}: {key} = {header[key]!r} is not a number") from None
    if not np.isfinite(value) or value < minimum:
        raise RawFormatError(f"{path}: {key} = {header[key]!r} is out of range (expected a number >= {minimum:g})")


def _angle(path: Path, header: fits.Header, key: str, unit: str) -> None:
    """RawFormatError unless ``header[key]`` is an angle (sexagesimal or decimal) in ``unit``."""
    try:
        Angle(str(header[key]).strip(), unit=unit)
    except (TypeError, ValueError):
        raise RawFormatError(f"{path}: {key} = {header[key]!r} is not an angle") from None


def _check_primary(path: Path, header: fits.Header, required) -> None:
    missing = [k for k in required if k not in header]
    if missing:
        raise RawFormatError(f"{path}: primary header lacks required keyword(s) {', '.join(missing)}")
    fppos = str(header.get("FPPOS", "xy00")).strip()
    if not re.fullmatch(r"xy\d\d", fppos):
        raise RawFormatError(f"{path}: FPPOS = {fppos!r} is not of the form 'xyNN'")
    if "CELLMODE" in header and len(str(header["CELLMODE"])) != 64:
        raise RawFormatError(f"{path}: CELLMODE has {len(str(header['CELLMODE']))} characters, expected 64")
    for key, minimum in (("MJD-OBS", 1.0), ("EXPTIME", 0.0)):
        if key in header:
            _number(path, header, key, minimum=minimum)
    for key, unit in (("RA", "hourangle"), ("DEC", "deg")):
        if key in header:
            _angle(path, header, key, unit)
    for key in ("OTA_ID", "FILTER", "OBSID"):
        if key in header and not str(header[key]).strip():
            raise RawFormatError(f"{path}: {key} is empty")


def _all_hdus(path: Path, hdul: fits.HDUList) -> list:
    """Every HDU of ``hdul`` (headers parsed, data not read), checked to lie inside the file.

    Raises
    ------
    RawFormatError
        Truncated or corrupt structure, or fewer than 65 HDUs.
    """
    try:
        hdus = list(hdul)
        last = hdul.fileinfo(len(hdus) - 1)
    except (OSError, ValueError, TypeError, IndexError, KeyError, Warning) as exc:
        raise RawFormatError(f"{path}: truncated or corrupt FITS file ({exc})") from None
    check_extent(path, last["datLoc"] + last["datSpan"])
    check_count(path, len(hdus))
    return hdus


def _cell_id(path: Path, hdr) -> tuple[int, int] | None:
    """``(cx, cy)`` of a cell from its header's EXTNAME, checked against WN_CELLX/Y; None for an empty extra HDU."""
    name = str(hdr.get("EXTNAME", "")).strip().lower()
    if not re.fullmatch(r"xy[0-7][0-7]", name):
        if hdr.get("NAXIS", 0) == 0 and not name:
            return None
        raise RawFormatError(f"{path}: extension {name or '(no EXTNAME)'!r} is not a cell xy<cx><cy>")
    cx, cy = int(name[2]), int(name[3])
    absent = [k for k in ("WN_CELLX", "WN_CELLY") if k not in hdr]
    if absent:
        raise RawFormatError(f"{path}: cell {name} lacks {'/'.join(absent)}")
    wx, wy = hdr["WN_CELLX"], hdr["WN_CELLY"]
    try:
        agree = (int(wx), int(wy)) == (cx, cy)
    except (TypeError, ValueError):
        agree = False
    if not agree:
        raise RawFormatError(f"{path}: cell {name} has WN_CELLX/Y = {wx}/{wy}, disagreeing with EXTNAME")
    return cx, cy


def _shape(hdr) -> tuple:
    """The image shape ``(ny, nx)`` of a cell from its header (``ZNAXISn`` of a Rice-compressed cell)."""
    prefix = "ZNAXIS" if "ZNAXIS" in hdr else "NAXIS"
    return tuple(int(hdr.get(f"{prefix}{i}", 0)) for i in range(int(hdr.get(prefix, 0)), 0, -1))


def _cell_index(path: Path, headers: list) -> tuple[dict, tuple[int, int]]:
    """``{(cx, cy): index into headers}`` of the 64 cells and their common shape ``(ny, nx)``.

    Raises
    ------
    RawFormatError
        A cell missing, named twice, without WN_CELLX/Y or disagreeing with them, not 2-D, or of
        another shape than the others.
    """
    cells: dict = {}
    shape = None
    for i, hdr in enumerate(headers[1:], start=1):
        cid = _cell_id(path, hdr)
        if cid is None:
            continue
        name = f"xy{cid[0]}{cid[1]}"
        if cid in cells:
            raise RawFormatError(f"{path}: cell {name} appears twice")
        this = _shape(hdr)
        if len(this) != 2:
            raise RawFormatError(f"{path}: cell {name} holds no 2-D image")
        if shape is None:
            shape = this
        elif this != shape:
            raise RawFormatError(f"{path}: cell {name} has shape {this}, the other cells {shape}")
        cells[cid] = i
    missing = [f"xy{cx}{cy}" for cx, cy in instrument.CELL_IDS if (cx, cy) not in cells]
    if missing:
        raise RawFormatError(f"{path}: cell(s) {', '.join(missing[:8])} missing")
    return cells, shape


def _geometry(path: Path, shape: tuple[int, int], first_cell: fits.Header) -> instrument.CellGeometry:
    try:
        return instrument.geometry_for_cell_shape(shape, get_binning(first_cell))
    except ValueError as exc:
        raise RawFormatError(f"{path}: {exc}") from None


def _as_dtype(data: np.ndarray, dtype) -> np.ndarray:
    """``data`` as ``dtype``; a float cell that an integer ``dtype`` cannot hold (NaN, out of range) is zeros.

    Such a cell holds no real data (:func:`podisteps.sanity.bad_cells` flags it when read as float).
    """
    if data.dtype == dtype:
        return data
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        info, finite = np.iinfo(dtype), np.isfinite(data)
        if not finite.all() or data.min() < info.min or data.max() > info.max:
            return np.zeros(data.shape, dtype)
    return data.astype(dtype, copy=False)


def check_raw_file(path: str | os.PathLike, *, required_keys=REQUIRED_PRIMARY_KEYS) -> fits.Header:
    """Check a raw OTA file's headers and layout without reading its pixels; return its primary header.

    Everything :func:`read_raw_ota` checks except the pixel data itself: cheap enough for the night index
    to run on every OTA file (headers are read, data sections are skipped).

    Parameters
    ----------
    path : path-like
        The raw OTA file.
    required_keys : sequence of str, optional
        Primary keywords that must be present.

    Raises
    ------
    RawFormatError
        See :func:`read_raw_ota`; the message names the file and the keyword or value.
    """
    path = Path(path)
    headers = walk_headers(path)
    _layout(path, headers, required_keys)
    return headers[0]


def _layout(path: Path, headers: list, required_keys) -> tuple[dict, tuple[int, int], instrument.CellGeometry]:
    """Check a raw OTA file's headers; return its cell index, cell shape and geometry (see :func:`_cell_index`)."""
    _check_primary(path, headers[0], required_keys)
    index, shape = _cell_index(path, headers)
    return index, shape, _geometry(path, shape, headers[index[(0, 0)]])


def _plain_uint16(hdr) -> bool:
    """True for an uncompressed cell stored the standard way: BITPIX 16, BZERO 32768, BSCALE 1, no BLANK."""
    return (hdr.get("XTENSION") == "IMAGE" and hdr.get("BITPIX") == 16 and hdr.get("BZERO") == 32768
            and hdr.get("BSCALE", 1) == 1 and "BLANK" not in hdr)


def _plain_layout(path: Path, required_keys) -> tuple | None:
    """Headers, data offsets, cell index, cell shape and geometry of a checked raw file; None unless every cell
    is plain uint16 (:func:`_plain_uint16`).

    The headers are walked block by block (:func:`podisteps.io.rawheaders.walk_hdus`) with the checks of
    astropy's path; the primary gets ``EXTEND`` as astropy adds it when it reads a file with extensions.
    """
    headers, offsets = walk_hdus(path)
    index, shape, geo = _layout(path, headers, required_keys)
    if not all(_plain_uint16(headers[i]) for i in index.values()):
        return None
    primary = headers[0]
    if "EXTEND" not in primary:
        naxis = int(primary.get("NAXIS", 0))
        primary.set("EXTEND", True, after=f"NAXIS{naxis}" if naxis else "NAXIS")
    return headers, offsets, index, shape, geo


def _plain_ota(path: Path, layout: tuple, cells: dict) -> RawOTA:
    """The :class:`RawOTA` of a plain file from its :func:`_plain_layout` and its ``cells``."""
    headers, _, index, _, geo = layout
    return RawOTA(path=path, primary=headers[0], cells=cells,
                  cell_headers={c: headers[i] for c, i in index.items()}, geometry=geo)


def _read_plain(path: Path, required_keys, dtype) -> RawOTA | None:
    """:func:`read_raw_ota` of a plain file without astropy's HDU objects; None unless every cell is plain uint16.

    Each cell's data is read straight from its offset: big-endian int16 with BZERO 32768, whose unsigned
    value is the stored bits with the sign bit flipped. Values and checks are those of astropy's path.
    """
    layout = _plain_layout(path, required_keys)
    if layout is None:
        return None
    _, offsets, index, shape, _ = layout
    cells = {}
    with open(path, "rb") as fh:
        for cid, i in index.items():
            fh.seek(offsets[i])
            data = np.fromfile(fh, dtype=">u2", count=shape[0] * shape[1]).reshape(shape).astype(np.uint16)
            data ^= np.uint16(0x8000)
            cells[cid] = _as_dtype(data, dtype)
    return _plain_ota(path, layout, cells)


def read_raw_stored(path: str | os.PathLike, *, required_keys=REQUIRED_PRIMARY_KEYS) -> RawOTA | None:
    """Read a plain raw OTA file's cells as stored (big-endian int16, BZERO 32768), without converting them.

    The file is memory-mapped and each cell is a read-only ``>i2`` view of its data section (which
    :func:`podisteps.io.rawheaders.walk_hdus` checked to lie inside the file): no copy, no byte swap, no
    BZERO addition (count = stored + 32768). Headers and checks are those of :func:`read_raw_ota`, so a bad
    file raises the same error.

    Parameters
    ----------
    path, required_keys
        As for :func:`check_raw_file`.

    Returns
    -------
    RawOTA or None
        Cells of dtype ``>i2``, shape ``(ny, nx)``; None for a ``.fz`` file or one with a cell not stored
        as plain uint16 (read those with :func:`read_raw_ota`).

    Raises
    ------
    RawFormatError
        As :func:`read_raw_ota`.
    """
    path = Path(path)
    layout = None if path.name.endswith(".fz") else _plain_layout(path, required_keys)
    if layout is None:
        return None
    _, offsets, index, shape, _ = layout
    with open(path, "rb") as fh:  # the map outlives the handle; the cells keep it alive
        words = np.frombuffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
    size = 2 * shape[0] * shape[1]
    cells = {cid: words[offsets[i]:offsets[i] + size].view(">i2").reshape(shape) for cid, i in index.items()}
    return _plain_ota(path, layout, cells)


def read_raw_ota(
    path: str | os.PathLike,
    *,
    dtype=np.float32,
    required_keys=REQUIRED_PRIMARY_KEYS,
) -> RawOTA:
    """Read a raw OTA file (plain or Rice ``.fz``) into its 64 cells and headers.

    Parameters
    ----------
    path : path-like
        The raw OTA file.
    dtype : numpy dtype, optional
        Type of the returned cell arrays: float32 (default, counts as floats) or uint16 (raw values).
    required_keys : sequence of str, optional
        Primary keywords that must be present.

    Returns
    -------
    RawOTA

    Raises
    ------
    RawFormatError
        Empty, not FITS or truncated; fewer than 65 HDUs; a missing required keyword or a value that is
        not a number/angle where one is needed (MJD-OBS, EXPTIME, RA, DEC); a cell missing, named twice,
        of the wrong shape, without WN_CELLX/Y or disagreeing with its EXTNAME, or shorter than the data
        section.
    """
    path = Path(path)
    fast = None if path.name.endswith(".fz") else _read_plain(path, required_keys, dtype)
    if fast is not None:
        return fast
    with _open(path) as hdul:
        hdus = _all_hdus(path, hdul)
        primary = hdus[0].header
        index, shape, geo = _layout(path, [h.header for h in hdus], required_keys)
        cells, headers = {}, {}
        for cid, i in index.items():
            try:
                data = hdus[i].data
            except (OSError, ValueError, TypeError, Warning) as exc:
                raise RawFormatError(f"{path}: cell xy{cid[0]}{cid[1]} cannot be read ({exc})") from None
            if data is None or data.shape != shape:
                raise RawFormatError(f"{path}: cell xy{cid[0]}{cid[1]} holds no {shape} image")
            cells[cid] = _as_dtype(data, dtype)
            headers[cid] = hdus[i].header
    return RawOTA(path=path, primary=primary, cells=cells, cell_headers=headers, geometry=geo)


def resolve_file_or_dir(value: str | os.PathLike | None, default_name: str) -> Path | None:
    """Resolve a calibration option value the way QuickReduce's ``check_filename_directory`` does.

    Parameters
    ----------
    value : str, path-like or None
        A file, a folder (then ``default_name`` is appended), or a comma-separated list of either;
        the first candidate that exists wins.
    default_name : str
        File name used inside a folder, e.g. ``"bias_bin1.fits"``.

    Returns
    -------
    pathlib.Path or None
        The first existing candidate, or None if none exists (or ``value`` is empty).
    """
    if value in (None, ""):
        return None
    for item in str(value).split(","):
        item = item.strip()
        if not item:
            continue
        candidate = Path(item)
        if candidate.is_dir():
            candidate = candidate / default_name
        if candidate.is_file():
            return candidate
    return None
