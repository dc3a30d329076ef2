"""The focal-plane composites (podisteps.focalplane.focalfit) without Luigi: samples, exposure-wide fit, correction.

Synthetic test-instrument-sized OTAs (512 x 512 px, scale 8) of a flat sky plus a known multiple of a fringe
template plus Gaussian noise: the fit must recover the fringe scale and the sky, and the correction must
leave only the noise.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.errors import PodiflowError
from podisteps.focalplane import focalfit

SHAPE = (512, 512)
SCALE = 8
SKY_ADU, FRINGE_ADU, NOISE_ADU = 1000.0, 40.0, 5.0
OTAS = (33, 34, 44)


def _template() -> np.ndarray:
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return np.sin(2 * np.pi * x / 128.0).astype(np.float32)


def _vectors() -> np.ndarray:
    """Dark (sin = -1) to bright (sin = +1) ends, frame px: x_dark, y_dark, x_bright, y_bright."""
    return np.array([[96.0 + 128 * i, 64.0 + 96 * j, 32.0 + 128 * i, 64.0 + 96 * j]
                     for i in range(3) for j in range(4)])


def _ota_hduls(seed: int = 1, *, otas=OTAS) -> tuple[dict, dict]:
    """``OTA -> ota_samples HDUList`` and ``OTA -> frame`` of the synthetic OTAs."""
    rng = np.random.default_rng(seed)
    template = _template()
    hduls, frames = {}, {}
    for ota in otas:
        data = (SKY_ADU + FRINGE_ADU * template + rng.normal(0, NOISE_ADU, SHAPE)).astype(np.float32)
        header = fits.Header({"CRPIX1": 600.0, "CRPIX2": -50.0, "ROTSTART": 0.0, "CELLMODE": "S" * 64})
        x, y = np.meshgrid(np.arange(20, 512, 40.0), np.arange(20, 512, 40.0))
        boxes = Table({"X": x.ravel(), "Y": y.ravel(), "INTENSITY": data[y.ravel().astype(int), x.ravel().astype(int)]})
        rows = focalfit.fringe_samples(data, template, _vectors(), boxes, scale=SCALE)
        hduls[ota] = focalfit.ota_samples(data, header, boxes, ota=ota, scale=SCALE, fringe_rows=rows,
                                          pupilghost_bins=True)
        frames[ota] = data
    return hduls, frames


def _as_samples(hdul: fits.HDUList) -> dict:
    """One OTA's samples as :func:`podisteps.focalplane.focalfit.fit_focal_plane` takes them."""
    return {h.name: (Table(h.data) if h.name != "PRIMARY" else h.header) for h in hdul}


def _samples(seed: int = 1) -> tuple[dict, dict]:
    hduls, frames = _ota_hduls(seed)
    return {ota: _as_samples(hdul) for ota, hdul in hduls.items()}, frames


