"""What is fixed about one detector: defects, non-linearity coefficients, full well, cell response steps,
bias structure and amplifier glow (``docs/simulator.md``, "Truth of the detector").

Everything here is drawn from generators keyed by :data:`DETECTOR_SEED` and the detector serial (and, for
pixel positions, the detector kind and binning), so it is the same every night and in every layout the
detector sits in. Units as in :mod:`podisteps.simulate.effects`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import instrument
from .randomness import rng_for

__all__ = ["DETECTOR_SEED", "Defect", "DetectorProps", "detector_props", "bias_structure", "glow_map"]

#: Seed of everything fixed per detector (the same as part 1's gains).
DETECTOR_SEED = 1971


@dataclass(frozen=True)
class Defect:
    """A bad-pixel defect in raw-cell coordinates of one geometry.

    ``kind`` is ``dead`` (response multiplied by ``value``) or ``hot`` (extra dark current ``value``
    e-/s per frame pixel); ``rows``/``cols`` are end-exclusive ranges in the raw cell ``cell``
    (index into ``instrument.CELL_IDS``); ``in_bpm`` says whether the BPM file given to the pipeline lists it.
    """

    cell: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    kind: str
    value: float
    in_bpm: bool
    shape: str  # "column" (full cell height, 1 px wide: a '# vector' line) or "box"

    def as_dict(self) -> dict:
        cx, cy = instrument.CELL_IDS[self.cell]
        return {"cell": f"xy{cx}{cy}", "rows": list(self.rows), "cols": list(self.cols), "kind": self.kind,
                "value": self.value, "in_bpm": self.in_bpm, "shape": self.shape}


@dataclass(frozen=True)
class DetectorProps:
    """Everything fixed about one detector in one geometry (arrays in ``instrument.CELL_IDS`` order).

    Attributes
    ----------
    serial : str
    c2, c3 : numpy.ndarray
        True non-linearity coefficients ``d_lin = d + c2 d^2 + c3 d^3`` (d: raw ADU above bias), (64,).
    c2_err, c3_err : numpy.ndarray
        The uncertainties stated in the table given to the pipeline, (64,).
    satlevel : numpy.ndarray
        Full well in raw ADU including the bias pedestal (a full pixel reads 65535), (64,).
    cell_qe : numpy.ndarray
        Cell-to-cell response steps (flat response factor per cell), (64,).
    bias_ramp, bias_ramp_length, bias_row_slope : numpy.ndarray
        Bias structure ``ramp exp(-x / length) + slope (y / ny - 0.5)`` plus a column pattern, ADU, (64,).
    glow : numpy.ndarray
        Amplifier glow at the cell's raw (0, 0) corner, e-/s per full-size pixel, (64,).
    defects : tuple of Defect
    false_bpm : tuple
        Boxes listed in the BPM file that are not defects: ``(cell, (r0, r1), (c0, c1))``.
    """

    serial: str
    c2: np.ndarray
    c3: np.ndarray
    c2_err: np.ndarray
    c3_err: np.ndarray
    satlevel: np.ndarray
    cell_qe: np.ndarray
    bias_ramp: np.ndarray
    bias_ramp_length: np.ndarray
    bias_row_slope: np.ndarray
    glow: np.ndarray
    defects: tuple
    false_bpm: tuple

    def as_dict(self) -> dict:
        def cell_table(values):
            return {f"xy{cx}{cy}": float(v) for (cx, cy), v in zip(instrument.CELL_IDS, values)}

        return {
            "serial": self.serial,
            "nonlinearity_c2": cell_table(self.c2), "nonlinearity_c3": cell_table(self.c3),
            "nonlinearity_c2_uncert": cell_table(self.c2_err), "nonlinearity_c3_uncert": cell_table(self.c3_err),
            "full_well_raw_adu": cell_table(self.satlevel),
            "cell_response": cell_table(self.cell_qe),
            "bias_ramp_adu": cell_table(self.bias_ramp),
            "bias_ramp_length_px": cell_table(self.bias_ramp_length),
            "bias_row_slope_adu": cell_table(self.bias_row_slope),
            "glow_e_per_s_fullsize_px": cell_table(self.glow),
            "defects": [d.as_dict() for d in self.defects],
            "false_bpm_boxes": [{"cell": "xy%d%d" % instrument.CELL_IDS[c], "rows": list(r), "cols": list(k)}
                                for c, r, k in self.false_bpm],
        }


def _draw_defects(serial: str, geo: instrument.CellGeometry) -> tuple[tuple, tuple]:
    """Defects of a detector in a geometry: 2-4 bad columns, 0-2 dead boxes, 0-2 hot boxes, a few hot pixels."""
    rng = rng_for(DETECTOR_SEED, "defects", serial, geo.kind, geo.binning)
    ny, nx = geo.data_ny, geo.data_nx
    s = geo.scale
    out = []
    for _ in range(int(rng.integers(2, 5))):
        cell = int(rng.integers(64))
        col = int(rng.integers(2, nx - 2))
        full_height = rng.random() < 0.6
        r0 = 0 if full_height else int(rng.integers(ny // 4, 3 * ny // 4))
        kind = "dead" if rng.random() < 0.5 else "hot"
        value = float(rng.uniform(0.05, 0.4)) if kind == "dead" else float(rng.uniform(0.5, 3.0)) * s * s
        out.append(((cell, (r0, ny), (col, col + 1), kind, value, "column" if full_height else "box")))
    for kind in ("dead", "hot"):
        for _ in range(int(rng.integers(0, 3))):
            cell = int(rng.integers(64))
            h = max(2, int(rng.integers(6, 60) // s))
            w = max(2, int(rng.integers(6, 60) // s))
            r0, c0 = int(rng.integers(0, ny - h)), int(rng.integers(0, nx - w))
            value = float(rng.uniform(0.05, 0.5)) if kind == "dead" else float(rng.uniform(0.2, 1.0)) * s * s
            out.append((cell, (r0, r0 + h), (c0, c0 + w), kind, value, "box"))
    for _ in range(int(rng.integers(2, 6))):  # isolated hot pixels (real BPMs rarely list them)
        cell, r, c = int(rng.integers(64)), int(rng.integers(ny)), int(rng.integers(nx))
        out.append((cell, (r, r + 1), (c, c + 1), "hot", float(rng.uniform(2.0, 20.0)) * s * s, "pixel"))
    defects = []
    for cell, rows, cols, kind, value, shape in out:
        listed = shape != "pixel" and rng.random() > 0.12  # the given BPM misses ~12 % of the regions
        defects.append(Defect(cell, rows, cols, kind, value, bool(listed), shape))
    false = []
    if rng.random() < 0.4:  # a region listed in the BPM that is fine
        cell = int(rng.integers(64))
        h, w = max(2, 12 // s), max(2, 8 // s)
        r0, c0 = int(rng.integers(0, ny - h)), int(rng.integers(0, nx - w))
        false.append((cell, (r0, r0 + h), (c0, c0 + w)))
    return tuple(defects), tuple(false)


@functools.cache
def detector_props(serial: str, kind: str, binning: int) -> DetectorProps:
    """The fixed properties of detector ``serial`` in geometry ``(kind, binning)`` (cached)."""
    geo = instrument.geometry(kind, binning)
    rng = rng_for(DETECTOR_SEED, "detector-props", serial)
    c2 = rng.normal(-3.2e-7, 0.6e-7, 64)
    c3 = rng.normal(4.6e-12, 1.0e-12, 64)
    c2_err = np.abs(c2) * rng.uniform(0.05, 0.15, 64)
    c3_err = np.abs(c3) * rng.uniform(0.05, 0.15, 64)
    satlevel = rng.uniform(62500.0, 65000.0, 64)
    cell_qe = 1.0 + rng.normal(0.0, 0.01, 64)
    ramp = rng.uniform(2.0, 8.0, 64)
    ramp_len = rng.uniform(10.0, 30.0, 64) / geo.scale
    slope = rng.normal(0.0, 1.5, 64)
    glow = rng.uniform(0.05, 0.3, 64)
    defects, false = _draw_defects(serial, geo)
    return DetectorProps(serial, c2, c3, c2_err, c3_err, satlevel, cell_qe, ramp, ramp_len, slope, glow, defects, false)


def bias_structure(props: DetectorProps, geo: instrument.CellGeometry, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Bias structure of cell ``i`` as a row profile (over y, ``raw_ny``) and a column profile (over x).

    ``structure[y, x] = row[y] + col[x]``: ``col[x] = ramp exp(-x / length) + pattern[x]`` for the data and
    prescan-side columns (``x < overscan_cols[0]``; pattern N(0, 0.3) ADU per column, fixed per detector),
    0 in the overscan; ``row[y] = slope (y / ny - 0.5)`` for those columns only, so the overscan carries
    no structure. Returned as ``(row, col)`` with ``row`` to be added only to ``x < overscan_cols[0]``.
    """
    x = np.arange(geo.overscan_cols[0], dtype=np.float64)
    pattern = rng_for(DETECTOR_SEED, "bias-columns", props.serial, geo.kind, geo.binning, i).normal(0.0, 0.3, x.size)
    col = props.bias_ramp[i] * np.exp(-x / props.bias_ramp_length[i]) + pattern
    y = np.arange(geo.raw_ny, dtype=np.float64)
    row = props.bias_row_slope[i] * (y / geo.raw_ny - 0.5)
    return row.astype(np.float32), col.astype(np.float32)


def glow_map(props: DetectorProps, geo: instrument.CellGeometry, i: int) -> np.ndarray:
    """Amplifier glow of cell ``i``, e-/s per frame pixel, data section shape: ``A exp(-(x + y) / (40 px))``."""
    r0 = 40.0 / geo.scale
    gx = np.exp(-np.arange(geo.data_nx) / r0)
    gy = np.exp(-np.arange(geo.data_ny) / r0)
    return (props.glow[i] * geo.scale**2 * np.outer(gy, gx)).astype(np.float32)
