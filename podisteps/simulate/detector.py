"""Detector effects of part 1: per-cell gains and bias pedestals, dark current, noise, digitisation.

- Gain (e-/ADU) per cell: ``1.3 * (1 + N(0, 0.03))``, fixed per detector serial (the same every night),
  written as the cell ``GAIN``.
- Bias pedestal (ADU) per cell: uniform in 1000-2000 per detector and night, plus a per-exposure jitter
  of sigma 1 ADU; the same in the data, the unused columns and the overscan.
- Read noise 6.5 ADU (Gaussian), dark current 0.003 e-/s/px (full-size pixel; x scale^2 for larger pixels).
- Photon noise in electrons: exact Poisson below ``POISSON_EXACT_BELOW`` = 50 e-, above it a Gaussian of the
  same mean and variance (skewness < 0.15; documented approximation for speed).
- ADU = electrons / GAIN + pedestal + read noise, rounded and clipped to 0..65535 (uint16).
"""

from __future__ import annotations

import numpy as np

from .. import instrument
from .randomness import rng_for

__all__ = ["NOMINAL_GAIN", "READ_NOISE_ADU", "DARK_CURRENT", "POISSON_EXACT_BELOW", "cell_gains",
           "bias_pedestals", "noisy_adu"]

#: Nominal gain, e-/ADU (zero points refer to ADU at this gain).
NOMINAL_GAIN = 1.3
#: Read noise, ADU.
READ_NOISE_ADU = 6.5
#: Dark current, e-/s per full-size pixel.
DARK_CURRENT = 0.003
#: Photon counts (e-) below which the Poisson noise is exact.
POISSON_EXACT_BELOW = 50.0
#: Seed of the fixed detector properties (gains).
DETECTOR_SEED = 1971


def cell_gains(serial: str) -> np.ndarray:
    """Gains of the 64 cells of detector ``serial`` in ``instrument.CELL_IDS`` order, e-/ADU, shape (64,)."""
    rng = rng_for(DETECTOR_SEED, "gain", serial)
    return NOMINAL_GAIN * (1.0 + rng.normal(0.0, 0.03, 64))


def bias_pedestals(serial: str, *, seed: int, night: str, obsid: str) -> np.ndarray:
    """Bias pedestals of the 64 cells of ``serial`` in one exposure, ADU, shape (64,).

    A level per cell and night (uniform 1000-2000 ADU) plus a per-exposure jitter of sigma 1 ADU.
    """
    level = rng_for(seed, "bias-level", night, serial).uniform(1000.0, 2000.0, 64)
    return level + rng_for(seed, "bias-jitter", obsid, serial).normal(0.0, 1.0, 64)


def noisy_adu(electrons: np.ndarray, gains: np.ndarray, rng: np.random.Generator | None, *,
              read_noise: float = READ_NOISE_ADU) -> np.ndarray:
    """Signal above bias in ADU with photon and read noise, not rounded (float32, ``(64, ny, nx)``).

    One Gaussian draw for photon + read noise (sigma^2 = e/g^2 + rn^2), exact Poisson below
    ``POISSON_EXACT_BELOW`` electrons; ``electrons`` is overwritten (used as scratch space). The read noise is thus drawn before the
    non-linearity and crosstalk are applied (their effect on a 6.5-ADU noise is < 0.01 ADU).
    """
    inv_gain = (1.0 / gains).astype(np.float32)[:, None, None]
    adu = electrons
    if rng is not None:
        z = rng.standard_normal(electrons.shape, dtype=np.float32)
        low = electrons < POISSON_EXACT_BELOW
        low &= electrons > 0
        counts = None
        if low.any():
            counts = rng.poisson(electrons[low]).astype(np.float32)
            electrons[low] = 0.0
        sigma = electrons * (inv_gain * inv_gain)
        sigma += np.float32(read_noise) ** 2
        np.sqrt(sigma, out=sigma)
        sigma *= z
        del z
        if counts is not None:
            electrons[low] = counts
        adu *= inv_gain
        adu += sigma
    else:
        adu *= inv_gain
    return adu


def cell_table(values: np.ndarray) -> dict:
    """Per-cell values keyed ``"xy<cx><cy>"`` (JSON-ready), from an array in CELL_IDS order."""
    return {f"xy{cx}{cy}": round(float(v), 6) for (cx, cy), v in zip(instrument.CELL_IDS, values)}
