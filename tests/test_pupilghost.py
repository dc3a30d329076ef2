"""Pupil-ghost templates, samples, scale and centre (podisteps.focalplane.pupilghost) on synthetic test-instrument OTAs.

The simulator is used only to create the images: its ghost profile ``P(r)`` (odi_r ring, peak 3.35 %)
and its pODI ghost centre, (4200, 4150) full-size px in OTA33.
"""

import numpy as np
import pytest
from scipy import ndimage

from podisteps.focalplane import pupilghost
from podisteps.simulate import effects

SCALE = 8  # test instrument: 512x512 frame px per OTA
N = 512
SKY = 20000.0
CENTRE_FULL = (4200.0, 4150.0)  # the simulator's pODI ghost centre in OTA33, 0-based full-size px
PROFILE_FULL = np.linspace(800.0, 4300.0, 140)  # QuickReduce's profile radii, full-size px


def _to_frame(c):
    return tuple((np.asarray(c, float) + 0.5) / SCALE - 0.5)


def _profile():
    """The odi_r ghost profile as QuickReduce stores it, radii in frame px."""
    return PROFILE_FULL / SCALE, effects.pupil_ghost_profile("odi_r", PROFILE_FULL).astype(float)


def _ghost(centre_full):
    """Injected P on the frame: the simulator's profile at the full-size radius of each pixel centre."""
    g = (np.arange(N) + 0.5) * SCALE - 0.5
    r = np.hypot((g - centre_full[0])[None, :], (g - centre_full[1])[:, None])
    return effects.pupil_ghost_profile("odi_r", r).astype(float)


def _sky():
    yy, xx = np.indices((N, N))
    return SKY * (1 + 0.03 * (xx - N / 2) / N - 0.02 * (yy - N / 2) / N)


def _stars_masked(rng, img, n=120):
    """Add Gaussian stars to ``img`` and set their pixels (above 5 ADU) to NaN."""
    yy, xx = np.indices(img.shape)
    stars = np.zeros(img.shape)
    for x, y, flux in zip(rng.uniform(0, N, n), rng.uniform(0, N, n), rng.uniform(2e4, 2e6, n)):
        sl = np.s_[max(int(y) - 10, 0):int(y) + 11, max(int(x) - 10, 0):int(x) + 11]
        stars[sl] += flux / (2 * np.pi * 2.25) * np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / 4.5)
    out = img + stars
    out[stars > 5.0] = np.nan
    return out


@pytest.fixture(scope="module")
def exposure():
    """OTA33 of a test-instrument exposure: sloped sky x (1 + ring) + stars (masked) + noise."""
    rng = np.random.default_rng(33)
    sky = _sky()
    ghost = _ghost(CENTRE_FULL)
    data = _stars_masked(rng, sky * (1 + ghost) + rng.normal(0.0, np.sqrt(SKY), (N, N)))
    truth = float(np.sum(sky * ghost**2) / np.sum(ghost**2))  # least-squares scale of sky x P against P
    return data, ghost, truth


def test_radial_template_matches_injection():
    r, v = _profile()
    tmpl = pupilghost.radial_template(r, v, (N, N), _to_frame(CENTRE_FULL))
    assert tmpl.dtype == np.float32 and tmpl.shape == (N, N)
    np.testing.assert_allclose(tmpl, _ghost(CENTRE_FULL), atol=2e-4)
    assert tmpl.min() == 0.0 and tmpl.max() == pytest.approx(0.0335, rel=0.01)


def test_place_template_shift_and_rotation():
    r, v = _profile()
    big = pupilghost.radial_template(r, v, (901, 901), (450.0, 450.0))
    placed = pupilghost.place_template(big, (N, N), (525.0, 519.0), angle=0.3)  # below 0.5 deg: no rotation
    np.testing.assert_allclose(placed, pupilghost.radial_template(r, v, (N, N), (525.0, 519.0)), atol=1e-6)
    bump = np.zeros((101, 101))
    bump[50, 80] = 1.0  # 30 px along +x of the template centre
    bump[60, 40] = np.nan
    bump[40, 40] = -1.0
    turned = pupilghost.place_template(bump, (200, 200), (100.0, 100.0), angle=90.0)
    assert np.unravel_index(np.argmax(turned), turned.shape) == (130, 100)  # now 30 px along +y
    assert turned.min() == 0.0 and np.isfinite(turned).all()
    np.testing.assert_allclose(turned[50:151, 50:151], np.clip(ndimage.rotate(np.nan_to_num(bump), -90.0,
                               reshape=False, order=3), 0, None), atol=1e-6)
    assert not pupilghost.place_template(bump, (50, 50), (-500.0, 0.0)).any()


def test_scale_recovered_on_sloped_sky(exposure):
    data, ghost, truth = exposure
    r, v = _profile()
    tmpl = pupilghost.radial_template(r, v, data.shape, _to_frame(CENTRE_FULL))
    samples = pupilghost.sample_pupilghost(data, tmpl, rng=np.random.default_rng(1), scale=SCALE)
    assert samples.shape[1] == 4 and 700 < len(samples) <= pupilghost.PG_SAMPLES
    assert np.isfinite(samples).all() and samples[:, 3].max() > 0.03
    scale, bg = pupilghost.fit_pupilghost_scale(samples)
    assert abs(scale / truth - 1) < 0.03
    assert abs(bg / SKY - 1) < 0.03  # bg of the plane at x = y = 0
    flat_scale, _ = pupilghost.fit_pupilghost_scale(samples, gradient=False)
    assert abs(flat_scale / truth - 1) > abs(scale / truth - 1)  # the constant background is biased
    assert np.isnan(pupilghost.fit_pupilghost_scale(samples[:3])).all()


def test_pooled_samples_of_several_otas(exposure):
    data, ghost, truth = exposure
    r, v = _profile()
    tmpl = pupilghost.radial_template(r, v, data.shape, _to_frame(CENTRE_FULL))
    rng = np.random.default_rng(2)
    parts = [pupilghost.sample_pupilghost(data, tmpl, rng=rng, scale=SCALE) for _ in range(2)]
    scale, _ = pupilghost.fit_pupilghost_scale(parts)
    assert abs(scale / truth - 1) < 0.03


def test_centre_found_from_100px_off(exposure):
    data = exposure[0]
    r, v = _profile()
    truth = _to_frame(CENTRE_FULL)
    guess = (truth[0] - 80 / SCALE, truth[1] + 60 / SCALE)  # 100 full-size px off
    cx, cy = pupilghost.find_ghost_centre(data, r, v, guess=guess, search_px=200 / SCALE)
    assert np.hypot(cx - truth[0], cy - truth[1]) * SCALE < 5.0
