"""Per-exposure events on the pixels: persistence after saturation, cosmic rays, and charge bleeding along
columns from saturated pixels. Units as in :mod:`podisteps.simulate.effects`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import instrument

__all__ = ["PERSISTENCE_AMPLITUDES", "PERSISTENCE_TAUS", "PERSISTENCE_WINDOW", "COSMIC_RAY_RATE", "PIXEL_CM",
           "COSMIC_EXTRA_TIME", "persistence_amplitude", "cosmic_rays", "bleed_columns"]

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
