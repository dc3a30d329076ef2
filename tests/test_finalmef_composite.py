"""The final-MEF composite (podisteps.io.finalmef) without Luigi, on test-instrument frames with their truth.

Per-OTA products are made in memory from the simulator's rendering of one test-small exposure (no bias,
dark or detector effects, so the assembled cells are the detrended frame in ADU): one rendering with noise,
one without (the expected ADU). The composite's published pixels must give pulls of mean 0 and rms 1
against that truth, with the noise of the simulator's readout (Poisson / gain, read noise, ADC rounding).
"""

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps import instrument
from podisteps.astrometry import header_wcs
from podisteps.detrend.assemble import assemble_ota
from podisteps.detrend.wcs import WCS_CARD_RE
from podisteps.io import finalmef
from podisteps.sanity import SanityError
from podisteps.simulate import detector, load_night, render_exposure

OTAS = (33, 34, 44)
LOG_KEYS = {"bias": "_BIAS", "flat": "_FLAT"}
#: Variance of the difference of two ADC-rounded values (noisy and expected), ADU^2.
ROUNDING_VAR = 2.0 / 12.0


def _frame(cells: dict, geo) -> np.ndarray:
    return assemble_ota(cells, geo)[0]


def _product(ota_render, geo, *, box_step: int = 64) -> tuple[fits.HDUList, np.ndarray]:
    """A per-OTA product as DetrendOTA lays it out, and the frame's gain per pixel (e-/ADU)."""
    sci = _frame(ota_render.cells, geo)
    gain = _frame({c: np.full((geo.data_ny, geo.data_nx), g, np.float32)
                   for c, g in zip(instrument.CELL_IDS, ota_render.gains)}, geo)
    hdr = ota_render.primary.copy()
    for key in [k for k in hdr if WCS_CARD_RE.match(k) or k.startswith("WAT")]:  # the raw IRAF WCS, as detrending
        del hdr[key]
    hdr.update(ota_render.wcs_header)
    hdr["OTA"], hdr["GAIN"], hdr["NGAIN"] = ota_render.ota, float(np.mean(ota_render.gains)), 64
    hdr["_BIAS"], hdr["_FLAT"] = "successful", "not selected"
    mask = np.where(np.isfinite(sci), 0, 1).astype(np.uint16)
    x, y = np.meshgrid(np.arange(32, sci.shape[1], box_step), np.arange(32, sci.shape[0], box_step))
    boxes = Table({"X": x.ravel().astype(float), "Y": y.ravel().astype(float),
                   "INTENSITY": np.nan_to_num(sci[y.ravel(), x.ravel()]).astype(np.float32)})
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, header=hdr),
                         fits.ImageHDU(mask, name=f"OTA{ota_render.ota:02d}.MASK"),
                         fits.BinTableHDU(boxes, name="SKYBOXES")])
    return hdul, gain


@pytest.fixture(scope="module")
def exposure():
    """Noisy products, the expected frames, gains and the truth WCS headers of three OTAs of one exposure."""
    night = load_night("test-small")
    spec = next(e for e in night.exposures if e.obstype == "OBJECT")
    kwargs = dict(bias=False, dark=False, effects=night.effects.none(), otas=OTAS)
    noisy, expected = render_exposure(spec, night, **kwargs), render_exposure(spec, night, noise=False, **kwargs)
    geo = spec.geometry
    products, gains, truth = [], {}, {}
    for ota in OTAS:
        hdul, gains[ota] = _product(noisy.otas[ota], geo)
        products.append(hdul)
        truth[ota] = _frame(expected.otas[ota].cells, geo)
    return {"spec": spec, "products": products, "gains": gains, "truth": truth,
            "wcs": {o: noisy.otas[o].wcs_header for o in OTAS}}


def _mef(products, **options) -> fits.HDUList:
    provenance = {"otas": [[("raw", f"/raw/{i}.fits"), ("bias", "/cals/bias.fits")] for i in range(len(products))]}
    return finalmef.final_mef(products, finalmef.ExposureProducts(provenance=provenance),
                              options=finalmef.MefOptions(**options), log_keys=LOG_KEYS, name="test.fits")


