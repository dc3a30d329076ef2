"""Bad-pixel regions, saturation, bleed and persistency masks (docs/reduction-steps.md, 'Bad-pixel regions' and
'Saturation and persistency').

BPM region files (``bpm_xyNN.reg``) are ds9 region files in full-size **bin1** OTA pixel coordinates,
1-based as ds9 writes them. The reader accepts what ds9 writes: ``box(...)``, ``image;box(...)``, several
regions on one line, indented lines, ``# vector(...)`` and bare ``vector(...)``, a last line without a
newline. Every line that describes a region but is not used is reported with the reason.

Fixed QuickReduce defects (docs/quickreduce.md, 'Bad-pixel regions'; docs/calibrations.md, 'Bad-pixel region files'):

- box angles are honoured (the box is rotated about its centre, counter-clockwise in degrees as in ds9);
- ds9 1-based centres are converted: ds9 pixel ``i`` covers ``[i - 0.5, i + 0.5)``, numpy index ``i - 1``;
  a pixel is masked when its centre lies inside the box, lower edges inclusive, upper edges exclusive;
- coordinates are divided by ``geometry.scale`` (bin2 or the scaled-down test OTAs);
- regions entirely outside the OTA frame (e.g. mosaic coordinates) are reported, not silently dropped.

Vectors mask one pixel row (angle within 3 degrees of 0 or 180) or one pixel column (within 3 degrees of
90 or 270) over the extent of the cell holding the vector's start point (the angle is not truncated to
an integer first, as QuickReduce did). ``image`` and ``physical`` coordinates are both taken as OTA pixels,
as QuickReduce did; regions in sky systems are reported as ignored.

Saturation catalogues (see :mod:`podisteps.detrend.persistency`) give raw-cell pixels; :func:`saturation_masks` and
:func:`persistency_mask` map them into the OTA frame through the cell placement of the geometry.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..instrument import CellGeometry, cellmode_char
from ..maskbits import MASK_BITS

__all__ = [
    "BoxRegion",
    "VectorRegion",
    "IgnoredLine",
    "RegionFile",
    "parse_ds9_regions",
    "read_bpm_regions",
    "split_regions_in_frame",
    "rasterise_bpm",
    "bpm_mask",
    "apply_mask",
    "saturation_masks",
    "persistency_mask",
    "unused_cell_cards",
]

#: Tolerance in degrees for a vector to count as horizontal or vertical.
VECTOR_ANGLE_TOLERANCE = 3.0

#: Coordinate systems whose numbers are OTA pixels (QuickReduce used them as such).
PIXEL_SYSTEMS = ("image", "physical")
SKY_SYSTEMS = ("fk4", "fk5", "icrs", "galactic", "ecliptic", "wcs", "linear", "amplifier", "detector") + tuple(
    f"wcs{c}" for c in "abcdefghijklmnopqrstuvwxyz"
)

_SHAPE = re.compile(r"^([+-]?)\s*([a-z]+)\s*\(([^)]*)\)", re.IGNORECASE)


@dataclass(frozen=True)
class BoxRegion:
    """A ds9 ``box(x, y, width, height, angle)`` in 1-based bin1 OTA pixels, angle in degrees."""

    x: float
    y: float
    width: float
    height: float
    angle: float
    line: int


@dataclass(frozen=True)
class VectorRegion:
    """A ds9 ``vector(x, y, length, angle)`` in 1-based bin1 OTA pixels, angle in degrees."""

    x: float
    y: float
    length: float
    angle: float
    line: int


@dataclass(frozen=True)
class IgnoredLine:
    """A region line that is not used, with its 1-based line number and the reason."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class RegionFile:
    """Parsed regions (in file order) and the lines that were ignored."""

    regions: tuple
    ignored: tuple


def _numbers(args: str) -> list[float] | None:
    try:
        return [float(a) for a in re.split(r"[,\s]+", args.strip()) if a]
    except ValueError:
        return None


