"""The ODI instrument model: focal-plane layouts, OTA and cell geometry, detector serials, cell modes.

All facts come from the data files in ``podisteps/data/instruments/``, read through
:mod:`podisteps.instrument.packagedata` (see docs/instrument.md):

- ``podi.toml``, ``odi_5x6.toml``: the two focal-plane layouts, chosen by ``MJD-OBS``;
- ``detectors.toml``: broken cells per detector serial;
- ``cells.toml`` (full-size OTAs) and ``test.toml`` (the scaled-down test instrument): cell geometry.

Conventions: arrays are numpy ``[y, x]``, 0-based, end-exclusive. Cell ``(cx, cy)`` has cell rows counted
top-down (``xy07`` is the bottom-left cell at the pixel origin).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .packagedata import configs_dir, load_toml

__all__ = [
    "CellGeometry",
    "Layout",
    "KeepCells",
    "configs_dir",
    "geometry",
    "geometry_kinds",
    "geometry_for_cell_shape",
    "layout",
    "layout_for_mjd",
    "FocalPlane",
    "focal_plane",
    "broken_cells",
    "cellmode_char",
    "is_guide_ota",
    "cell_is_used",
    "parse_keepcells",
    "ota_position",
    "CELL_IDS",
    "LAYOUT_SWITCH_MJD",
]

#: MJD of the switch from pODI to the 5x6 focal plane (2015-01-01).
LAYOUT_SWITCH_MJD = 57023.0

#: The 64 cells of an OTA as (cx, cy), in EXTNAME order xy00, xy01, ..., xy77.
CELL_IDS: tuple[tuple[int, int], ...] = tuple((cx, cy) for cx in range(8) for cy in range(8))

#: CELLMODE characters: S science; V video (guide) cell; D dead; F floated (no data).
CELLMODE_SCIENCE = "S"


def ota_position(ota: int) -> tuple[int, int]:
    """Return the focal-plane column and row ``(x, y)`` of OTA number ``ota`` (e.g. 33 -> (3, 3))."""
    return ota // 10, ota % 10


# --------------------------------------------------------------------------------------------------
# Cell geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellGeometry:
    """Geometry of the cells of one OTA for one detector kind and binning.

    Attributes
    ----------
    kind : str
        ``"full"`` (real ODI OTAs) or ``"test"`` (the scaled-down test instrument).
    binning : int
        On-chip binning, 1 or 2.
    data_ny, data_nx : int
        Science pixels of one cell in y and x; the data section starts at raw ``[0, 0]``.
    pitch_x, pitch_y : float
        Cell pitch in the OTA frame, pixels; origins are ``ceil(pitch * index)``.
    overscan_rows, overscan_cols : tuple of int
        ``(start, stop)`` of the overscan block in the raw cell.
    raw_ny, raw_nx : int
        Shape of the raw cell arrays the simulator writes.
    ota_size : int
        Side of the square assembled OTA frame, pixels.
    scale : int
        Size of one pixel in full-size bin1 pixels (the WCS divides CRPIX and multiplies CD by it).
    """

    kind: str
    binning: int
    data_ny: int
    data_nx: int
    pitch_x: float
    pitch_y: float
    overscan_rows: tuple[int, int]
    overscan_cols: tuple[int, int]
    raw_ny: int
    raw_nx: int
    ota_size: int
    scale: int

    @property
    def min_raw_shape(self) -> tuple[int, int]:
        """Smallest raw cell shape ``(ny, nx)``: the data section and at least one overscan column.

        Narrower overscans than ``raw_nx`` are accepted (QuickReduce reads 540-wide cells too).
        """
        return (max(self.data_ny, self.overscan_rows[1]), max(self.data_nx, self.overscan_cols[0] + 1))

    def cell_origin(self, cx: int, cy: int) -> tuple[int, int]:
        """Return the OTA-frame origin ``(x1, y1)`` of cell ``(cx, cy)`` in pixels."""
        return math.ceil(self.pitch_x * cx), math.ceil(self.pitch_y * (7 - cy))

    def data_section(self, *, trimcell: int = 0) -> tuple[slice, slice]:
        """Return the ``(rows, cols)`` slices of the science data inside a raw cell.

        Parameters
        ----------
        trimcell : int, optional
            Extra pixels cut off every edge (``-trimcell``).
        """
        t = int(trimcell)
        return slice(t, self.data_ny - t), slice(t, self.data_nx - t)

    def overscan_section(self, raw_shape: tuple[int, int] | None = None) -> tuple[slice, slice]:
        """Return the ``(rows, cols)`` slices of the overscan block inside a raw cell.

        Parameters
        ----------
        raw_shape : tuple of int, optional
            Shape of the actual raw cell; the block is clipped to it (narrow overscans).
        """
        ny, nx = raw_shape if raw_shape is not None else (self.raw_ny, self.raw_nx)
        return (slice(self.overscan_rows[0], min(self.overscan_rows[1], ny)),
                slice(self.overscan_cols[0], min(self.overscan_cols[1], nx)))

    def target_region(self, cx: int, cy: int, *, trimcell: int = 0) -> tuple[slice, slice]:
        """Return the ``(rows, cols)`` slices of cell ``(cx, cy)`` in the OTA frame.

        Parameters
        ----------
        cx, cy : int
            Cell column and row (row counted top-down, as in the EXTNAME ``xy<cx><cy>``).
        trimcell : int, optional
            Extra pixels cut off every edge (``-trimcell``).
        """
        x1, y1 = self.cell_origin(cx, cy)
        t = int(trimcell)
        return slice(y1 + t, y1 + self.data_ny - t), slice(x1 + t, x1 + self.data_nx - t)

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """Return the cell ``(cx, cy)`` whose data region holds OTA pixel ``(x, y)`` (0-based), or None."""
        for cx, cy in CELL_IDS:
            rows, cols = self.target_region(cx, cy)
            if rows.start <= y < rows.stop and cols.start <= x < cols.stop:
                return cx, cy
        return None


def geometry_kinds() -> tuple[str, ...]:
    """Return the detector kinds with a geometry definition (``"full"``, ``"test"``)."""
    kinds = list(load_toml("instruments/cells.toml")) + list(load_toml("instruments/test.toml"))
    return tuple(kinds)


@functools.cache
def geometry(kind: str, binning: int) -> CellGeometry:
    """Return the cell geometry of detector ``kind`` (``"full"`` or ``"test"``) at ``binning``.

    Raises
    ------
    ValueError
        For an unknown kind or a binning other than 1 or 2.
    """
    table = {**load_toml("instruments/cells.toml"), **load_toml("instruments/test.toml")}
    if kind not in table:
        raise ValueError(f"unknown detector kind {kind!r}; known: {sorted(table)}")
    entry = table[kind].get(f"bin{binning}")
    if entry is None:
        raise ValueError(f"binning {binning!r} is not supported (only 1 and 2)")
    return CellGeometry(
        kind=kind,
        binning=int(binning),
        data_ny=entry["data_ny"],
        data_nx=entry["data_nx"],
        pitch_x=float(entry["pitch_x"]),
        pitch_y=float(entry["pitch_y"]),
        overscan_rows=tuple(entry["overscan_rows"]),
        overscan_cols=tuple(entry["overscan_cols"]),
        raw_ny=entry["raw_ny"],
        raw_nx=entry["raw_nx"],
        ota_size=entry["ota_size"],
        scale=entry["scale"],
    )


def geometry_for_cell_shape(shape: tuple[int, int], binning: int) -> CellGeometry:
    """Find the detector geometry whose raw cells have ``shape`` at ``binning``.

    A raw cell belongs to a kind when it holds that kind's data section and at least one overscan
    column, and is less than twice that kind's data height (full-size cells have 494 rows at bin1,
    test cells 62).

    Raises
    ------
    ValueError
        If no kind fits the shape.
    """
    for kind in geometry_kinds():
        geo = geometry(kind, binning)
        ny, nx = geo.min_raw_shape
        if ny <= shape[0] < 2 * geo.data_ny and shape[1] >= nx:
            return geo
    known = ", ".join(f"{k}: >= {geometry(k, binning).min_raw_shape}" for k in geometry_kinds())
    raise ValueError(f"cell shape {tuple(shape)} at bin{binning} fits no known OTA geometry ({known})")


# --------------------------------------------------------------------------------------------------
# Focal-plane layouts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A focal-plane layout (pODI or ODI 5x6).

    Attributes
    ----------
    name : str
        ``"podi"`` or ``"odi_5x6"`` (QuickReduce's ``fp_config``; used in mastercal paths).
    label : str
        ``"pODI"`` or ``"ODI_5x6"``.
    otas : tuple of int
        All OTA positions in processing (extension) order.
    lists : dict
        Named OTA lists (``central``, ``non_vignetted``, ``central_2x2``, ``pupilghost_otas``, ...).
    serials : dict
        Detector serial (``OTA_ID`` string) per OTA position.
    """

    name: str
    label: str
    mjd_min: float
    mjd_max: float
    otas: tuple[int, ...]
    lists: dict = field(repr=False)
    serials: dict = field(repr=False)
    flat_normalisation: dict = field(repr=False)
    photometry: dict = field(repr=False)
    blocked: dict = field(repr=False)
    dead_from_mjd: dict = field(repr=False)

    def otas_at(self, mjd: float) -> tuple[int, ...]:
        """Return the OTAs that exist at ``mjd`` (OTA21 of the 5x6 is dead from MJD 58530), in order."""
        return tuple(o for o in self.otas if not (o in self.dead_from_mjd and mjd >= self.dead_from_mjd[o]))

    def ota_list(self, name: str) -> tuple[int, ...]:
        """Return a named OTA list (``"all"``, ``"central"``, ``"non_vignetted"``, ...) in processing order."""
        if name == "all":
            return self.otas
        try:
            members = set(self.lists[name])
        except KeyError:
            raise ValueError(f"layout {self.name} has no OTA list {name!r}") from None
        return tuple(o for o in self.otas if o in members)

    def _per_filter(self, table: dict, filtername: str) -> tuple[int, ...]:
        return self.ota_list(table.get(filtername, table["default"]))

    def flat_normalisation_otas(self, filtername: str) -> tuple[int, ...]:
        """OTAs whose level normalises a flat in ``filtername``."""
        return self._per_filter(self.flat_normalisation, filtername)

    def photometry_otas(self, filtername: str) -> tuple[int, ...]:
        """OTAs used for the global sky level and photometry in ``filtername``."""
        return self._per_filter(self.photometry, filtername)

    def blocked_otas(self, filtername: str) -> tuple[int, ...]:
        """OTAs dropped from reductions in ``filtername`` (none for a filter not listed)."""
        return tuple(self.blocked.get(filtername, ()))

    def serial(self, ota: int) -> str:
        """Detector serial (``OTA_ID``) at position ``ota``."""
        try:
            return self.serials[ota]
        except KeyError:
            raise ValueError(f"OTA {ota:02d} is not part of the {self.label} layout") from None

    def ota_for_serial(self, serial: str) -> int:
        """Position of detector ``serial`` in this layout."""
        for ota, s in self.serials.items():
            if s == str(serial):
                return ota
        raise ValueError(f"detector serial {serial!r} is not in the {self.label} layout")


