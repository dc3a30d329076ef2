"""Saturation catalogues and the persistency window (docs/reduction-steps.md, 'Saturation and persistency';
docs/calibrations.md, 'Saturation catalogues').

A saturation catalogue lists every raw pixel at or above the saturation limit (65535) of one OTA, as rows
``CELL_X, CELL_Y, X, Y`` (int16; X/Y are 0-based column/row in the raw cell array, overscan included).
QuickReduce keeps one file per exposure, ``<base>.saturated.fits``: a primary header with ``MJD-OBS`` and
``EXPTIME`` (copied from the raw primary) and one BinTable ``OTA%02d.SATPIX`` per OTA that has saturated
pixels. podiflow adds one primary card ``SATERR%02d`` per OTA whose raw file could not be read (the reason;
that OTA has no table and its saturated pixels are unknown). This module builds and reads that layout from
and to HDULists; the caller owns the path.

Selection (docs/reduction-steps.md, 'Saturation and persistency', ``[1 s, 600 s + EXPTIME_prev]``): a catalogue is
**this frame's** when ``|dMJD| < 1 s``; it is an **earlier** frame whose persistence counts when
``dt = (MJD_this - MJD_cat) * 86400 >= 1 s`` and ``dt - EXPTIME_cat <= window``.

The masks themselves are built by :func:`podisteps.detrend.masks.saturation_masks` (bleed trails and saturated
pixels of this frame) and :func:`podisteps.detrend.masks.persistency_mask` (earlier frames), which use the cell
geometry, so bin2 and the test instrument work (QuickReduce ignored the binning). Catalogues record
``CCDBIN1`` in their primary header so earlier frames of another binning map correctly.

A two-exponential decay model is available (:func:`persistence_model`, :func:`subtract_persistence`) but
not used by default: like QuickReduce, podiflow masks persistent pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

__all__ = [
    "SATURATION_LIMIT",
    "PERSISTENCY_WINDOW",
    "SATPIX_DTYPE",
    "SaturationCatalog",
    "saturated_pixels",
    "saturated_stored_pixels",
    "satpix_extname",
    "saturation_error_key",
    "saturation_catalog_name",
    "saturation_catalog_hdulist",
    "read_saturation_catalog",
    "is_same_frame",
    "in_persistency_window",
    "select_catalogs",
    "persistence_model",
    "subtract_persistence",
]

#: Raw counts at or above this are saturated (``sitesetup.saturation_limit``).
SATURATION_LIMIT = 65535

#: Seconds after the end of an earlier exposure during which its persistence is masked.
PERSISTENCY_WINDOW = 600.0

#: Row layout of a saturation table.
SATPIX_DTYPE = np.dtype([("CELL_X", "i2"), ("CELL_Y", "i2"), ("X", "i2"), ("Y", "i2")])

#: Primary cards copied into a catalogue (MJD-OBS and EXPTIME are required).
CATALOG_CARDS = ("MJD-OBS", "EXPTIME", "EXPMEAS", "OBSID", "FILENAME", "OBSTYPE", "DATE-OBS", "CCDBIN1", "CCDSUM")

SECONDS_PER_DAY = 86400.0

#: Seconds of slack on the window edges: MJD in float64 resolves ~1 microsecond, so a time difference
#: meant to be exactly 1 s or ``window + EXPTIME`` must not fall out of the window by rounding.
TIME_TOLERANCE = 1e-4


@dataclass(frozen=True)
class SaturationCatalog:
    """The saturation catalogue of one exposure.

    Attributes
    ----------
    mjd : float
        ``MJD-OBS`` (exposure start).
    exptime : float
        ``EXPTIME``, s.
    binning : int
        Binning of the raw frame (``CCDBIN1``, else ``CCDSUM``, else 1).
    tables : dict
        OTA number -> structured array of :data:`SATPIX_DTYPE`; OTAs without saturated pixels are absent.
    errors : dict
        OTA number -> why its raw file could not be read (``SATERR%02d`` cards); its saturated pixels are
        unknown.
    """

    mjd: float
    exptime: float
    binning: int
    tables: dict
    errors: dict = field(default_factory=dict)

    def table(self, ota: int) -> np.ndarray:
        """The rows of ``ota`` (empty when it had no saturated pixels)."""
        return self.tables.get(int(ota), np.zeros(0, dtype=SATPIX_DTYPE))

    def error(self, ota: int) -> str | None:
        """Why the raw file of ``ota`` could not be read, None when it was read."""
        return self.errors.get(int(ota))


def saturated_pixels(cells: dict, *, limit: float = SATURATION_LIMIT) -> np.ndarray:
    """List the saturated pixels of one OTA's raw cells.

    Parameters
    ----------
    cells : dict
        ``(cx, cy)`` -> raw cell array (overscan included), raw counts (before any correction).
    limit : float, optional
        Pixels ``>= limit`` are saturated.

    Returns
    -------
    numpy.ndarray
        Structured array of :data:`SATPIX_DTYPE`, ordered by cell (EXTNAME order), then row, then column.
    """
    # The usual cell has no saturated pixel: one fast pass instead of a full boolean image and its nonzero.
    return _pixel_table(cells, lambda cell: None if cell.max() < limit else cell >= limit)


#: A saturated pixel's stored word in a raw cell (BITPIX 16, BZERO 32768, big-endian): physical 65535 is
#: stored 32767, bytes 7F FF, here as the native uint16 those two bytes read as on this machine.
_SATURATED_WORD = np.array([SATURATION_LIMIT - 32768], dtype=">i2").view(np.uint16)[0]


def saturated_stored_pixels(cells: dict) -> np.ndarray:
    """:func:`saturated_pixels` of raw cells as stored in the file, without converting them to counts.

    Physical 65535, the largest value a raw pixel can hold, is the stored big-endian int16 32767, so the
    saturated pixels (``>= SATURATION_LIMIT``) are those whose two stored bytes are 7F FF: found by comparing
    the words as they are, with no byte swap and no BZERO addition.

    Parameters
    ----------
    cells : dict
        ``(cx, cy)`` -> stored cell array of dtype ``>i2`` (BITPIX 16, BZERO 32768), shape ``(ny, nx)``.

    Returns
    -------
    numpy.ndarray
        The same table as :func:`saturated_pixels` of the cells' counts.

    Raises
    ------
    TypeError
        If a cell is not a ``>i2`` array.
    """
    return _pixel_table(cells, _stored_hits)


def _stored_hits(cell: np.ndarray) -> np.ndarray | None:
    """Boolean image of the saturated stored words of one ``>i2`` cell, None when there is none."""
    if cell.dtype != np.dtype(">i2"):
        raise TypeError(f"a stored raw cell must be big-endian int16 ('>i2'), got {cell.dtype}")
    found = cell.view(np.uint16) == _SATURATED_WORD
    return found if found.any() else None


def _pixel_table(cells: dict, hits) -> np.ndarray:
    """The :data:`SATPIX_DTYPE` rows of ``cells``, in cell then row then column order.

    ``hits(cell)`` returns a boolean image of the cell's saturated pixels, or None when it has none.
    """
    parts = []
    for cx, cy in sorted(cells):
        found = hits(np.asarray(cells[(cx, cy)]))
        if found is None:
            continue
        y, x = np.nonzero(found)
        part = np.zeros(len(x), dtype=SATPIX_DTYPE)
        part["CELL_X"], part["CELL_Y"], part["X"], part["Y"] = cx, cy, x, y
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=SATPIX_DTYPE)


def satpix_extname(ota: int) -> str:
    """``OTA%02d.SATPIX``."""
    return f"OTA{int(ota):02d}.SATPIX"


def saturation_error_key(ota: int) -> str:
    """``SATERR%02d``: the primary card giving why the raw file of ``ota`` could not be read."""
    return f"SATERR{int(ota):02d}"


def saturation_catalog_name(filename: str) -> str:
    """Catalogue file name from the raw ``FILENAME`` card: the first two '.'-separated tokens + ``.saturated.fits``."""
    base = ".".join(str(filename).strip().split(".")[:2])
    return f"{base}.saturated.fits"


def saturation_catalog_hdulist(primary: fits.Header, tables: dict, *, errors: dict | None = None) -> fits.HDUList:
    """Build a catalogue file in QuickReduce's layout.

    Parameters
    ----------
    primary : astropy.io.fits.Header
        Raw primary header of the exposure (any OTA); must have ``MJD-OBS`` and ``EXPTIME``.
    tables : dict
        OTA number -> array from :func:`saturated_pixels`. Empty tables are not written.
    errors : dict, optional
        OTA number -> why its raw file could not be read; one ``SATERR%02d`` card each.

    Returns
    -------
    astropy.io.fits.HDUList
        Primary with the :data:`CATALOG_CARDS` present in ``primary`` and the ``SATERR%02d`` cards, then
        ``OTA%02d.SATPIX`` tables in ascending OTA order.
    """
    missing = [k for k in ("MJD-OBS", "EXPTIME") if k not in primary]
    if missing:
        raise ValueError(f"saturation catalogue needs {', '.join(missing)} in the primary header")
    header = fits.Header([(k, primary[k]) for k in CATALOG_CARDS if k in primary])
    for ota, reason in sorted((errors or {}).items()):
        header[saturation_error_key(ota)] = (str(reason), "raw file unreadable: saturated pixels unknown")
    hdus = [fits.PrimaryHDU(header=header)]
    for ota in sorted(tables):
        rows = np.asarray(tables[ota], dtype=SATPIX_DTYPE)
        if len(rows):
            hdus.append(fits.BinTableHDU(rows, name=satpix_extname(ota)))
    return fits.HDUList(hdus)


def _binning(header: fits.Header) -> int:
    if "CCDBIN1" in header:
        return int(header["CCDBIN1"])
    if "CCDSUM" in header:
        return int(str(header["CCDSUM"]).split()[0])
    return 1


def _is_satpix(name: str) -> bool:
    name = str(name).upper()
    return name.startswith("OTA") and name.endswith(".SATPIX")


def _satpix_hdus(hdul: fits.HDUList, otas) -> list:
    """``(ota, hdu)`` of the ``OTAnn.SATPIX`` tables of ``otas`` (every one when None).

    With ``otas`` given, only the wanted extensions are looked up by name, so a lazily opened file never
    loads the other OTAs' tables.
    """
    if otas is None:
        return [(int(hdu.name[3:5]), hdu) for hdu in hdul[1:] if _is_satpix(hdu.name)]
    found = []
    for ota in sorted(otas):
        try:
            found.append((ota, hdul[satpix_extname(ota)]))
        except KeyError:  # no saturated pixels on this OTA
            continue
    return found


def read_saturation_catalog(hdul: fits.HDUList, *, otas=None) -> SaturationCatalog:
    """Read a ``<base>.saturated.fits`` catalogue from an open HDUList.

    Extensions are recognised by their ``OTAnn.SATPIX`` name; other extensions are ignored.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open catalogue (lazily opened is best: see ``otas``).
    otas : iterable of int, optional
        Read only the tables (and ``SATERR%02d`` reasons) of these OTAs; the others are not loaded.
        Default: every OTA.

    Raises
    ------
    ValueError
        If the primary lacks ``MJD-OBS`` or ``EXPTIME`` or a table lacks a column; names the file.
    """
    source = hdul.filename() or "<saturation catalogue>"
    primary = hdul[0].header
    if "MJD-OBS" not in primary or "EXPTIME" not in primary:
        raise ValueError(f"{source}: saturation catalogue lacks MJD-OBS or EXPTIME in its primary header")
    otas = None if otas is None else {int(o) for o in otas}
    tables = {}
    for ota, hdu in _satpix_hdus(hdul, otas):
        missing = [c for c in SATPIX_DTYPE.names if c not in hdu.columns.names]
        if missing:
            raise ValueError(f"{source}: {satpix_extname(ota)} lacks column(s) {', '.join(missing)}")
        rows = np.zeros(len(hdu.data), dtype=SATPIX_DTYPE)
        for c in SATPIX_DTYPE.names:
            rows[c] = hdu.data[c]
        tables[ota] = rows
    errors = {int(key[6:]): str(value) for key, value in primary.items()
              if key.startswith("SATERR") and key[6:].isdigit() and (otas is None or int(key[6:]) in otas)}
    return SaturationCatalog(float(primary["MJD-OBS"]), float(primary["EXPTIME"]), _binning(primary), tables,
                             errors)


def is_same_frame(mjd: float, mjd_catalog: float) -> bool:
    """True when a catalogue belongs to this frame: ``|dMJD| < 1 s``."""
    return abs(float(mjd) - float(mjd_catalog)) * SECONDS_PER_DAY < 1.0


def in_persistency_window(
    mjd: float,
    mjd_catalog: float,
    exptime_catalog: float,
    *,
    window: float = PERSISTENCY_WINDOW,
) -> bool:
    """True when an earlier exposure's persistence affects this frame.

    Parameters
    ----------
    mjd : float
        ``MJD-OBS`` of this frame.
    mjd_catalog, exptime_catalog : float
        ``MJD-OBS`` and ``EXPTIME`` (s) of the earlier exposure.
    window : float, optional
        Seconds after the end of the earlier exposure (600).

    Returns
    -------
    bool
        ``dt >= 1 s and dt - exptime_catalog <= window`` with ``dt = (mjd - mjd_catalog) * 86400``
        (both edges inclusive, up to :data:`TIME_TOLERANCE`).
    """
    dt = (float(mjd) - float(mjd_catalog)) * SECONDS_PER_DAY
    return dt >= 1.0 - TIME_TOLERANCE and dt - float(exptime_catalog) <= window + TIME_TOLERANCE


def select_catalogs(mjd: float, candidates, *, window: float = PERSISTENCY_WINDOW) -> tuple[list, list]:
    """Pick this frame's catalogue(s) and the earlier ones within the persistency window.

    Parameters
    ----------
    mjd : float
        ``MJD-OBS`` of this frame.
    candidates : iterable of (key, mjd, exptime)
        Any key (path, obsid) with the catalogue's ``MJD-OBS`` and ``EXPTIME``.
    window : float, optional
        Persistency window, s.

    Returns
    -------
    this : list
        Keys of catalogues of this frame (normally one).
    earlier : list
        Keys of earlier catalogues in the window, ordered by MJD.
    """
    this, earlier = [], []
    for key, mjd_cat, exptime_cat in sorted(candidates, key=lambda c: float(c[1])):
        if is_same_frame(mjd, mjd_cat):
            this.append(key)
        elif in_persistency_window(mjd, mjd_cat, exptime_cat, window=window):
            earlier.append(key)
    return this, earlier


def persistence_model(dt, *, amplitudes, taus=(980.0, 210.0)) -> np.ndarray:
    """Residual charge of a saturated pixel ``dt`` seconds after its exposure ended: two exponentials.

    Parameters
    ----------
    dt : float or numpy.ndarray
        Time since the end of the saturating exposure, s.
    amplitudes : sequence of two floats
        Amplitudes at ``dt = 0``, ADU (no default: they must be measured).
    taus : sequence of two floats, optional
        Decay times, s (QuickReduce test fits started from 980 and 210 s).

    Returns
    -------
    numpy.ndarray
        ADU, shape of ``dt``.
    """
    dt = np.asarray(dt, dtype=np.float64)
    return sum(a * np.exp(-dt / t) for a, t in zip(amplitudes, taus, strict=True))


def subtract_persistence(sci: np.ndarray, region: np.ndarray, dt: float, *, amplitudes, taus=(980.0, 210.0)):
    """Subtract :func:`persistence_model` inside ``region`` (bool, frame shape); off by default in podiflow.

    Returns
    -------
    numpy.ndarray
        float32 copy of ``sci``.
    """
    out = np.array(sci, dtype=np.float32)
    out[region] -= np.float32(persistence_model(dt, amplitudes=amplitudes, taus=taus))
    return out
