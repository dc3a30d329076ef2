"""Fringe measurement, global scale and templates (podisteps.focalplane.fringe) on synthetic test-instrument OTAs.

The simulator is used only to create the images: its fringe pattern of a detector serial and its
fringe-vector region files.
"""

import numpy as np
import pytest

from podisteps import instrument
from podisteps.detrend.masks import parse_ds9_regions
from podisteps.focalplane import fringe
from podisteps.simulate import effects, mastercals

SCALE = 8  # test instrument: 512x512 frame px per OTA, 8 full-size px each
OTAS = (33, 34, 43, 44)
SKY = 20000.0  # ADU per frame px
AMPLITUDE = effects.FRINGE_AMPLITUDE["odi_z"]


def _fullsize(n):
    """Full-size bin1 0-based coordinates of the centres of ``n`` frame pixels (as the simulator renders)."""
    return (np.arange(n) + 0.5) * SCALE - 0.5


def _pattern(ota):
    """Noise-free fringe pattern f of an OTA on the test frame."""
    serial = instrument.layout("podi").serial(ota)
    g = _fullsize(instrument.geometry("test", 1).ota_size)
    return effects.fringe_pattern(serial).evaluate(g, g).astype(float)


def _stars(rng, shape, n=60, sigma=1.5):
    """Gaussian stars at random positions, ADU, and the mask of their pixels above 5 ADU."""
    yy, xx = np.indices(shape)
    img = np.zeros(shape)
    for x, y, flux in zip(rng.uniform(0, shape[1], n), rng.uniform(0, shape[0], n), rng.uniform(2e4, 2e6, n)):
        sl = np.s_[max(int(y) - 10, 0):int(y) + 11, max(int(x) - 10, 0):int(x) + 11]
        img[sl] += flux / (2 * np.pi * sigma**2) * np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * sigma**2))
    return img, img > 5.0


@pytest.fixture(scope="module")
def vector_dir(tmp_path_factory):
    root = mastercals.write_fringevectors(tmp_path_factory.mktemp("mc"), "podi")
    return root / "odi_z"


def test_vectors_from_regions_coordinates():
    text = "image\n# vector(101,201,100,90) vector=1\nbox(5,5,2,2,0)\nvector(1,1,10,0)\n"
    v = fringe.fringe_vectors_from_regions(parse_ds9_regions(text), scale=1)
    np.testing.assert_allclose(v, [[100, 200, 100, 300], [0, 0, 10, 0]], atol=1e-9)
    v8 = fringe.fringe_vectors_from_regions(parse_ds9_regions(text), scale=8)
    np.testing.assert_allclose(v8[0], [(100.5 / 8) - 0.5, 200.5 / 8 - 0.5, 100.5 / 8 - 0.5, 300.5 / 8 - 0.5])


def test_vector_ends_are_dark_and_bright(vector_dir):
    v = fringe.fringe_vectors_from_regions(vector_dir / "fringevectors__odi_z__OTA33.reg", scale=SCALE)
    assert v.shape == (113, 4)
    pat = effects.fringe_pattern(instrument.layout("podi").serial(33))
    full = (v + 0.5) * SCALE - 0.5  # back to 0-based full-size px
    assert (pat.at(full[:, 0], full[:, 1]) < -0.5).all() and (pat.at(full[:, 2], full[:, 3]) > 0.5).all()


def test_fringe_scale_recovered(vector_dir):
    rng = np.random.default_rng(9)
    rows = []
    for ota in OTAS:
        template = AMPLITUDE * _pattern(ota)
        stars, mask = _stars(rng, template.shape)
        data = SKY * (1 + template) + stars + rng.normal(0.0, np.sqrt(SKY), template.shape)
        data[mask] = np.nan
        vectors = fringe.fringe_vectors_from_regions(vector_dir / f"fringevectors__odi_z__OTA{ota:02d}.reg",
                                                     scale=SCALE)
        r = fringe.fringe_amplitudes(data, template, vectors, scale=SCALE)
        assert r.shape[1] == len(fringe.FRINGE_COLUMNS) and 0 < len(r) <= len(vectors)
        np.testing.assert_allclose(r[:, 4], r[:, 0] - r[:, 1])
        rows.append(r)
    median, std = fringe.fringe_scale(rows)
    assert abs(median / SKY - 1) < 0.03
    assert 0 < std < 0.5 * SKY
    assert fringe.fringe_scale(np.concatenate(rows)) == (median, std)