def test_pixels_give_unit_pulls_against_the_truth(exposure):
    hdul = _mef(exposure["products"], maskext=True)
    pulls = []
    for ota in OTAS:
        data, truth = hdul[f"OTA{ota:02d}.SCI"].data, exposure["truth"][ota]
        good = np.isfinite(data)
        assert good.mean() > 0.8 and np.array_equal(good, np.isfinite(truth))
        sigma = np.sqrt(truth[good] / exposure["gains"][ota][good] + detector.READ_NOISE_ADU ** 2 + ROUNDING_VAR)
        pulls.append((data[good] - truth[good]) / sigma)
        assert np.array_equal(hdul[f"OTA{ota:02d}.MASK"].data, np.where(good, 0, 1))
    pulls = np.concatenate(pulls)
    assert abs(pulls.mean()) < 0.01, pulls.mean()
    assert abs(pulls.std() - 1.0) < 0.02, pulls.std()


def test_headers_wcs_and_tables(exposure):
    hdul = _mef(exposure["products"])
    ph, spec = hdul[0].header, exposure["spec"]
    assert ph["OBSID"] == spec.obsid and ph["FILTER"] == spec.filter and ph["EXPTIME"] == spec.exptime
    assert ph["MJD-MID"] == pytest.approx(ph["MJD-OBS"] + spec.exptime / 2 / 86400, abs=1e-8)
    assert ph["_BIAS"] == "successful" and ph["_FLAT"] == "not selected" and ph["NLOSTOTA"] == 0
    gains = [float(np.mean(exposure["products"][i][1].header["GAIN"])) for i in range(len(OTAS))]
    assert ph["GAIN"] == pytest.approx(np.mean(gains)) and ph["NGAIN"] == 64 * len(OTAS)
    for ota in OTAS:
        hdr = hdul[f"OTA{ota:02d}.SCI"].header
        assert "OBSID" not in hdr and "FILTER" not in hdr
        for key in ("CRVAL1", "CRVAL2", "CD1_1", "CD2_2", "CRPIX1", "CRPIX2"):
            assert hdr[key] == exposure["wcs"][ota][key]
    sky = Table(hdul["SKYLEVEL"].data)
    assert sorted(set(sky["OTA"])) == list(OTAS) and len(sky) == 3 * 64
    assert ph["SKYLEVEL"] == pytest.approx(np.median(sky["INTENSITY"]), rel=1e-3)
    assert ph["SKYLEVEL"] == pytest.approx(np.median(exposure["truth"][33][32::64, 32::64]), rel=0.01)
    row = sky[sky["OTA"] == 44][5]
    ra, dec = header_wcs(exposure["wcs"][44]).all_pix2world(row["X"], row["Y"], 0)
    assert (row["RA"], row["DEC"]) == pytest.approx((float(ra), float(dec)), abs=1e-9)
    assoc = Table(hdul["ASSOCIATIONS"].data)
    assert list(assoc["correction"]) == ["raw", "bias", "raw", "raw"]  # one row per (step, file)
    assert list(assoc["applied"]) == [True] * 4
    assert hdul[-1].name == "ASSOCIATIONS" and hdul[-2].name == "SKYLEVEL"


@pytest.mark.parametrize("options", [{}, {"prep4sex": True}, {"indefval": 0.0}])
def test_an_ota_of_undefined_pixels_is_left_out_and_named(exposure, options):
    products = [fits.HDUList([h.copy() for h in p]) for p in exposure["products"]]
    products[1][1].data = np.full_like(products[1][1].data, np.nan)  # OTA 34: nothing defined
    hdul = _mef(products, **options)
    names = [h.name for h in hdul]
    assert "OTA34.SCI" not in names and "OTA33.SCI" in names and "OTA44.SCI" in names
    ph = hdul[0].header
    assert ph["NLOSTOTA"] == 1 and ph["LOST34"].startswith("only 0% of its pixels are defined")
    assert 34 not in set(hdul["SKYLEVEL"].data["OTA"]) and len(Table(hdul["ASSOCIATIONS"].data)) == 3
    fill = finalmef.MefOptions(**options).fill
    if not math.isnan(fill):
        assert (hdul["OTA33.SCI"].data == np.float32(fill)).any()


def test_an_ota_with_a_non_finite_wcs_value_is_left_out(exposure):
    products = [fits.HDUList([h.copy() for h in p]) for p in exposure["products"]]
    products[2][1].header["CRVAL1"] = "NaN"  # a header cannot hold a float NaN
    ph = _mef(products)[0].header
    assert ph["NLOSTOTA"] == 1 and ph["LOST44"] == "CRVAL1 = 'NaN' not finite"


def test_most_otas_undefined_fails_the_exposure(exposure):
    products = [fits.HDUList([h.copy() for h in p]) for p in exposure["products"]]
    for p in products[:2]:
        p[1].data = np.full_like(p[1].data, np.nan)
    with pytest.raises(SanityError, match=r"test\.fits: 2 of 3 OTAs cannot be published \(33: only 0%"):
        _mef(products, prep4sex=True)
