"""The flat-field response of a detector: vignetting of the focal plane, pixel-to-pixel response, cell
steps and dead defects. Units as in :mod:`podisteps.simulate.effects`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import instrument
from .detectorprops import DETECTOR_SEED, detector_props
from .randomness import rng_for

__all__ = ["VIGNETTING_RADIUS", "VIGNETTING_DEPTH", "VIGNETTING_WIDTH", "vignetting", "pixel_response",
           "flat_response"]

#: Vignetting: 1 inside ``VIGNETTING_RADIUS`` arcmin, then ``1 - depth ((r - R)/width)^2`` (floor 0.5).
VIGNETTING_RADIUS = 21.0
VIGNETTING_DEPTH = 0.25
VIGNETTING_WIDTH = 12.0


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