@functools.cache
def layout(name: str) -> Layout:
    """Return the layout ``"podi"`` or ``"odi_5x6"``."""
    if name not in ("podi", "odi_5x6"):
        raise ValueError(f"unknown focal-plane layout {name!r} (expected 'podi' or 'odi_5x6')")
    d = load_toml(f"instruments/{name}.toml")
    lists = {k: tuple(d[k]) for k in ("central", "non_vignetted", "central_2x2", "pupilghost_otas",
                                      "guide_candidates")}
    return Layout(
        name=d["name"],
        label=d["layout"],
        mjd_min=float(d["mjd_min"]),
        mjd_max=float(d["mjd_max"]),
        otas=tuple(d["otas"]),
        lists=lists,
        serials={int(k): str(v) for k, v in d["serials"].items()},
        flat_normalisation=dict(d["flat_normalisation"]),
        photometry=dict(d["photometry"]),
        blocked={k: tuple(v) for k, v in d.get("blocked", {}).items()},
        dead_from_mjd={int(k): float(v) for k, v in d.get("dead_from_mjd", {}).items()},
    )


def layout_for_mjd(mjd: float) -> Layout:
    """Return the layout in use at ``mjd``: pODI before MJD 57023, ODI 5x6 from then on."""
    return layout("podi" if float(mjd) < LAYOUT_SWITCH_MJD else "odi_5x6")


