"""Video (guide) cells and broken cells: which cells of a science exposure are read as guide cells, and
what video and broken cells hold. Units as in :mod:`podisteps.simulate.effects`.
"""

from __future__ import annotations

import numpy as np

from .. import instrument
from .randomness import rng_for

__all__ = ["GUIDE_OTAS", "video_cells", "video_cell_content", "broken_cell_content"]

#: Video (guide) cells: OTAs that may carry them per layout, 2-4 cells each in science frames.
GUIDE_OTAS = {"podi": (0, 16, 55, 61), "odi_5x6": (11, 16, 51, 56)}


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