def _region(sign: str, shape: str, args: str, number: int, text: str):
    """Return a region or an IgnoredLine for one ``shape(args)`` command."""
    shape = shape.lower()
    if sign == "-":
        return IgnoredLine(number, text, f"excluded region '-{shape}' is not a bad-pixel region")
    if shape not in ("box", "vector"):
        return IgnoredLine(number, text, f"shape '{shape}' is not used (only box and vector)")
    values = _numbers(args)
    if values is None:
        return IgnoredLine(number, text, f"{shape} arguments {args!r} are not plain pixel numbers")
    if shape == "box" and len(values) in (4, 5):
        return BoxRegion(*values[:4], values[4] if len(values) == 5 else 0.0, line=number)
    if shape == "vector" and len(values) == 4:
        return VectorRegion(*values, line=number)
    expected = "4 or 5" if shape == "box" else "4"
    return IgnoredLine(number, text, f"{shape} with {len(values)} arguments (expected {expected})")


def _commands(line: str) -> list[str]:
    """Split one line into ds9 commands: a ``# shape(...)`` comment region, or ';'-separated commands."""
    if line.startswith("#"):
        rest = line[1:].strip()
        return [rest] if _SHAPE.match(rest) else []
    return [c.strip() for c in line.split("#", 1)[0].split(";") if c.strip()]


def parse_ds9_regions(text: str) -> RegionFile:
    """Parse the text of a ds9 region file.

    Parameters
    ----------
    text : str
        File content.

    Returns
    -------
    RegionFile
        :class:`BoxRegion` and :class:`VectorRegion` objects, plus an :class:`IgnoredLine` for every other
        region (other shapes, excluded regions, wrong argument counts, sky coordinate systems) and every
        line that cannot be parsed. Plain comments, ``global`` lines and coordinate-system lines are
        not regions and are not reported.
    """
    regions, ignored = [], []
    system = "image"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        for command in _commands(line):
            word = command.split()[0].lower()
            if word in PIXEL_SYSTEMS + SKY_SYSTEMS:
                system = word
                continue
            if word == "global":
                continue
            match = _SHAPE.match(command)
            if match is None:
                ignored.append(IgnoredLine(number, line, f"cannot parse {command!r}"))
            elif system not in PIXEL_SYSTEMS:
                ignored.append(IgnoredLine(number, line, f"coordinate system '{system}' is not OTA pixels"))
            else:
                item = _region(*match.groups(), number, line)
                (ignored if isinstance(item, IgnoredLine) else regions).append(item)
    return RegionFile(tuple(regions), tuple(ignored))


def read_bpm_regions(path: str | os.PathLike) -> RegionFile:
    """Read and parse the region file ``path`` (see :func:`parse_ds9_regions`)."""
    return parse_ds9_regions(Path(path).read_text())


# --------------------------------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------------------------------


def _to_frame(value: float, scale: int) -> float:
    """ds9 1-based bin1 coordinate -> continuous 0-based coordinate of the binned frame (pixel j = [j, j+1))."""
    return (value - 0.5) / scale


def _box_axes(box: BoxRegion) -> tuple[float, float, float, float]:
    """Return (width, height, cos, sin); multiples of 90 degrees become an axis-aligned box.

    That keeps the half-open edge rule (lower edges in, upper edges out) in frame coordinates for
    boxes at 90, 180 and 270 degrees, so a box rotated by 90 degrees equals the box with width and
    height swapped.
    """
    angle = float(box.angle) % 180.0
    if angle == 0.0:
        return box.width, box.height, 1.0, 0.0
    if angle == 90.0:
        return box.height, box.width, 1.0, 0.0
    rad = math.radians(angle)
    return box.width, box.height, math.cos(rad), math.sin(rad)


def _box_pixels(box: BoxRegion, geometry: CellGeometry):
    """Return (rows slice, cols slice, bool sub-mask) of a box in the frame, or None if it misses the frame."""
    n, s = geometry.ota_size, geometry.scale
    cx, cy = _to_frame(box.x, s), _to_frame(box.y, s)
    width, height, c, si = _box_axes(box)
    half_w, half_h = width / (2 * s), height / (2 * s)
    reach_x = abs(half_w * c) + abs(half_h * si)
    reach_y = abs(half_w * si) + abs(half_h * c)
    x0, x1 = max(0, math.floor(cx - reach_x - 0.5)), min(n, math.ceil(cx + reach_x + 0.5))
    y0, y1 = max(0, math.floor(cy - reach_y - 0.5)), min(n, math.ceil(cy + reach_y + 0.5))
    if x0 >= x1 or y0 >= y1:
        return None
    dx = np.arange(x0, x1) + 0.5 - cx
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    along = dx * c + dy * si
    across = dy * c - dx * si
    inside = (along >= -half_w) & (along < half_w) & (across >= -half_h) & (across < half_h)
    return slice(y0, y1), slice(x0, x1), inside


