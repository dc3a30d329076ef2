"""What the readout does to a cell's signal: crosstalk between the cells of a cell row, the non-linear
response, and the value an ADC at full well writes. Units as in :mod:`podisteps.simulate.effects`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import instrument
from .detectorprops import DETECTOR_SEED
from .randomness import rng_for

__all__ = ["FULL_WELL_READOUT", "crosstalk_fwd", "apply_crosstalk", "nonlinear_forward",
           "inverse_nonlinearity_table", "invert_nonlinearity_cells"]

#: Raw value written for a pixel at full well (the ADC saturates: QuickReduce's catalogue takes >= 65535).
FULL_WELL_READOUT = 65535.0 + 400.0


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
    ``podisteps.detrend.crosstalk.add_crosstalk`` (which works on dicts in float64); done here as a float32 matrix
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


def nonlinear_forward(d, c2: float, c3: float):
    """``d + c2 d^2 + c3 d^3``: raw ADU above bias -> linear ADU (what the pipeline applies)."""
    return d + d * d * (c2 + c3 * d)


@functools.cache
def inverse_nonlinearity_table(c2: float, c3: float, top: float = 80000.0) -> tuple[np.ndarray, np.ndarray]:
    """Grid ``(linear, raw)`` of the inverse non-linearity from -2000 to ``top`` linear ADU (step 32).

    Uses ``podisteps.detrend.nonlinearity.invert_nonlinearity``; linear interpolation on this grid is exact to
    < 1e-3 ADU (the curvature is ~1e-6 per ADU).
    """
    from ..detrend.nonlinearity import invert_nonlinearity

    lin = np.arange(-2000.0, top + 32.0, 32.0)
    return lin, invert_nonlinearity(lin, c2, c3)


def invert_nonlinearity_cells(d_lin: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> None:
    """In place: solve ``d + c2 d^2 + c3 d^3 = d_lin`` per cell for a stack ``(64, ny, nx)`` (float32).

    Third-order series start ``d0 = x - c2 x^2 + (2 c2^2 - c3) x^3`` then two Newton steps in float64
    coefficients / float32 arrays; the result agrees with ``podisteps.detrend.nonlinearity.invert_nonlinearity``
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
