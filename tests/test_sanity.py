"""podisteps.sanity: the checks a product or an input must pass, each failing with the file and the reason."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps import sanity


def _header(obsid="20131005T030000.0", mjd=56570.125, filt="odi_r", exptime=30.0):
    return fits.Header({"OBSID": obsid, "MJD-OBS": mjd, "FILTER": filt, "EXPTIME": exptime})


def test_exposure_consistency_names_the_stray_file():
    headers = {f"o.{ota}.fits": _header() for ota in (33, 34, 43, 44)}
    assert sanity.exposure_consistency(headers, obsid="o20131005T030000.0") == {}
    headers["o.44.fits"] = _header(obsid="20131005T030101.0", mjd=56570.1257)
    bad = sanity.exposure_consistency(headers, obsid="o20131005T030000.0")
    assert list(bad) == ["o.44.fits"]
    assert bad["o.44.fits"].startswith("o.44.fits: OBSID = '20131005T030101.0', MJD-OBS = 56570.1257 differs")
    # without the exposure's name the majority decides: the one file with another FILTER is named
    headers = {f"o.{ota}.fits": _header(filt="odi_i" if ota == 34 else "odi_r") for ota in (33, 34, 43)}
    assert list(sanity.exposure_consistency(headers)) == ["o.34.fits"]
    assert "EXPTIME" in sanity.exposure_consistency({"a": _header(), "b": _header(exptime=31.0),
                                                     "c": _header()})["b"]


def test_known_filter_only_where_it_matters():
    sanity.check_known_filter("f.fits", "OBJECT", "odi_g")
    sanity.check_known_filter("f.fits", "BIAS", "anything")  # a bias names whatever is in the beam
    with pytest.raises(sanity.SanityError, match=r"f\.fits: FILTER = 'odi_x' is not a known ODI filter"):
        sanity.check_known_filter("f.fits", "DFLAT", "odi_x")


@pytest.mark.parametrize("kind, data, reason", [
    ("flat", np.zeros((40, 40)), r"flat median 0 is outside the plausible range \[0\.05, 20\]"),
    ("flat", np.full((40, 40), np.nan), r"only 0% of the flat pixels are finite"),
    ("bias", np.full((40, 40), np.nan), r"only 0% of the bias pixels are finite"),
    ("bias", np.full((40, 40), -5000.0), r"bias median -5000 is outside"),
    ("dark", np.full((40, 40), 1e6), r"dark median 1e\+06 is outside"),
])
def test_calibration_checks_fail_with_the_reason(kind, data, reason):
    with pytest.raises(sanity.SanityError, match=rf"^m\.fits \[xy33\]: {reason}"):
        sanity.check_calibration("m.fits [xy33]", kind, data)


def test_calibration_checks_pass_plausible_masters():
    rng = np.random.default_rng(1)
    flat = rng.normal(1.0, 0.02, (40, 40))
    flat[:, :12] = np.nan  # gaps and broken cells: 30% undefined is fine
    assert sanity.check_calibration("f", "flat", flat) == pytest.approx(1.0, abs=0.01)
    assert sanity.check_calibration("b", "bias", rng.normal(0.5, 3.0, (40, 40))) == pytest.approx(0.5, abs=0.5)
    assert sanity.check_calibration("d", "dark", np.zeros((40, 40))) == 0.0  # no dark current is plausible


def test_product_check():
    good = np.ones((30, 30))
    empty = np.full((30, 30), np.nan)
    sanity.check_product("p.fits", {33: good, 34: good, 44: empty}, {"EXPTIME": 30.0, "SKYLEVEL": 100.0})
    with pytest.raises(sanity.SanityError, match=r"p\.fits: 2 of 3 OTAs are mostly NaN \(34, 44\): not published"):
        sanity.check_product("p.fits", {33: good, 34: empty, 44: empty}, {})
    with pytest.raises(sanity.SanityError, match=r"p\.fits: SKYLEVEL = nan not finite"):
        sanity.check_product("p.fits", {33: good}, {"EXPTIME": 30.0, "SKYLEVEL": float("nan")})


def test_bad_cells():
    cells = {(0, 0): np.full((5, 5), 1000.0, np.float32), (0, 1): np.full((5, 5), np.nan, np.float32),
             (0, 2): np.full((5, 5), 70000.0, np.float32), (0, 3): np.full((5, 5), -3.0, np.float32),
             (0, 4): np.arange(25, dtype=np.uint16).reshape(5, 5)}
    assert sanity.bad_cells(cells) == {(0, 1): "no finite value", (0, 2): "values outside the ADC range 0..65535",
                                       (0, 3): "values outside the ADC range 0..65535"}