def _vector_pixels(vector: VectorRegion, geometry: CellGeometry):
    """Return (rows, cols) slices masked by a vector, or an IgnoredLine reason string."""
    s = geometry.scale
    x, y = math.floor(_to_frame(vector.x, s)), math.floor(_to_frame(vector.y, s))
    cell = geometry.cell_at(x, y)
    if cell is None:
        return f"vector start ({vector.x:g}, {vector.y:g}) is not inside a cell of the OTA frame"
    rows, cols = geometry.target_region(*cell)
    angle = float(vector.angle) % 180.0
    if min(angle, 180.0 - angle) <= VECTOR_ANGLE_TOLERANCE:
        return slice(y, y + 1), cols
    if abs(angle - 90.0) <= VECTOR_ANGLE_TOLERANCE:
        return rows, slice(x, x + 1)
    return f"vector angle {vector.angle:g} deg is neither horizontal nor vertical (+-{VECTOR_ANGLE_TOLERANCE:g} deg)"


def _footprint(region, geometry: CellGeometry):
    """Return a (rows, cols, sub-mask or True) footprint, or a reason string when the region is not used."""
    if isinstance(region, BoxRegion):
        pixels = _box_pixels(region, geometry)
        if pixels is None:
            return (f"box at ({region.x:g}, {region.y:g}) lies entirely outside the "
                    f"{geometry.ota_size * geometry.scale}-pixel bin1 OTA frame (mosaic coordinates?)")
        return pixels
    pixels = _vector_pixels(region, geometry)
    return pixels if isinstance(pixels, str) else (*pixels, True)


def split_regions_in_frame(regions, geometry: CellGeometry) -> tuple[list, list]:
    """Split regions into those that mask something in this OTA frame and :class:`IgnoredLine` reports.

    Parameters
    ----------
    regions : iterable of BoxRegion or VectorRegion
    geometry : podisteps.instrument.CellGeometry

    Returns
    -------
    used : list
        Regions that touch the frame.
    ignored : list of IgnoredLine
        The others, with the reason (``text`` is the region's repr).
    """
    used, ignored = [], []
    for region in regions:
        footprint = _footprint(region, geometry)
        if isinstance(footprint, str):
            ignored.append(IgnoredLine(region.line, repr(region), footprint))
        else:
            used.append(region)
    return used, ignored


def rasterise_bpm(regions, geometry: CellGeometry) -> np.ndarray:
    """Rasterise bad-pixel regions into the OTA frame.

    Parameters
    ----------
    regions : iterable of BoxRegion or VectorRegion
        Regions in 1-based bin1 OTA pixels. Regions that miss the frame are skipped; use
        :func:`split_regions_in_frame` (or :func:`bpm_mask`) to report them.
    geometry : podisteps.instrument.CellGeometry
        Geometry of the frame (size, scale, cell placement).

    Returns
    -------
    numpy.ndarray
        bool, shape ``(ota_size, ota_size)``; True = bad pixel.
    """
    n = geometry.ota_size
    mask = np.zeros((n, n), dtype=bool)
    for region in regions:
        footprint = _footprint(region, geometry)
        if not isinstance(footprint, str):
            rows, cols, inside = footprint
            mask[rows, cols] |= inside
    return mask


def bpm_mask(region_file: RegionFile, geometry: CellGeometry) -> tuple[np.ndarray, list]:
    """Rasterise a parsed region file and list everything ignored (parse and frame reasons together).

    Returns
    -------
    mask : numpy.ndarray
        bool, ``(ota_size, ota_size)``.
    ignored : list of IgnoredLine
        Sorted by line number.
    """
    used, outside = split_regions_in_frame(region_file.regions, geometry)
    ignored = sorted([*region_file.ignored, *outside], key=lambda item: item.line)
    return rasterise_bpm(used, geometry), ignored


