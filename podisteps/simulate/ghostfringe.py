"""The pupil ghost (a ring about a centre that turns with the rotator) and the fringe pattern of a detector,
evaluated analytically: these functions are also the truth of both (``docs/simulator.md``). Full-size px.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import instrument
from .detectorprops import DETECTOR_SEED
from .randomness import rng_for

__all__ = ["PUPIL_GHOST", "PUPIL_GHOST_OFFSET", "FRINGE_AMPLITUDE", "pupil_ghost_profile", "pupil_ghost_centre",
           "FringePattern", "fringe_pattern", "fringe_vectors"]

#: Pupil-ghost ring (r1, r_peak, r2 in full-size px; peak relative to the sky), docs/calibrations.md, 'Pupil-ghost
#: templates'.
PUPIL_GHOST = {"odi_r": (1100.0, 1900.0, 3460.0, 0.0335), "odi_i": (1220.0, 2020.0, 3360.0, 0.021)}

#: Ghost centre at rotator angle 0: full-size px from the optical axis (pODI: the canned OTA33 centres,
#: (4200, 4150) in OTA33, minus OTA33's axis; 5x6: near the common corner of 33/34/43/44, i.e. the axis).
PUPIL_GHOST_OFFSET = {"podi": (4200.0 - 2067.0, 4150.0 - 2088.0), "odi_5x6": (35.0, -25.0)}

#: Fringe amplitude (relative to the sky, peak of one wave) per filter.
FRINGE_AMPLITUDE = {"odi_i": 0.006, "odi_z": 0.02}


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