@dataclass(frozen=True)
class FocalPlane:
    """The nominal optical model of a layout: where each OTA sits on the sky, and a radial distortion.

    Attributes
    ----------
    layout : str
        ``"podi"`` or ``"odi_5x6"``.
    pixel_scale_arcsec : float
        Nominal pixel scale of a full-size bin1 pixel, arcsec.
    radial_k_per_deg2 : float
        Radial cubic distortion ``xi' = xi (1 + K r^2)`` about the optical axis, deg^-2.
    model_error_arcsec : float
        Position error per axis of this model once pointing and OTA offsets are fitted, arcsec.
    axis_offset_deg : tuple of float
        Optical axis minus telescope pointing ``(dRA, dDec)``, deg; dRA is an offset on the sky.
    centres_arcmin : dict
        OTA -> its centre minus the optical axis ``(x, y)``, arcmin (x = East = +x pixels, y = North).
    """

    layout: str
    pixel_scale_arcsec: float
    radial_k_per_deg2: float
    model_error_arcsec: float
    axis_offset_deg: tuple[float, float]
    centres_arcmin: dict = field(repr=False)

    def centre_arcmin(self, ota: int) -> tuple[float, float]:
        """Centre of ``ota`` minus the optical axis, arcmin (raises ValueError for an OTA not in the layout)."""
        try:
            return self.centres_arcmin[ota]
        except KeyError:
            raise ValueError(f"OTA {ota:02d} is not part of the {self.layout} focal plane") from None