def apply_mask(
    sci: np.ndarray,
    mask: np.ndarray,
    where: np.ndarray,
    bit: str,
    *,
    blank: bool = True,
) -> None:
    """Flag pixels in the MASK plane (in place) and, by default, set them to NaN in SCI.

    Parameters
    ----------
    sci : numpy.ndarray
        float32 OTA frame; modified in place when ``blank``.
    mask : numpy.ndarray
        uint16 MASK plane; modified in place.
    where : numpy.ndarray
        bool, same shape: the pixels to flag.
    bit : str
        A key of :data:`podisteps.maskbits.MASK_BITS`, e.g. ``"BPM"``.
    blank : bool, optional
        Also set the pixels to NaN (QuickReduce always does for BPM, saturation and persistency).
    """
    if not where.any():  # the usual case for saturation, bleed and persistency: two full scans saved
        return
    np.bitwise_or(mask, MASK_BITS[bit], out=mask, where=where)  # one pass each, no boolean-index gathers
    if blank:
        np.copyto(sci, np.nan, where=where)


# --------------------------------------------------------------------------------------------------
# Saturation, bleed and persistency (raw-cell pixels -> OTA frame)
# --------------------------------------------------------------------------------------------------


def _span(index: int, ratio: float, limit: int) -> tuple[int, int]:
    """Frame pixels ``[start, stop)`` covered by raw pixel ``index`` of a frame binned ``ratio`` times coarser."""
    return math.floor(index * ratio), min(math.ceil((index + 1) * ratio), limit)


def _entries(table) -> np.ndarray:
    """Catalogue rows as an int array ``(n, 4)``: CELL_X, CELL_Y, X, Y; rows with a cell outside 0..7 dropped."""
    rows = np.stack([np.asarray(table[k], dtype=int).reshape(-1) for k in ("CELL_X", "CELL_Y", "X", "Y")], axis=1)
    good = np.all((rows[:, :2] >= 0) & (rows[:, :2] < 8), axis=1) & np.all(rows[:, 2:] >= 0, axis=1)
    return rows[good]


def _columns(entries: np.ndarray):
    """Yield (cx, cy, column, lowest row, highest row) per saturated raw column, in raw-cell indices."""
    if len(entries) == 0:
        return
    entries = entries[np.lexsort((entries[:, 3], entries[:, 2], entries[:, 1], entries[:, 0]))]
    keys = entries[:, :3]
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    for start, stop in zip(starts, np.r_[starts[1:], len(entries)]):
        cx, cy, col = keys[start]
        yield int(cx), int(cy), int(col), int(entries[start, 3]), int(entries[stop - 1, 3])


def _paint_pixels(target: np.ndarray, entries: np.ndarray, geometry: CellGeometry, ratio: float) -> None:
    """Set the frame pixels covered by raw pixels ``entries`` (vectorised :func:`_span` in x and y)."""
    origins = np.array([[geometry.cell_origin(cx, cy) for cy in range(8)] for cx in range(8)])
    x1, y1 = origins[entries[:, 0], entries[:, 1]].T
    x, y = entries[:, 2], entries[:, 3]
    c0, r0 = np.floor(x * ratio).astype(int), np.floor(y * ratio).astype(int)
    c1 = np.minimum(np.ceil((x + 1) * ratio).astype(int), geometry.data_nx)
    r1 = np.minimum(np.ceil((y + 1) * ratio).astype(int), geometry.data_ny)
    reach = max(1, math.ceil(ratio))
    for dy in range(reach):
        for dx in range(reach):
            ok = (r0 + dy < r1) & (c0 + dx < c1)
            target[y1[ok] + r0[ok] + dy, x1[ok] + c0[ok] + dx] = True


def _ratio(geometry: CellGeometry, catalog_binning: int | None) -> float:
    return (catalog_binning or geometry.binning) / geometry.binning


