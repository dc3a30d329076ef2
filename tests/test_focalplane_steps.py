"""Step functions added for the focal-plane tasks (issue 9): ghost profiles and centres from binned samples,
template look-ups, fringe-template helpers. Synthetic test-instrument frames; the simulator supplies only the
injected ghost profile."""

import numpy as np
from astropy.io import fits

from podisteps.focalplane import fringe, pupilghost
from podisteps.simulate import effects
from podisteps.stats import block_median

SCALE = 8
N = 512
RADII = pupilghost.PROFILE_RADII / SCALE


def _flat(centre, *, offset=(0.0, 0.0), seed=0):
    """One test-size OTA of a flat x (1 + ghost), with the ghost centre (frame px) given in this OTA."""
    g = (np.arange(N) + 0.5) * SCALE - 0.5
    cx, cy = (np.asarray(centre) + 0.5) * SCALE - 0.5
    ghost = effects.pupil_ghost_profile("odi_r", np.hypot((g - cx)[None, :], (g - cy)[:, None]))
    noise = np.random.default_rng(seed).normal(0.0, 0.003, (N, N))
    return 30000.0 * (1.0 + ghost + noise)


def _pooled(centre_rel):
    """Binned samples of 4 OTAs around a ghost centre given relative to an 'axis' at (0, 0)."""
    parts = []
    for k, (ox, oy) in enumerate([(0, 0), (-520, 0), (0, -520), (-520, -520)]):  # OTA origins rel. to axis
        values, x, y = block_median(_flat((centre_rel[0] - ox, centre_rel[1] - oy), seed=k), 4)
        parts.append((values, x + ox, y + oy))
    return (np.concatenate(a) for a in zip(*parts))


def test_profile_and_centre_from_pooled_samples():
    true_centre = (-5.0, 3.0)
    values, x, y = _pooled(true_centre)
    values = values / np.median(values)
    sub = slice(None, None, 16)
    centre = pupilghost.fit_ghost_centre(values[sub], x[sub], y[sub], pupilghost.GENERIC_PROFILE[0] / SCALE,
                                         pupilghost.GENERIC_PROFILE[1], guess=(10.0, -10.0), search_px=30.0)
    profile = pupilghost.measure_profile(values, x, y, centre, RADII)
    truth = effects.pupil_ghost_profile("odi_r", pupilghost.PROFILE_RADII)
    assert np.hypot(centre[0] - true_centre[0], centre[1] - true_centre[1]) < 1.0  # 8 full-size px
    ok = np.isfinite(profile)
    assert ok.mean() > 0.9
    assert np.sqrt(np.mean((profile[ok] - truth[ok]) ** 2)) < 0.05 * truth.max()


def test_template_values_match_place_template():
    big = pupilghost.radial_template(RADII, effects.pupil_ghost_profile("odi_r", pupilghost.PROFILE_RADII),
                                     (1101, 1101), (550.0, 550.0))
    centre = (530.2, 515.7)
    placed = pupilghost.place_template(big, (N, N), centre, angle=30.0)
    ys, xs = np.random.default_rng(1).integers(0, N, (2, 200))
    values = pupilghost.template_values(big, xs, ys, centre, angle=30.0)
    np.testing.assert_allclose(values, placed[ys, xs], atol=2e-4)


def test_filter_level_and_configured_level():
    header = fits.Header({f"FLTARM{n}{s}": "OUT" for n in (1, 2, 3) for s in "ABC"})
    header["FLTARM2B"] = "IN"
    assert pupilghost.filter_level(header) == 2
    assert pupilghost.configured_filter_level("odi_r") == 1
    assert pupilghost.configured_filter_level("no-such-filter") is None


def test_centre_guess_rotates_with_the_rotator():
    x0, y0 = pupilghost.centre_guess("podi", 0.0, scale=8)
    x90, y90 = pupilghost.centre_guess("podi", 90.0, scale=8)
    np.testing.assert_allclose((x90, y90), (-y0, x0), atol=1e-9)


def test_fringe_template_helpers_keep_the_fringes_and_drop_gradient_and_stars():
    rng = np.random.default_rng(3)
    yy, xx = np.indices((N, N), dtype=float)
    pattern = 0.5 * (np.cos(2 * np.pi * xx / 60.0) + np.cos(2 * np.pi * (xx + yy) / 80.0))
    frames, skies, masks = [], [], []
    for k in range(5):
        sky = 20000.0 * (1 + 0.002 * (k - 2) * (xx - N / 2) / N)
        frame = sky * (1 + 0.01 * pattern) + rng.normal(0, 100.0, (N, N))
        frame[100 + 40 * k:104 + 40 * k, 200:204] += 5e4  # a star in a different place each frame
        mask = fringe.source_mask(frame)
        assert mask[101 + 40 * k, 201]
        plane = fringe.sky_plane(frame, mask)
        assert np.abs(plane / sky - 1).max() < 0.002
        frames.append(frame), skies.append(plane), masks.append(mask)
    template = fringe.denoise_template(fringe.fringe_template(frames, skies, masks))
    inner = np.s_[16:-16, 16:-16]
    resid = template[inner] - 0.01 * pattern[inner]
    assert np.sqrt(np.nanmean(resid ** 2)) < 0.1 * 0.01 * np.std(pattern)
