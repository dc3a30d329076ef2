"""The final MEF's step functions: almanac, output names, undefined pixels, soft binning, keys, associations."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from podisteps.instrument import almanac
from podisteps.io import mef
from podisteps.io.outputname import format_filename, output_path


@pytest.mark.parametrize("when, age_days, illum, sky", [
    ("2013-10-05T07:00:00", 0.27, 0.0, "dark"),      # new moon 2013-10-05 00:34 UT, 6.4 h earlier
    ("2013-10-19T06:00:00", 15.03, 1.0, "bright"),   # full moon 2013-10-18 23:38 UT (moon up at 06 UT)
])
def test_almanac_lunation(when, age_days, illum, sky):
    cards = almanac.almanac_keywords(Time(when).mjd, 30.0, 10.0)
    assert cards["LUNARAGE"][0] == pytest.approx(age_days, abs=0.3)  # mean vs true lunation
    assert cards["MOONILUM"][0] == pytest.approx(illum, abs=0.01)
    assert cards["SKYBRITE"][0] == sky


def test_almanac_sun_at_kitt_peak():
    # 2013-10-05 at Kitt Peak: sunset 18:07 MST = 01:07 UT, sunrise 06:24 MST = 13:24 UT (USNO, +-2 min)
    cards = almanac.almanac_keywords(Time("2013-10-05T07:00:00").mjd, 191.0, -4.7)
    assert cards["SUN_SET"][0] == pytest.approx(1.12, abs=0.05)
    assert cards["SUN_RISE"][0] == pytest.approx(13.40, abs=0.05)
    assert cards["SUN__ALT"][0] < -60 and cards["SUN__D"][0] < 0.1  # pointed at the Sun's position
    assert almanac.sky_brightness_class(-10.0, -5.0, 0.0) == "naut.twilight"
    assert almanac.sky_brightness_class(-30.0, 20.0, 0.3) == "grey"


#: Almanac cards of 2013-10-05T07:00 UT computed in a forked child, before and after the parent read the IERS
#: table; prints ``[[table already read in the child, cards], ...]`` for the two.
_ALMANAC_SCRIPT = """
import json, multiprocessing
from astropy.utils import iers
from podisteps.instrument import almanac
def cards(queue):
    queue.put([iers.IERS_Auto.iers_table is not None, almanac.almanac_keywords(56570.291666, 191.0, -4.7)])
def in_child():
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=cards, args=(queue,))
    child.start()
    result = queue.get()
    child.join()
    return result
fresh = in_child()
almanac.load_earth_rotation()
print(json.dumps([fresh, in_child()]))
"""


def test_forked_almanac_inherits_the_iers_table_and_gives_the_same_cards():
    out = subprocess.run([sys.executable, "-c", _ALMANAC_SCRIPT], check=True, capture_output=True, text=True)
    fresh, preloaded = json.loads(out.stdout)
    assert preloaded[0] and not fresh[0]
    assert preloaded[1] == fresh[1]  # bit-identical: floats survive JSON exactly
    assert fresh[1]["SUN_RISE"][0] == pytest.approx(13.40, abs=0.05)


def test_format_filename():
    hdr = fits.Header({"OBSID": "20131005T014745.1", "OBJECT": "M 31 / field", "FILTER": "odi_r",
                       "EXPTIME": 120, "PROPID": "2013B-0001"})
    name = format_filename("out/%OBJECT/%OBSID_%FILTER_%EXPTIME_%OBSSEQ_%PROPID.fits", hdr)
    assert name == "out/M_31___field/20131005T014745.1_odi_r_120.0_20131005T014745_2013B-0001.fits"


def test_output_path_suffixes(tmp_path):
    assert output_path(str(tmp_path / "a"), fpack=False) == tmp_path / "a.fits"
    assert output_path(str(tmp_path / "a.fits"), fpack=True) == tmp_path / "a.fits.fz"
    assert output_path(str(tmp_path) + "/", fpack=False) == tmp_path / "collectcells.fits"


def test_undefined_value_precedence():
    assert math.isnan(mef.undefined_value(prep4sex=False, indefval=None))
    assert mef.undefined_value(prep4sex=True, indefval=None) == -1e31
    assert mef.undefined_value(prep4sex=True, indefval=0.0) == 0.0


def test_softbin_image_mask_and_wcs():
    data = np.arange(64, dtype=np.float32).reshape(8, 8)
    data[0, 0] = np.nan
    data[2:4, 2:4] = np.nan
    binned = mef.softbin_image(data, 2)
    assert binned.shape == (4, 4) and binned.dtype == np.float32
    assert binned[0, 0] == pytest.approx(np.nanmean(data[:2, :2])) and np.isnan(binned[1, 1])
    mask = np.zeros((8, 8), np.uint16)
    mask[0, 1], mask[1, 0] = 4, 8
    assert mef.softbin_mask(mask, 2)[0, 0] == 12
    hdr = WCS(naxis=2)
    hdr.wcs.ctype, hdr.wcs.crval, hdr.wcs.crpix = ["RA---TAN", "DEC--TAN"], [30.0, 10.0], [100.3, -50.7]
    hdr.wcs.cd = [[-3e-5, 1e-6], [2e-6, 3e-5]]
    full = WCS(hdr.to_header())
    header = hdr.to_header()
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        header.remove(key, ignore_missing=True)
    header.update({"CD1_1": -3e-5, "CD1_2": 1e-6, "CD2_1": 2e-6, "CD2_2": 3e-5})
    full, binned_wcs = WCS(header), WCS(mef.softbin_header(header, 4))
    # the centre of binned pixel (i, j) (1-based) is the centre of its 4x4 block
    i, j = 7.0, 3.0
    block_centre = ((i - 0.5) * 4 + 0.5, (j - 0.5) * 4 + 0.5)
    assert np.allclose(binned_wcs.all_pix2world([[i, j]], 1), full.all_pix2world([block_centre], 1), atol=1e-10)
    table = mef.softbin_table(Table({"X": [2.5], "Y": [8.5], "FWHM_IMAGE": [4.0]}), 2)
    assert list(table[0]) == [1.5, 4.5, 2.0]


@pytest.mark.parametrize("item, expected", [
    ("REDUCER,'me'", ("REDUCER", "me")), ("nexp,3", ("NEXP", 3)), ("SEE,0.8", ("SEE", 0.8)),
    ("DONE,T", ("DONE", True)), ("NOTE,'12'", ("NOTE", "12")), ("NOTE,plain text", ("NOTE", "plain text")),
])
def test_parse_fits_key(item, expected):
    assert mef.parse_fits_key(item) == expected


@pytest.mark.parametrize("item", ["TOOLONGKEY,1", "BAD KEY,1", "NOCOMMA", ",1"])
def test_parse_fits_key_rejects(item):
    with pytest.raises(ValueError, match="KEY,value"):
        mef.parse_fits_key(item)


def test_association_table_keeps_first_of_each_file():
    hdu = mef.association_table([("raw", "/a/x.33.fits", True), ("bias", "/c/bias.fits", False),
                                 ("raw", "/a/x.33.fits", False)])
    assert list(hdu.data["correction"]) == ["raw", "bias"] and list(hdu.data["filename"]) == ["x.33.fits", "bias.fits"]
    assert list(hdu.data["applied"]) == [True, False] and hdu.name == "ASSOCIATIONS"