def saturation_masks(
    table,
    geometry: CellGeometry,
    *,
    catalog_binning: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of this frame's own saturated pixels and bleed trails.

    Raw-cell indices are converted from the catalogue's binning to the frame's; only pixels inside the
    data section map into the frame (saturated overscan pixels are dropped).

    Parameters
    ----------
    table : structured array or table
        Saturation catalogue of this OTA with columns ``CELL_X, CELL_Y, X, Y`` (raw-cell indices).
    geometry : podisteps.instrument.CellGeometry
        Geometry of the frame.
    catalog_binning : int, optional
        Binning of the catalogue's frame (default: the geometry's).

    Returns
    -------
    saturated : numpy.ndarray
        bool ``(ota_size, ota_size)``: the saturated pixels themselves.
    bleed : numpy.ndarray
        bool: in each saturated column, from the lowest saturated row to the top of the cell.
    """
    n, ratio = geometry.ota_size, _ratio(geometry, catalog_binning)
    saturated = np.zeros((n, n), dtype=bool)
    bleed = np.zeros((n, n), dtype=bool)
    entries = _entries(table)
    _paint_pixels(saturated, entries, geometry, ratio)
    for cx, cy, col, low, _ in _columns(entries):
        (c0, c1), (r0, _) = _span(col, ratio, geometry.data_nx), _span(low, ratio, geometry.data_ny)
        rows, cols = geometry.target_region(cx, cy)
        bleed[rows.start + r0:rows.stop, cols.start + c0:cols.start + c1] = True
    return saturated, bleed


def persistency_mask(table, geometry: CellGeometry, *, catalog_binning: int | None = None) -> np.ndarray:
    """Mask of the charge an earlier exposure's saturated pixels left behind.

    For each saturated raw column, rows ``[0, max saturated row]`` of that cell (the transfer direction),
    converted from the catalogue's binning to the frame's. QuickReduce stops one row short
    (``[0, max saturated row)``, docs/reduction-steps.md, 'Saturation and persistency') and so leaves unmasked the top
    saturated pixel, which holds as much trapped charge as the others; podiflow includes it.

    Parameters
    ----------
    table : structured array or table
        An earlier exposure's saturation catalogue of this OTA (``CELL_X, CELL_Y, X, Y``).
    geometry : podisteps.instrument.CellGeometry
        Geometry of this frame.
    catalog_binning : int, optional
        Binning of the earlier exposure (default: the geometry's).

    Returns
    -------
    numpy.ndarray
        bool ``(ota_size, ota_size)``.
    """
    n, ratio = geometry.ota_size, _ratio(geometry, catalog_binning)
    mask = np.zeros((n, n), dtype=bool)
    for cx, cy, col, _, high in _columns(_entries(table)):
        c0, c1 = _span(col, ratio, geometry.data_nx)
        _, top = _span(high, ratio, geometry.data_ny)
        rows, cols = geometry.target_region(cx, cy)
        mask[rows.start:rows.start + top, cols.start + c0:cols.start + c1] = True
    return mask


def unused_cell_cards(used: dict, cellmode: str, garbage: dict) -> list:
    """Header cards saying which cells were left undefined (mask bit BADCELL) and why.

    Parameters
    ----------
    used : dict
        ``(cx, cy) -> bool`` as given to :func:`podisteps.detrend.assemble.assemble_ota`.
    cellmode : str
        The raw CELLMODE (64 characters; 'F' floated, 'D' dead, 'V' video, 'S' science).
    garbage : dict
        ``(cx, cy) -> reason`` of cells whose raw values cannot be real (:func:`podisteps.sanity.bad_cells`).

    Returns
    -------
    list of tuple
        ``(keyword, value, comment)``: ``NCELLOFF`` (count), ``CELLOFF`` (``xy34:F,xy12:broken,...``: the
        CELLMODE character, ``broken`` for a science cell of the broken-cell table or ``-keepcells``, or
        ``garbage``) and one ``GARBxy`` card per garbage cell with its reason.
    """
    off = [c for c in sorted(used) if not used[c]]
    labels = []
    for cx, cy in off:
        mode = cellmode_char(cellmode, cx, cy)
        reason = "garbage" if (cx, cy) in garbage else ("broken" if mode == "S" else mode)
        labels.append(f"xy{cx}{cy}:{reason}")
    cards = [("NCELLOFF", len(off), "cells left undefined (mask bit BADCELL)"),
             ("CELLOFF", ",".join(labels), "")]  # cell:why (CELLMODE character, broken, garbage)
    cards += [(f"GARB{cx}{cy}", reason, "") for (cx, cy), reason in sorted(garbage.items())]
    return cards
