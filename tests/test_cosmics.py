"""Cosmic rays: L.A.Cosmic cell by cell."""

import numpy as np

from podisteps import instrument
from podisteps.detrend.assemble import assemble_ota
from podisteps.detrend.cosmics import CosmicParameters, crj_header, remove_cosmics

GEO = instrument.geometry("test", 1)
GAIN, RN_E, SKY = 1.3, 9.0, 1000.0


def _scene(seed=7):
    """Sky + well-sampled stars + cosmic rays on the test OTA; returns frame, CR truth, star pixels."""
    rng = np.random.default_rng(seed)
    cells = {c: np.zeros((GEO.data_ny, GEO.data_nx), dtype=np.float32) for c in instrument.CELL_IDS}
    used = {c: c != (3, 3) for c in instrument.CELL_IDS}
    clean, _ = assemble_ota(cells, GEO, used=used)
    n = GEO.ota_size
    yy, xx = np.mgrid[0:n, 0:n]
    stars = np.zeros((n, n))
    star_pixels = np.zeros((n, n), dtype=bool)
    for x, y in rng.uniform(10, n - 10, (40, 2)):
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        stars += 8000.0 * np.exp(-r2 / (2 * 1.7 ** 2))
        star_pixels |= r2 < (2 * 1.7) ** 2
    signal = SKY + stars
    noisy = rng.poisson(signal * GAIN) / GAIN + rng.normal(0, RN_E / GAIN, (n, n))
    truth = np.zeros((n, n), dtype=bool)
    for x, y in rng.integers(0, n - 2, (300, 2)):
        length = rng.integers(1, 3)
        truth[y, x:x + length] = True
    noisy[truth] += rng.uniform(1500, 8000, truth.sum())
    frame = np.where(np.isfinite(clean), noisy, np.nan).astype(np.float32)
    truth &= np.isfinite(frame)
    return frame, truth, star_pixels & ~truth


def test_finds_cosmic_rays_and_spares_stars():
    frame, truth, star_pixels = _scene()
    cleaned, crmask = remove_cosmics(frame, GEO, gain=GAIN, readnoise=RN_E, params=CosmicParameters(niter=4))
    assert crmask[truth].mean() >= 0.95
    assert crmask[star_pixels].mean() < 0.002
    assert np.abs(np.nanmedian(cleaned[truth]) - SKY) < 100  # replaced by the local background
    # Undefined pixels (gaps, the unused cell) stay NaN and are never flagged.
    assert np.array_equal(np.isnan(cleaned), np.isnan(frame)) and not crmask[np.isnan(frame)].any()
    assert frame.dtype == cleaned.dtype == np.float32


def test_per_cell_gain_and_header():
    frame, truth, _ = _scene(seed=8)
    gains = {c: GAIN for c in instrument.CELL_IDS}
    _, crmask = remove_cosmics(frame, GEO, gain=gains, readnoise=dict.fromkeys(gains, RN_E))
    assert crmask[truth].mean() >= 0.95
    assert crj_header(CosmicParameters(niter=3)) == {"CRJ_ITER": 3, "CRJ_SIGC": 5.0, "CRJ_SIGF": 0.3,
                                                     "CRJ_OBJL": 5.0, "CRJ_SATU": 55000.0,
                                                     "CRJ_METH": "astroscrappy"}
    assert crj_header(None)["CRJ_ITER"] == 0
    assert crj_header(CosmicParameters(satlevel=None))["CRJ_SATU"] == -1.0
