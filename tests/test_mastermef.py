"""Master calibration MEF layout (docs/calibrations.md, 'Master files')."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend import calibrate
from podisteps.io.streamed import write_fits_streamed
from podisteps.masters.mastermef import master_filelist, master_hdulist, master_hdus, ota_extname, read_master_ota

N = 32


def _frames(otas):
    return {ota: np.full((N, N), float(ota), dtype=np.float64) for ota in otas}


def _write(tmp_path, otas, **kw):
    kw.setdefault("filelist", ["o1.fits", "o2.fits", "o3.fits"])
    hdul = master_hdulist(_frames(otas), **kw)
    path = tmp_path / calibrate.dark_filename(1)
    hdul.writeto(path)
    return path


def test_layout_and_fppos_on_every_image(tmp_path):
    otas = instrument.layout("podi").otas
    raw = ["/raw/20240101/o20240101T010203.1/o20240101T010203.1_odi_r.fits", "/raw/o2.fits"]
    path = _write(tmp_path, otas, filelist=raw,
                  primary={"OBSTYPE": "DARK", "BINNING": 1, "EXPMEAS": (1.0, "[s] normalised to ADU/s"),
                           "NCOMBINE": 99},
                  ota_headers={33: {"GAINMTHD": "none", "EXTNAME": "wrong"}},
                  associations=[("raw", raw[0]), ("bias", "/cals/bias_bin1.fits")])
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        assert names == ["PRIMARY", *[ota_extname(o) for o in otas], "FILELIST", "ASSOCIATIONS"]
        primary = hdul[0].header
        assert primary["OBSTYPE"] == "DARK" and primary["EXPMEAS"] == 1.0 and primary["NCOMBINE"] == 2
        images = [h for h in hdul if isinstance(h, fits.ImageHDU)]
        assert len(images) == len(otas)
        for ota, hdu in zip(otas, images):
            assert hdu.header["FPPOS"] == f"xy{ota:02d}" and hdu.header["OTA"] == ota
            assert hdu.header["BITPIX"] == -32 and hdu.data.shape == (N, N)
        assert hdul["OTA33.SCI"].header["GAINMTHD"] == "none"
        assert master_filelist(hdul) == raw
        assoc = hdul["ASSOCIATIONS"]
        assert [c.format for c in assoc.columns] == ["25A", "375A", "100A"]
        assert list(assoc.data["correction"]) == ["raw", "bias"]
        assert list(assoc.data["filename"]) == ["o20240101T010203.1_odi_r.fits", "bias_bin1.fits"]
        assert assoc.data["filename_full"][0] == raw[0]


def test_read_by_fppos_not_extname(tmp_path):
    path = _write(tmp_path, [33, 34, 44])
    with fits.open(path) as hdul:
        hdul["OTA33.SCI"].header["EXTNAME"] = "OTA44.SCI"        # EXTNAMEs mean nothing to the reader
        data, header = read_master_ota(hdul, 33)
        assert data.dtype == np.float32 and (data == 33.0).all() and header["FPPOS"] == "xy33"
        with pytest.raises(calibrate.CalibrationError, match="xy43"):
            read_master_ota(hdul, 43)
        # The detrending step finds the same frame.
        geometry = dataclasses.replace(instrument.geometry("test", 1), ota_size=N)
        assert (calibrate.master_frame(hdul, "xy34", geometry) == 34.0).all()


def test_header_input_and_errors(tmp_path):
    first_input = fits.Header({"SIMPLE": True, "NAXIS": 2, "FILTER": "odi_g", "EXPTIME": 30.0})
    hdul = master_hdulist(_frames([22]), filelist=["a.fits"], primary=first_input, ota_headers={22: first_input})
    assert "SIMPLE" in hdul[0].header and hdul[0].header["FILTER"] == "odi_g"
    assert hdul[1].header["EXPTIME"] == 30.0 and hdul[1].header["NAXIS"] == 2
    assert len(hdul["ASSOCIATIONS"].data) == 0
    with pytest.raises(ValueError, match="at least one"):
        master_hdulist(_frames([22]), filelist=[])
    with pytest.raises(ValueError, match="2-D"):
        master_hdulist({22: np.zeros(4)}, filelist=["a.fits"])


def test_streamed_master_is_byte_identical_and_keeps_big_endian_frames(tmp_path):
    """MasterCalibration writes the MEF one OTA at a time (frames read from big-endian FITS as they are):
    the file is byte for byte the one the whole HDUList writes."""
    rng = np.random.default_rng(7)
    frames = {ota: rng.normal(1.0, 0.1, (N, N)).astype(np.float32) for ota in (22, 33, 34)}
    kw = {"filelist": ["o1.fits", "o2.fits"], "primary": {"OBSTYPE": "DFLAT", "GAIN": (1.3, "e-/ADU")},
          "associations": [("master-ota", "/w/cals/ota/a.fits")]}
    whole = tmp_path / "whole.fits"
    hdul = master_hdulist(frames, ota_headers={33: {"GAINMTHD": "none"}}, **kw)
    hdul[0].header["PFTEST"] = "provenance"
    hdul.writeto(whole)
    big_endian = ((ota, f.astype(">f4"), {"GAINMTHD": "none"} if ota == 33 else None) for ota, f in frames.items())
    streamed = tmp_path / "streamed.fits"
    write_fits_streamed(master_hdus(big_endian, **kw), str(streamed), durable=False,
                        prepare=lambda header: header.__setitem__("PFTEST", "provenance"))
    assert streamed.read_bytes() == whole.read_bytes()
    with fits.open(streamed) as out:
        np.testing.assert_array_equal(out["OTA34.SCI"].data, frames[34])