def test_fringe_amplitudes_drop_zero_and_offframe():
    template = np.zeros((50, 50))
    template[:, 25:] = 1.0
    data = 100.0 + 5.0 * template
    vectors = np.array([[10, 10, 40, 10], [10, 10, 12, 10], [10, 10, 400, 10]], float)
    r = fringe.fringe_amplitudes(data, template, vectors, box=4, scale=1)
    np.testing.assert_allclose(r, [[105, 100, 1, 0, 5, 1, 5]])
    assert np.isnan(fringe.fringe_scale(np.empty((0, 7)))).all()


def test_template_from_frames_with_sources_masked():
    rng = np.random.default_rng(5)
    truth = AMPLITUDE * _pattern(44)
    frames, skies, masks = [], [], []
    for sky in (15000.0, 18000.0, 21000.0, 24000.0, 17000.0, 19000.0, 23000.0):
        stars, mask = _stars(rng, truth.shape, n=150)
        frames.append(sky * (1 + truth) + stars + rng.normal(0.0, np.sqrt(sky), truth.shape))
        skies.append(sky)
        masks.append(mask)
    template = fringe.fringe_template(frames, skies, masks)
    assert template.dtype == np.float32 and np.isfinite(template).all()
    corr = np.corrcoef(template.ravel(), truth.ravel())[0, 1]
    assert corr > 0.95
    unmasked = fringe.fringe_template(frames, skies, [None] * len(frames))
    assert np.nanmax(np.abs(template - truth)) < np.nanmax(np.abs(unmasked - truth))


def test_reject_bright_sky():
    keep = fringe.reject_bright_sky([3.0, 7.6, 7.7, np.nan], fringe.NOMINAL_SKY_RATE["odi_i"])
    assert keep.tolist() == [True, True, False, False]


@pytest.mark.parametrize("binning", [1, 2])
def test_denoise_template_keeps_the_fringe_amplitude_and_drops_the_noise(binning):
    yy, xx = np.indices((256, 256), dtype=float)
    pattern = 0.003 * (np.cos(2 * np.pi * (xx + 0.3 * yy) / 41.0) + np.cos(2 * np.pi * (yy - 0.5 * xx) / 67.0 + 1.0))
    noisy = pattern + np.random.default_rng(5).normal(0.0, 0.002, pattern.shape)
    noisy[100:104, :] = np.nan  # a masked band
    noisy[30:36, 50:56] = np.nan  # a masked star
    clean = fringe.denoise_template(noisy, binning=binning)
    assert np.isfinite(clean).all()  # the holes filled with the fringes
    ok = np.isfinite(noisy)
    assert abs(np.sum(clean[ok] * pattern[ok]) / np.sum(pattern[ok] ** 2) - 1) < 0.02  # not attenuated
    assert np.std((clean - pattern)[ok]) < 0.1 * np.std(pattern)  # the noise was 0.67 x the pattern rms
    assert np.std((clean - pattern)[~ok]) < 0.2 * np.std(pattern)


def test_source_mask_on_blocks_finds_a_faint_extended_halo():
    rng = np.random.default_rng(6)
    yy, xx = np.indices((512, 512), dtype=float)
    halo = 30.0 * np.exp(-0.5 * ((xx - 300) ** 2 + (yy - 200) ** 2) / 12.0 ** 2)  # 1.5 % of the sky at its peak
    data = 2000.0 + halo + rng.normal(0.0, 45.0, xx.shape)  # one pixel's noise is 1.5x the halo's peak
    assert fringe.source_mask(data, binning=8)[200, 300] and not fringe.source_mask(data)[200, 300]


def test_fringevectors_option_chooses_the_vector_files(vector_dir, tmp_path):
    from types import SimpleNamespace

    from workflows.focalplane import fringe_source, fringe_vector_file
    from workflows.options import ReductionOptions

    record = SimpleNamespace(mjd=56570.1, filter="odi_z", otas=(33, 34), obsid="o20131005T014602.0", binning=1)
    folder = ReductionOptions().replace(fringe="auto", fringevectors=str(vector_dir))
    assert fringe_vector_file(record, folder, 33) == vector_dir / "fringevectors__odi_z__OTA33.reg"
    one = vector_dir / "fringevectors__odi_z__OTA34.reg"  # a single file serves every OTA
    assert fringe_vector_file(record, folder.replace(fringevectors=str(one)), 33) == one
    empty = folder.replace(fringevectors=str(tmp_path))  # no vectors for the filter: fringes are not corrected
    assert fringe_vector_file(record, empty, 33) is None and fringe_source(record, empty) is None