def test_samples_layout():
    samples, _ = _samples()
    s = samples[33]
    assert s["PRIMARY"]["OTA"] == 33 and s["PRIMARY"]["SCALE"] == SCALE and not s["PRIMARY"]["GUIDEOTA"]
    assert s["PRIMARY"]["AXIS_X"] == 599.0 and s["PRIMARY"]["AXIS_Y"] == -51.0
    assert len(s["FRINGE"]) == 12 and np.allclose(s["FRINGE"]["scale"], FRINGE_ADU, rtol=0.1)  # 3x3-px boxes
    assert len(s["PGBINS"]) == (512 // 8) ** 2 and "FRNG_T" in s["SKYBOXES"].colnames


def test_fit_recovers_fringe_scale_and_sky():
    samples, _ = _samples()
    fit = focalfit.fit_focal_plane(samples, layout="podi", sky_otas=(33, 44), centre_subsample=4)
    ph = fit[0].header
    assert ph["FRNG_SCL"] == pytest.approx(FRINGE_ADU, rel=0.02) and ph["FRNG_NV"] == 36
    assert ph["PUPLGFAC"] == focalfit.NOT_DONE
    sky = Table(fit["SKYLEVEL"].data)
    assert set(sky["OTA"]) == {33, 44}  # the sky OTAs only
    assert ph["SKYLEVEL"] == pytest.approx(SKY_ADU, abs=2.0)  # the fringe removed at each box
    assert np.std(sky["CORRECTED"]) < 0.3 * np.std(sky["INTENSITY"])


def test_correction_leaves_the_noise():
    samples, frames = _samples()
    fit = focalfit.fit_focal_plane(samples, layout="podi", sky_otas=OTAS, centre_subsample=4)[0].header
    sci, header, applied = focalfit.correct_ota(frames[34].copy(), fits.Header(), fit, {}, ota=34,
                                                fringe_template=_template())
    assert applied == ["fringe"] and header["FRNG_SCL"] == fit["FRNG_SCL"] and header["PGAFCTD"] is False
    assert np.std(sci - SKY_ADU) == pytest.approx(NOISE_ADU, rel=0.02)
    assert focalfit.correct_ota(frames[34].copy(), fits.Header(), fit, {}, ota=34)[2] == []


def test_exposure_samples_file_reads_back_every_ota_as_its_own_file(tmp_path):
    """The one FocalPlaneSamples file of an exposure: every OTA, in order, with the same tables and cards as
    a file of that OTA alone (the per-OTA layout before), so the fit gets the very same numbers."""
    otas = (44, 33, 34)  # not sorted: the exposure's order is kept
    per_ota, alone = _ota_hduls(otas=otas)[0], {}
    for ota, hdul in per_ota.items():
        hdul.writeto(tmp_path / f"{ota}.fits")
        with fits.open(tmp_path / f"{ota}.fits") as f:
            alone[ota] = {h.name: (Table(h.data) if h.name != "PRIMARY" else h.header.copy()) for h in f}
    focalfit.exposure_samples(per_ota).writeto(tmp_path / "exposure.fits")
    with fits.open(tmp_path / "exposure.fits") as f:
        names = [f"OTA{o}.{k}" for o in otas for k in ("SKYBOXES", "FRINGE", "PGBINS")]
        assert [h.name for h in f] == ["PRIMARY", *names]
        together = focalfit.read_exposure_samples(f)
    assert list(together) == list(otas)
    for ota in otas:
        assert set(together[ota]) == set(alone[ota]) == {"PRIMARY", "FRINGE", "PGBINS", "SKYBOXES"}
        for name in ("FRINGE", "PGBINS", "SKYBOXES"):
            assert together[ota][name].colnames == alone[ota][name].colnames
            assert all(np.array_equal(together[ota][name][c], alone[ota][name][c]) for c in alone[ota][name].colnames)
        cards = alone[ota]["PRIMARY"].copy(strip=True)
        assert len(cards) == 6 and all(together[ota]["PRIMARY"][k] == v for k, v in cards.items())
    fits_alone, fits_together = (focalfit.fit_focal_plane(s, layout="podi", sky_otas=(33, 44), centre_subsample=4)
                                 for s in (alone, together))
    assert fits_together[0].header["FRNG_SCL"] == pytest.approx(FRINGE_ADU, rel=0.02)
    assert list(fits_together[0].header.items()) == list(fits_alone[0].header.items())
    assert np.array_equal(fits_together["SKYLEVEL"].data, fits_alone["SKYLEVEL"].data)


def test_a_per_ota_samples_file_is_refused_naming_it(tmp_path):
    hdul = _ota_hduls(otas=(33,))[0][33]
    hdul.writeto(tmp_path / "o1.33.fpsamples.fits")  # the per-OTA layout of earlier versions
    with fits.open(tmp_path / "o1.33.fpsamples.fits") as f, pytest.raises(PodiflowError, match="o1.33.fpsamples.fits"):
        focalfit.read_exposure_samples(f)