@functools.cache
def focal_plane(name: str) -> FocalPlane:
    """Return the nominal optical model (``[focal_plane]`` of the layout's data file) of ``"podi"``/``"odi_5x6"``."""
    layout(name)  # validates the name
    d = load_toml(f"instruments/{name}.toml")["focal_plane"]
    return FocalPlane(
        layout=name,
        pixel_scale_arcsec=float(d["pixel_scale_arcsec"]),
        radial_k_per_deg2=float(d["radial_k_per_deg2"]),
        model_error_arcsec=float(d["model_error_arcsec"]),
        axis_offset_deg=tuple(float(v) for v in d["axis_offset_deg"]),
        centres_arcmin={int(k): (float(v[0]), float(v[1])) for k, v in d["centres_arcmin"].items()},
    )


# --------------------------------------------------------------------------------------------------
# Cells: broken cells, cell modes, -keepcells
# --------------------------------------------------------------------------------------------------


def _expand_cells(entries) -> frozenset[tuple[int, int]]:
    cells = set()
    for e in entries:
        if isinstance(e, str):
            what, num = e.split(":")
            n = int(num)
            cells.update((n, i) if what == "col" else (i, n) for i in range(8))
        else:
            cells.add((int(e[0]), int(e[1])))
    return frozenset(cells)


