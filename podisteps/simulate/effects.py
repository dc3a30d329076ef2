"""Detector and optics effects of part 2 (QUICKREDUCE_SPEC.md sections 1.4-1.5, 3, 5.3-5.4, 9).

Everything fixed per detector (crosstalk, non-linearity, full well, bias structure, glow, defects, flat
response, fringe pattern) is drawn from generators keyed by ``DETECTOR_SEED`` and the detector serial
(and, for pixel positions, the detector kind and binning), so it is the same every night and in every
layout the detector sits in. Per-exposure effects (video cells, cosmic rays, persistence, the pupil
ghost's rotation, the fringe and ghost amplitudes) follow the night seed and the exposure.

Units: "ADU" without qualification means raw ADU of the cell (``electrons / GAIN``); "nominal ADU" are
ADU at the nominal gain 1.3 e-/ADU. Pixel coordinates ``x, y`` are 0-based; "frame" pixels are pixels of
the simulated geometry (test instrument: 8x8 full-size pixels), "full-size" pixels are bin1 pixels of
the real 4096x4096 OTA.

The functions here are also the documented way to evaluate the truth of the analytic effects
(``docs/simulator.md``, "Truth of the detector").
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import instrument
from .randomness import rng_for

__all__ = [
    "Effects", "EFFECT_SWITCHES", "MASK_BITS", "crosstalk_fwd", "DetectorProps", "detector_props",
    "nonlinear_forward", "inverse_nonlinearity_table", "bias_structure", "glow_map", "flat_response",
    "vignetting", "video_cells", "pupil_ghost_profile", "pupil_ghost_centre", "FringePattern",
    "fringe_pattern", "persistence_amplitude", "cosmic_rays", "bleed_columns",
]

#: Seed of everything fixed per detector (the same as part 1's gains).
DETECTOR_SEED = 1971

#: Night-spec switches (``[effects]``), all on by default.
EFFECT_SWITCHES = ("crosstalk", "nonlinearity", "saturation", "persistence", "broken_cells", "video_cells",
                   "bad_pixels", "bias_structure", "dark_glow", "flat_response", "cosmic_rays", "pupil_ghost",
                   "fringes", "dome_illumination")

#: Bits of the truth masks (``masks.fits``).
MASK_BITS = {"BADPIX": 1, "SATURATED": 2, "BLEED": 4, "PERSISTENCE": 8, "COSMIC": 16, "CELL": 32}

#: Raw value written for a pixel at full well (the ADC saturates: QuickReduce's catalogue takes >= 65535).
FULL_WELL_READOUT = 65535.0 + 400.0

#: Persistence model: amplitudes (nominal ADU) and time constants (s) of the two exponentials; the
#: amplitude is tapered by ``1 - t / window`` so that it is gone at the end of the window.
PERSISTENCE_AMPLITUDES = (30.0, 15.0)
PERSISTENCE_TAUS = (210.0, 980.0)
PERSISTENCE_WINDOW = 600.0

#: Cosmic rays per cm^2 per s (about 1.5 per cm^2 per minute), ODI pixels of 15 micron.
COSMIC_RAY_RATE = 0.025
PIXEL_CM = 15e-4
#: Seconds of readout during which cosmic rays also hit (so biases get a few).
COSMIC_EXTRA_TIME = 10.0

#: Pupil-ghost ring (r1, r_peak, r2 in full-size px; peak relative to the sky), spec section 5.3.
PUPIL_GHOST = {"odi_r": (1100.0, 1900.0, 3460.0, 0.0335), "odi_i": (1220.0, 2020.0, 3360.0, 0.021)}
#: Ghost centre at rotator angle 0: full-size px from the optical axis (pODI: the canned OTA33 centres,
#: (4200, 4150) in OTA33, minus OTA33's axis; 5x6: near the common corner of 33/34/43/44, i.e. the axis).
PUPIL_GHOST_OFFSET = {"podi": (4200.0 - 2067.0, 4150.0 - 2088.0), "odi_5x6": (35.0, -25.0)}

#: Fringe amplitude (relative to the sky, peak of one wave) per filter.
FRINGE_AMPLITUDE = {"odi_i": 0.006, "odi_z": 0.02}

#: Vignetting: 1 inside ``VIGNETTING_RADIUS`` arcmin, then ``1 - depth ((r - R)/width)^2`` (floor 0.5).
VIGNETTING_RADIUS = 21.0
VIGNETTING_DEPTH = 0.25
VIGNETTING_WIDTH = 12.0

#: Video (guide) cells: OTAs that may carry them per layout, 2-4 cells each in science frames.
GUIDE_OTAS = {"podi": (0, 16, 55, 61), "odi_5x6": (11, 16, 51, 56)}


@dataclass(frozen=True)
class Effects:
    """The effect switches of a night (``[effects]`` in the night spec); every effect on by default.

    ``cosmic_ray_rate`` is in events per cm^2 per s.
    """

    crosstalk: bool = True
    nonlinearity: bool = True
    saturation: bool = True
    persistence: bool = True
    broken_cells: bool = True
    video_cells: bool = True
    bad_pixels: bool = True
    bias_structure: bool = True
    dark_glow: bool = True
    flat_response: bool = True
    cosmic_rays: bool = True
    pupil_ghost: bool = True
    fringes: bool = True
    dome_illumination: bool = True
    cosmic_ray_rate: float = COSMIC_RAY_RATE

    @classmethod
    def from_spec(cls, table: dict | None) -> "Effects":
        """From the ``[effects]`` table: switch names -> bool, ``all = false`` first turns all off."""
        table = dict(table or {})
        base = {}
        if "all" in table:
            everything = bool(table.pop("all"))
            base = dict.fromkeys(EFFECT_SWITCHES, everything)
        unknown = set(table) - set(EFFECT_SWITCHES) - {"cosmic_ray_rate"}
        if unknown:
            raise ValueError(f"night spec [effects]: unknown key(s) {', '.join(sorted(unknown))}; known: all, "
                             f"{', '.join(EFFECT_SWITCHES)}, cosmic_ray_rate")
        values = {**base, **{k: (float(v) if k == "cosmic_ray_rate" else bool(v)) for k, v in table.items()}}
        return cls(**values)

    def replace(self, **changes) -> "Effects":
        """A copy with some switches changed."""
        return dataclasses.replace(self, **changes)

    def none(self) -> "Effects":
        """A copy with every effect off."""
        return dataclasses.replace(self, **{k: False for k in EFFECT_SWITCHES})

    def as_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Crosstalk
# --------------------------------------------------------------------------------------------------


@functools.cache
def crosstalk_fwd() -> np.ndarray:
    """The true forward crosstalk matrices, float64 ``(8, 8, 8)`` ``[cell row, source cx, target cx]``.

    Diagonal 1; off-diagonal log-normal with median 9e-5 (sigma 0.7 in ln), clipped to 1.9e-5..7.5e-4.
    The same for every detector and both layouts (QuickReduce ships one file for both).
    """
    rng = rng_for(DETECTOR_SEED, "crosstalk")
    fwd = np.exp(rng.normal(math.log(9e-5), 0.7, (8, 8, 8)))
    np.clip(fwd, 1.9e-5, 7.5e-4, out=fwd)
    for cy in range(8):
        np.fill_diagonal(fwd[cy], 1.0)
    return fwd


def apply_crosstalk(raw: np.ndarray, fwd: np.ndarray) -> None:
    """Mix the cells of each cell row in place: ``out[t] = sum_s fwd[cy, s, t] raw[s]`` (whole cells).

    ``raw`` is float32 ``(64, ny, nx)`` in ``instrument.CELL_IDS`` order. Same model as
    ``podisteps.crosstalk.add_crosstalk`` (which works on dicts in float64); done here as a float32 matrix
    product per cell row for speed (the cross terms are < 1e-3 of the source, float32 rounding of them
    is below 1e-4 ADU).
    """
    index = {cid: i for i, cid in enumerate(instrument.CELL_IDS)}
    ny, nx = raw.shape[1:]
    for cy in range(8):
        idx = [index[(cx, cy)] for cx in range(8)]
        row = raw[idx].reshape(8, ny * nx)
        mixed = fwd[cy].T.astype(np.float32) @ row
        raw[idx] = mixed.reshape(8, ny, nx)


# --------------------------------------------------------------------------------------------------
# Fixed properties of one detector
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Non-linearity
# --------------------------------------------------------------------------------------------------


def nonlinear_forward(d, c2: float, c3: float):
    """``d + c2 d^2 + c3 d^3``: raw ADU above bias -> linear ADU (what the pipeline applies)."""
    return d + d * d * (c2 + c3 * d)


@functools.cache
def inverse_nonlinearity_table(c2: float, c3: float, top: float = 80000.0) -> tuple[np.ndarray, np.ndarray]:
    """Grid ``(linear, raw)`` of the inverse non-linearity from -2000 to ``top`` linear ADU (step 32).

    Uses ``podisteps.nonlinearity.invert_nonlinearity``; linear interpolation on this grid is exact to
    < 1e-3 ADU (the curvature is ~1e-6 per ADU).
    """
    from ..nonlinearity import invert_nonlinearity

    lin = np.arange(-2000.0, top + 32.0, 32.0)
    return lin, invert_nonlinearity(lin, c2, c3)


def invert_nonlinearity_cells(d_lin: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> None:
    """In place: solve ``d + c2 d^2 + c3 d^3 = d_lin`` per cell for a stack ``(64, ny, nx)`` (float32).

    Third-order series start ``d0 = x - c2 x^2 + (2 c2^2 - c3) x^3`` then two Newton steps in float64
    coefficients / float32 arrays; the result agrees with ``podisteps.nonlinearity.invert_nonlinearity``
    to < 0.01 ADU over 0-80000 ADU for the coefficients drawn here (``|c2| < 6e-7``, ``|c3| < 1e-11``).
    """
    a2 = c2.astype(np.float32)[:, None, None]
    a3 = c3.astype(np.float32)[:, None, None]
    b3 = (2 * c2 * c2 - c3).astype(np.float32)[:, None, None]
    x = d_lin.copy()
    d = d_lin
    # d0 = x + x^2 (-c2 + b3 x)
    t = b3 * x
    t -= a2
    t *= x
    t *= x
    d += t
    for _ in range(2):
        # residual = d + d^2 (c2 + c3 d) - x ; slope = 1 + d (2 c2 + 3 c3 d)
        t = a3 * d
        t += a2
        t *= d
        t *= d
        t += d
        t -= x
        s = (3 * a3) * d
        s += 2 * a2
        s *= d
        s += np.float32(1.0)
        t /= s
        d -= t


# --------------------------------------------------------------------------------------------------
# Bias structure, glow
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Flat response
# --------------------------------------------------------------------------------------------------


def vignetting(fx: np.ndarray, fy: np.ndarray) -> np.ndarray | float:
    """Vignetting on the grid ``fx[None, :]``, ``fy[:, None]`` (arcmin from the axis), float32 (1.0 when the
    whole grid lies inside ``VIGNETTING_RADIUS``)."""
    if math.hypot(np.abs(fx).max(), np.abs(fy).max()) <= VIGNETTING_RADIUS:
        return 1.0
    fx, fy = np.asarray(fx, np.float32), np.asarray(fy, np.float32)
    r = np.sqrt((fx * fx)[None, :] + (fy * fy)[:, None])
    t = np.clip((r - VIGNETTING_RADIUS) / VIGNETTING_WIDTH, 0.0, None)
    return np.maximum(1.0 - VIGNETTING_DEPTH * t * t, 0.5).astype(np.float32)


def pixel_response(serial: str, geo: instrument.CellGeometry) -> np.ndarray:
    """Pixel-to-pixel response, uniform with sigma 1 % around 1, ``(64, data_ny, data_nx)`` float32."""
    rng = rng_for(DETECTOR_SEED, "pixel-response", serial, geo.kind, geo.binning)
    u = rng.random((64, geo.data_ny, geo.data_nx), dtype=np.float32)
    u -= np.float32(0.5)
    u *= np.float32(0.01 * math.sqrt(12.0))
    u += np.float32(1.0)
    return u


def flat_response(serial: str, geo: instrument.CellGeometry, crpix: tuple[float, float], *,
                  pixels: bool = True, defects: bool = True) -> np.ndarray:
    """The full flat response of an OTA, ``(64, data_ny, data_nx)`` float32, cell data sections.

    ``vignetting(fx, fy) * cell_qe[cell] * pixel_response * dead-defect factors``; ``crpix`` is the model
    axis (full-size px) of the OTA, as in ``sky.focal_plane_axes``.
    """
    from .sky import focal_plane_axes

    props = detector_props(serial, geo.kind, geo.binning)
    out = pixel_response(serial, geo) if pixels else np.ones((64, geo.data_ny, geo.data_nx), np.float32)
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        rows, cols = geo.target_region(cx, cy)
        fx, fy = focal_plane_axes(crpix, np.arange(cols.start, cols.stop), np.arange(rows.start, rows.stop), geo.scale)
        v = vignetting(fx, fy)
        out[i] *= (v * np.float32(props.cell_qe[i])) if not isinstance(v, float) else np.float32(props.cell_qe[i])
    if defects:
        for d in props.defects:
            if d.kind == "dead":
                out[d.cell, d.rows[0]:d.rows[1], d.cols[0]:d.cols[1]] *= np.float32(d.value)
    return out


# --------------------------------------------------------------------------------------------------
# Video cells
# --------------------------------------------------------------------------------------------------


def video_cells(seed: int, exposure, ota: int) -> tuple[int, ...]:
    """Indices (``instrument.CELL_IDS``) of the video (guide) cells of ``ota`` in a science exposure.

    2-4 cells on each guide OTA (``GUIDE_OTAS``), none in calibration frames.
    """
    if exposure.obstype != "OBJECT" or ota not in GUIDE_OTAS[exposure.layout]:
        return ()
    rng = rng_for(seed, "video-cells", exposure.obsid, ota)
    n = int(rng.integers(2, 5))
    return tuple(sorted(int(i) for i in rng.choice(64, n, replace=False)))


def video_cell_content(rng: np.random.Generator, geo: instrument.CellGeometry, pedestal: float) -> np.ndarray:
    """Raw data section of a video cell: strong corner glow, a guide star, row jitter, noise (raw ADU)."""
    ny, nx = geo.data_ny, geo.data_nx
    r0 = 60.0 / geo.scale
    glow = 2500.0 * np.outer(np.exp(-np.arange(ny) / r0), np.exp(-np.arange(nx) / r0))
    yy, xx = np.mgrid[0:ny, 0:nx]
    x0, y0 = rng.uniform(0.3, 0.7) * nx, rng.uniform(0.3, 0.7) * ny
    sigma = max(0.8, 4.0 / geo.scale)
    star = rng.uniform(5000.0, 25000.0) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    rows = rng.normal(0.0, 15.0, (ny, 1))
    noise = rng.normal(0.0, 12.0, (ny, nx))
    return (pedestal + 250.0 + glow + star + rows + noise).astype(np.float32)


def broken_cell_content(rng: np.random.Generator, geo: instrument.CellGeometry, pedestal: float) -> np.ndarray:
    """Raw data section of a broken cell: no light, a ramp along the rows, stripes and heavy noise."""
    ny, nx = geo.data_ny, geo.data_nx
    ramp = np.linspace(0.0, rng.uniform(-300.0, 800.0), ny)[:, None]
    stripes = rng.normal(0.0, 40.0, (1, nx))
    noise = rng.normal(0.0, 25.0, (ny, nx))
    return np.clip(pedestal + ramp + stripes + noise, 0.0, 60000.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Pupil ghost and fringes
# --------------------------------------------------------------------------------------------------


def pupil_ghost_profile(filtername: str, r: np.ndarray) -> np.ndarray:
    """Ghost amplitude relative to the sky at full-size radius ``r`` (px): sin^2 rise, cos^2 fall, 0 outside."""
    r1, rp, r2, peak = PUPIL_GHOST[filtername]
    r = np.asarray(r, dtype=np.float32)
    up = np.sin(0.5 * np.pi * np.clip((r - r1) / (rp - r1), 0.0, 1.0)) ** 2
    down = np.cos(0.5 * np.pi * np.clip((r - rp) / (r2 - rp), 0.0, 1.0)) ** 2
    return (peak * np.where(r < rp, up, down)).astype(np.float32)


def pupil_ghost_centre(layout: str, rotator_deg: float) -> tuple[float, float]:
    """Ghost centre relative to the optical axis, full-size px, rotated with the rotator angle (CCW)."""
    ox, oy = PUPIL_GHOST_OFFSET[layout]
    a = math.radians(rotator_deg)
    return ox * math.cos(a) - oy * math.sin(a), ox * math.sin(a) + oy * math.cos(a)


@dataclass(frozen=True)
class FringePattern:
    """Fringe pattern of one detector: ``f(x, y) = sum_j cos(kx_j x + ky_j y + phi_j) / 2``, full-size px.

    Attributes are arrays over the waves (wavenumbers rad/px, phases rad).
    """

    kx: np.ndarray
    ky: np.ndarray
    phase: np.ndarray

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``f`` on the grid ``x[None, :]``, ``y[:, None]`` (full-size px), float32.

        ``cos(a + b) = cos a cos b - sin a sin b`` makes the sum over waves one matrix product
        ``(ny, 2J) @ (2J, nx)``.
        """
        a = self.kx[:, None] * np.asarray(x, np.float64)[None, :] + self.phase[:, None]
        b = self.ky[:, None] * np.asarray(y, np.float64)[None, :]
        left = np.concatenate([np.cos(b), -np.sin(b)]).T.astype(np.float32)
        right = np.concatenate([np.cos(a), np.sin(a)]).astype(np.float32)
        out = left @ right
        out *= np.float32(0.5)
        return out

    def at(self, x, y) -> np.ndarray:
        """``f`` at points (full-size px)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        return 0.5 * sum(np.cos(kx * x + ky * y + ph) for kx, ky, ph in zip(self.kx, self.ky, self.phase))

    def as_dict(self) -> dict:
        return {"kx": self.kx.tolist(), "ky": self.ky.tolist(), "phase": self.phase.tolist()}


@functools.cache
def fringe_pattern(serial: str) -> FringePattern:
    """The fringe pattern of a detector (4 waves, wavelengths 300-700 full-size px, random directions)."""
    rng = rng_for(DETECTOR_SEED, "fringes", serial)
    lam = rng.uniform(300.0, 700.0, 4)
    theta = rng.uniform(0.0, np.pi, 4)
    k = 2 * np.pi / lam
    return FringePattern(k * np.cos(theta), k * np.sin(theta), rng.uniform(0.0, 2 * np.pi, 4))


def fringe_vectors(serial: str, *, size: int = 4096, step: int = 8) -> list[tuple[float, float, float, float]]:
    """Dark -> bright pairs of the fringe pattern in full-size px (0-based): ``(x, y, length, angle_deg)``.

    Local minima of ``f`` on a grid of ``step`` px, each paired with the nearest local maximum 50-400 px
    away; both ends are kept inside the data regions of the full-size cells.
    """
    from scipy import ndimage

    pat = fringe_pattern(serial)
    g = np.arange(step // 2, size, step, dtype=float)
    f = pat.evaluate(g, g)
    inner = np.zeros(f.shape, bool)
    inner[4:-4, 4:-4] = True  # extrema on the grid border are not extrema of the pattern
    lo = (f == ndimage.minimum_filter(f, size=9)) & (f < -0.5) & inner
    hi = (f == ndimage.maximum_filter(f, size=9)) & (f > 0.5) & inner
    ly, lx = np.nonzero(lo)
    hy, hx = np.nonzero(hi)
    if not len(hx):
        return []
    geo = instrument.geometry("full", 1)
    hxs, hys = g[hx], g[hy]
    out = []
    for x, y in zip(g[lx], g[ly]):
        d = np.hypot(hxs - x, hys - y)
        d[(d < 50) | (d > 400)] = np.inf
        j = int(np.argmin(d))
        if not np.isfinite(d[j]):
            continue
        bx, by = hxs[j], hys[j]
        if geo.cell_at(x, y) is None or geo.cell_at(bx, by) is None:
            continue
        out.append((float(x), float(y), float(d[j]), math.degrees(math.atan2(by - y, bx - x))))
    return out


# --------------------------------------------------------------------------------------------------
# Persistence, cosmic rays, bleeding
# --------------------------------------------------------------------------------------------------


def persistence_amplitude(t: float) -> float:
    """Persistent signal (nominal ADU per pixel) ``t`` s after the end of the saturating exposure.

    ``(30 exp(-t/210) + 15 exp(-t/980)) (1 - t/600)`` for ``0 <= t <= 600``, else 0.
    """
    if t < 0 or t > PERSISTENCE_WINDOW:
        return 0.0
    a = sum(amp * math.exp(-t / tau) for amp, tau in zip(PERSISTENCE_AMPLITUDES, PERSISTENCE_TAUS))
    return a * (1.0 - t / PERSISTENCE_WINDOW)


def cosmic_rays(rng: np.random.Generator, geo: instrument.CellGeometry, seconds: float, rate: float):
    """Draw the cosmic rays of one OTA: returns ``(y, x, electrons)`` arrays of frame pixels, and the count.

    Events are spots (55 %), straight tracks (35 %, length exponential with mean 15 full-size px,
    at most 250) and worms (10 %, random walks of 10-40 steps); charge 1500 e- per event plus 300 e- per
    full-size px of path, times a log-normal factor (sigma 0.4). Positions are uniform over the OTA.
    """
    area = 64 * geo.data_ny * geo.data_nx * (geo.scale * PIXEL_CM) ** 2
    n = int(rng.poisson(rate * area * max(seconds, 0.0)))
    size = geo.ota_size * geo.scale
    xs, ys, qs = [], [], []
    for _ in range(n):
        x0, y0 = rng.uniform(0, size, 2)
        kind = rng.random()
        if kind < 0.55:
            length = rng.uniform(0.0, 2.0)
        elif kind < 0.9:
            length = min(250.0, rng.exponential(15.0))
        else:
            length = float(rng.integers(10, 41))
        npts = max(1, int(length * 2) + 1)
        if kind < 0.9:
            a = rng.uniform(0, 2 * np.pi)
            t = np.linspace(0.0, length, npts)
            px, py = x0 + t * math.cos(a), y0 + t * math.sin(a)
        else:
            steps = rng.normal(0.0, 0.5, (npts, 2)) + 0.3 * np.array([math.cos(rng.uniform(0, 6.3)), 0.0])
            px, py = x0 + np.cumsum(steps[:, 0]), y0 + np.cumsum(steps[:, 1])
        q = (1500.0 + 300.0 * length) * math.exp(rng.normal(0.0, 0.4))
        xs.append(px)
        ys.append(py)
        qs.append(np.full(npts, q / npts))
    if not n:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0), 0
    x = np.floor(np.concatenate(xs) / geo.scale).astype(int)
    y = np.floor(np.concatenate(ys) / geo.scale).astype(int)
    q = np.concatenate(qs)
    ok = (x >= 0) & (x < geo.ota_size) & (y >= 0) & (y < geo.ota_size)
    flat = y[ok] * geo.ota_size + x[ok]
    uniq, inv = np.unique(flat, return_inverse=True)
    charge = np.bincount(inv, weights=q[ok])
    return uniq // geo.ota_size, uniq % geo.ota_size, charge, n


def bleed_columns(data: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Saturate and bleed one cell in place: charge above ``cap`` spills up the column (higher rows).

    Parameters
    ----------
    data : numpy.ndarray
        Linear signal above bias of the data section, float32 ``(ny, nx)``; modified.
    cap : float
        Full well in the same units.

    Returns
    -------
    None when nothing exceeds ``cap``, else ``(full, own, spilled)`` bool arrays ``(ny, nx)``: pixels at
    full well, pixels whose own charge exceeded it, and pixels that received spilled charge. Charge
    reaching the top row leaves the cell.
    """
    over = data > cap
    if not over.any():
        return None
    cols = np.nonzero(over.any(axis=0))[0]
    sub = data[:, cols].astype(np.float64)
    ny = sub.shape[0]
    carry = np.zeros(len(cols))
    full = np.zeros(sub.shape, bool)
    spilled = np.zeros(sub.shape, bool)
    for y in range(ny):
        spilled[y] = carry > 0
        v = sub[y] + carry
        full[y] = v >= cap
        carry = np.where(full[y], v - cap, 0.0)
        sub[y] = np.minimum(v, cap)
    data[:, cols] = sub
    out_full = np.zeros(data.shape, bool)
    out_spill = np.zeros(data.shape, bool)
    out_full[:, cols] = full
    out_spill[:, cols] = spilled
    return out_full, over, out_spill
