"""Bias, dark, flat, illumination, file search, mismatch checks and gain."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend import calibrate as cal
from podisteps.maskbits import MASK_BITS

GEO = instrument.geometry("test", 1)
N = GEO.ota_size


def _master(path, frames, *, primary=None, ext_cards=None):
    """Write a master MEF whose EXTNAMEs deliberately disagree with FPPOS."""
    hdus = [fits.PrimaryHDU(header=fits.Header(primary or {}))]
    for i, (fppos, data) in enumerate(frames.items()):
        hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), name=f"OTA{90 + i}.SCI")
        hdu.header["FPPOS"] = fppos
        hdu.header.update(ext_cards or {})
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def test_fppos_matching_ignores_extname_and_order(tmp_path):
    path = _master(tmp_path / "bias_bin1.fits", {"xy44": np.full((N, N), 4.0), "xy33": np.full((N, N), 3.0)})
    with fits.open(path) as hdul:
        assert cal.master_frame(hdul, "xy33", GEO)[0, 0] == 3.0
        assert cal.master_frame(hdul, " XY44 ", GEO)[0, 0] == 4.0
        with pytest.raises(cal.CalibrationError, match=r"bias_bin1\.fits.*xy22"):
            cal.master_frame(hdul, "xy22", GEO)


def test_wrong_binning_and_duplicate_fppos_raise(tmp_path):
    path = _master(tmp_path / "bias_bin2.fits", {"xy33": np.zeros((N // 2, N // 2))})
    with fits.open(path) as hdul, pytest.raises(cal.CalibrationError, match=r"bias_bin2\.fits.*wrong binning"):
        cal.master_frame(hdul, "xy33", GEO)
    path = _master(tmp_path / "dup.fits", {"xy33": np.zeros((N, N))})
    with fits.open(path) as hdul:
        hdul.append(hdul[1].copy())
        with pytest.raises(cal.CalibrationError, match="appears in extensions"):
            cal.master_frame(hdul, "xy33", GEO)


def test_wrong_filter_flat_raises_with_file_name(tmp_path):
    path = _master(tmp_path / "dflat_odi_g_bin1.fits", {"xy33": np.ones((N, N))}, primary={"FILTER": "odi_g"})
    with fits.open(path) as hdul:
        with pytest.raises(cal.CalibrationError, match=r"dflat_odi_g_bin1\.fits.*'odi_g'.*'odi_r'"):
            cal.master_frame(hdul, "xy33", GEO, filtername="odi_r")
        assert cal.master_frame(hdul, "xy33", GEO, filtername="odi_g").shape == (N, N)


def test_gain_method_consistency(tmp_path):
    path = _master(tmp_path / "bias_bin1.fits", {"xy33": np.zeros((N, N))}, ext_cards={"GAINMTHD": "relative"})
    with fits.open(path) as hdul:
        assert cal.master_frame(hdul, "xy33", GEO, gain_method="relative") is not None
        with pytest.raises(cal.CalibrationError, match="GAINMTHD = 'relative'.*'none'"):
            cal.master_frame(hdul, "xy33", GEO, gain_method=None)


def test_keepcells_nan_fill(tmp_path):
    flat = np.ones((N, N))
    flat[:10] = np.nan
    path = _master(tmp_path / "flat_odi_r_bin1.fits", {"xy33": flat})
    with fits.open(path) as hdul:
        assert np.isnan(cal.master_frame(hdul, "xy33", GEO)).sum() == 10 * N
        filled = cal.master_frame(hdul, "xy33", GEO, nan_fill=cal.KEEPCELLS_NAN_FILL["flat"])
        shared = cal.master_frame(hdul, "xy33", GEO, copy=False)   # the file's pixels, not a copy
        assert shared is hdul[1].data
        np.testing.assert_array_equal(shared, cal.master_frame(hdul, "xy33", GEO))
        assert cal.master_frame(hdul, "xy33", GEO, copy=False, nan_fill=0.5) is not hdul[1].data
    assert np.all(filled == 1.0)


def test_bias_dark_flat_arithmetic():
    rng = np.random.default_rng(5)
    truth = rng.uniform(100, 1000, (N, N)).astype(np.float32)
    bias = rng.normal(0, 3, (N, N)).astype(np.float32)
    dark = np.full((N, N), 0.02, dtype=np.float32)  # ADU/s
    flat = rng.uniform(0.8, 1.2, (N, N)).astype(np.float32)
    flat[5, 7] = 0.05
    flat[6, 7] = np.nan
    science = {"EXPTIME": 100.0, "EXPMEAS": 101.0}
    raw = truth * flat + bias + dark * 100.0
    scale = cal.dark_scale(fits.Header(science), fits.Header({"EXPMEAS": 1.0, "EXPTIME": 5.0}))
    assert scale == 100.0
    assert cal.dark_scale(fits.Header(science), fits.Header({"EXPTIME": 2.0}), exptime_key="EXPMEAS") == 50.5
    assert cal.dark_scale(fits.Header(science), fits.Header()) == 100.0
    sci = cal.subtract_dark(cal.subtract_bias(raw, bias), dark, scale)
    mask = np.zeros((N, N), dtype=np.uint16)
    out, newmask = cal.divide_flat(sci, mask, flat)
    good = np.isfinite(out)
    assert np.allclose(out[good], truth[good], rtol=1e-5)
    assert np.isnan(out[5, 7]) and np.isnan(out[6, 7]) and good.sum() == N * N - 2
    assert newmask[5, 7] == MASK_BITS["LOWFLAT"] and mask[5, 7] == 0
    illum = np.full((N, N), 2.0, dtype=np.float32)
    illum[0, 0] = 0
    corrected = cal.divide_illumination(out, illum)
    assert corrected[1, 1] == pytest.approx(out[1, 1] / 2) and np.isnan(corrected[0, 0])


def test_flat_search_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert cal.find_flat([a, b], "odi_r", 1) is None
    (b / "flat_odi_r_bin1.fits").write_bytes(b"")
    assert cal.find_flat([a, b], "odi_r", 1) == b / "flat_odi_r_bin1.fits"
    (a / "dflat_odi_r_bin1.fits").write_bytes(b"")
    assert cal.find_flat([a, b], "odi_r", 1) == a / "dflat_odi_r_bin1.fits"
    (b / "tflat_odi_r_bin1.fits").write_bytes(b"")  # type before folder
    assert cal.find_flat([a, b], "odi_r", 1) == b / "tflat_odi_r_bin1.fits"
    assert cal.find_flat([a, b], "odi_r", 2) is None
    assert cal.find_in_folders([a, b], cal.bias_filename(1)) is None
    assert (cal.dark_filename(2), cal.illumination_filename("odi_g", 1), cal.techdata_filename("dflat", "odi_g", 1)) \
        == ("dark_yes_bin2.fits", "illumination__odi_g_bin1.fits", "techdata_dflat_odi_g_bin1.fits")


def test_techdata_lookup(tmp_path):
    gain = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    path = tmp_path / "techdata.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(gain, name="GAIN"), fits.ImageHDU(gain + 0.5, name="READNOISE"),
                  fits.ImageHDU(gain + 0.25, name="READNOISE_E")]).writeto(path)
    with fits.open(path) as hdul:
        noise = cal.read_techdata(hdul, 34)
    # OTA (3, 4), cell (2, 6): [4*8 + (7-6), 3*8 + 2] = [33, 26]
    assert noise[(2, 6)] == cal.CellNoise(33 * 64 + 26, 33 * 64 + 26.5, 33 * 64 + 26.25)
    bad = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(gain[:8], name="GAIN")])
    with pytest.raises(cal.CalibrationError, match="GAIN is not a 64x64"):
        cal.read_techdata(bad, 33, source="td.fits")


def test_gain_methods_and_summary():
    headers = {c: fits.Header({"GAIN": 1.5}) for c in instrument.CELL_IDS}
    headers[(0, 0)] = fits.Header()
    noise = cal.cell_noise_from_headers(headers)
    assert noise[(0, 0)].gain == 1.3 and noise[(1, 1)] == cal.CellNoise(1.5, 6.5, 9.0)

    relgain = {c: 2.0 for c in instrument.CELL_IDS}
    relgain[(4, 4)] = float("nan")  # cell missing from the non-linearity table
    factors, after = cal.gain_factors("relative", noise, relative_gain=relgain)
    assert factors[(1, 1)] == 2.0 and after[(1, 1)] == cal.CellNoise(0.75, 13.0, 9.0)
    sci = np.ones((N, N), dtype=np.float32)
    mask = np.zeros((N, N), dtype=np.uint16)
    out, newmask = cal.apply_cell_factors(sci, mask, GEO, factors)
    rows, cols = GEO.target_region(4, 4)
    assert np.all(np.isnan(out[rows, cols])) and np.all(newmask[rows, cols] == MASK_BITS["BADCELL"])
    rows, cols = GEO.target_region(1, 1)
    assert np.all(out[rows, cols] == 2.0) and sci[rows, cols][0, 0] == 1.0
    assert out[0, GEO.data_nx] == 1.0  # gaps are not part of any cell

    factors, after = cal.gain_factors("header", noise)
    assert factors[(1, 1)] == 1.5 and after[(1, 1)] == cal.CellNoise(1.0, 9.0, 9.0)

    used = [c for c in instrument.CELL_IDS if c != (0, 0)]
    cards = cal.gain_summary(noise, used, method="header")
    assert cards == {"GAINMTHD": "raw_header", "GAINX": 1.5, "NGAIN": 63, "RDNOISE": 6.5, "NRDNOISE": 63,
                     "RDNOISEE": 9.0, "NRDNOSEE": 63, "GAIN": 1.5}
    assert cal.gain_summary(noise, used, flat_gain_value=1.42)["GAIN"] == 1.42
    empty = cal.gain_summary(noise, [])
    assert (empty["GAINX"], empty["RDNOISE"], empty["RDNOISEE"], empty["NGAIN"]) == (1.3, 6.0, 8.5, 0)


@pytest.mark.parametrize("value, available, expected", [
    (None, True, None), ("no", True, None), (True, True, "relative"), (True, False, "header"),
    ("auto", False, "header"), ("techdata", False, "techdata"), ("header", True, "header")])
def test_choose_gain_method(value, available, expected):
    assert cal.choose_gain_method(value, relative_gains_available=available) == expected


def test_choose_gain_method_errors():
    with pytest.raises(ValueError, match="RELATIVE_GAIN"):
        cal.choose_gain_method("relative", relative_gains_available=False)
    with pytest.raises(ValueError, match="expected relative"):
        cal.choose_gain_method("bogus", relative_gains_available=True)


def test_flat_gain_and_pupilghost_cards():
    hdul = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"GAIN": 1.42}))])
    assert cal.flat_gain(hdul) == 1.42
    assert cal.flat_gain(fits.HDUList([fits.PrimaryHDU(header=fits.Header({"GAIN": -1}))])) is None
    assert cal.flat_pupilghost_cards(fits.Header()) == {"PGAFCTD": False}
    cards = cal.flat_pupilghost_cards(fits.Header({"PGAFCTD": True, "PGCNTR_X": 10.0, "OTHER": 1}))
    assert cards == {"PGAFCTD": True, "PGCNTR_X": 10.0}


def test_inplace_arithmetic_matches_new_arrays():
    rng = np.random.default_rng(8)
    sci = rng.uniform(100, 1000, (N, N)).astype(np.float32)
    sci[2, 3] = np.nan
    bias, dark = rng.normal(0, 3, (2, N, N)).astype(np.float32)
    flat = rng.uniform(0.8, 1.2, (N, N)).astype(np.float32)
    flat[5, 7], flat[2, 3] = 0.05, 0.01
    mask = np.zeros((N, N), dtype=np.uint16)
    expected_sci, expected_mask = cal.divide_flat(cal.subtract_dark(cal.subtract_bias(sci, bias), dark, 3.0),
                                                  mask, flat)
    work, work_mask = sci.copy(), mask.copy()
    assert cal.subtract_bias(work, bias, out=work) is work
    assert cal.subtract_dark(work, dark, 3.0, out=work) is work
    out, out_mask = cal.divide_flat(work, work_mask, flat, inplace=True)
    assert out is work and out_mask is work_mask
    np.testing.assert_array_equal(out, expected_sci)
    np.testing.assert_array_equal(out_mask, expected_mask)
    assert out_mask[5, 7] == MASK_BITS["LOWFLAT"] and out_mask[2, 3] == 0   # LOWFLAT only where sci was defined