@functools.cache
def broken_cells(serial: str, mjd: float = 0.0) -> frozenset[tuple[int, int]]:
    """Return the broken cells ``(cx, cy)`` of detector ``serial`` at ``mjd``.

    Raises
    ------
    ValueError
        If ``serial`` is not one of the known ODI detector serials.
    """
    d = load_toml("instruments/detectors.toml")
    serial = str(serial).strip()
    if serial not in d["broken_cells"]:
        raise ValueError(f"unknown detector serial OTA_ID={serial!r}")
    cells = set(_expand_cells(d["broken_cells"][serial]))
    for later in d.get("broken_cells_from_mjd", []):
        if mjd >= later["mjd"] and serial in later["cells"]:
            cells |= _expand_cells(later["cells"][serial])
    return frozenset(cells)


def cellmode_char(cellmode: str, cx: int, cy: int) -> str:
    """Return the CELLMODE character of cell ``(cx, cy)`` (index ``cx + 8*cy``); '?' if missing."""
    i = cx + 8 * cy
    return cellmode[i] if i < len(cellmode) else "?"


def is_guide_ota(cellmode: str) -> bool:
    """True if the OTA has video (guide) cells, i.e. CELLMODE contains 'V'."""
    return "V" in cellmode


@dataclass(frozen=True)
class KeepCells:
    """Which non-science cells ``-keepcells`` keeps.

    ``mode`` is ``"none"`` (default: skip broken and non-'S' cells), ``"all"`` (keep every cell),
    ``"most"`` (keep broken and video cells, never dead 'D' or floated 'F' cells, which hold no data),
    or ``"list"`` (keep the cells in ``cells``, a set of ``(ota, cx, cy)``).
    """

    mode: str = "none"
    cells: frozenset = frozenset()

    def keeps(self, ota: int, cx: int, cy: int, mode_char: str) -> bool:
        """True if this policy keeps cell ``(cx, cy)`` of ``ota`` whose CELLMODE is ``mode_char``."""
        if self.mode == "all":
            return True
        if self.mode == "most":
            return mode_char not in ("D", "F")
        if self.mode == "list":
            return (ota, cx, cy) in self.cells
        return False


def parse_keepcells(value: str | bool | None) -> KeepCells:
    """Parse a ``-keepcells`` value.

    Parameters
    ----------
    value : str, bool or None
        None/False/"" -> keep nothing extra; True or "all"/"auto" (flag without value) -> all;
        "most"; or a comma list of ``OTA.cxcy`` ids such as ``"33.12,44.07"``.

    Raises
    ------
    ValueError
        For an id that is not ``NN.cxcy`` with digits 0-7 in the cell part.
    """
    if value in (None, False, "", "none", "no"):
        return KeepCells()
    if value is True or value in ("all", "auto"):
        return KeepCells("all")
    if value == "most":
        return KeepCells("most")
    cells = set()
    for item in str(value).split(","):
        item = item.strip()
        ota, _, cell = item.partition(".")
        if not (ota.isdigit() and len(cell) == 2 and all(c in "01234567" for c in cell)):
            raise ValueError(f"-keepcells: {item!r} is not an 'OTA.cxcy' cell id such as '33.12'")
        cells.add((int(ota), int(cell[0]), int(cell[1])))
    return KeepCells("list", frozenset(cells))


def cell_is_used(
    ota: int,
    cx: int,
    cy: int,
    *,
    cellmode: str,
    serial: str,
    mjd: float,
    keepcells: KeepCells = KeepCells(),
) -> bool:
    """Decide whether cell ``(cx, cy)`` of ``ota`` holds usable science data.

    A cell is used when its CELLMODE is 'S' and it is not in the broken-cell table, or when
    ``keepcells`` keeps it. Unknown CELLMODE characters count as non-science (never an error).
    """
    mode = cellmode_char(cellmode, cx, cy)
    if mode == CELLMODE_SCIENCE and (cx, cy) not in broken_cells(serial, mjd):
        return True
    return keepcells.keeps(ota, cx, cy, mode)
