"""Calibrations as QuickReduce users give them: -cals with a bias and a flat only, and -<step>=no."""

import json
import shutil

import luigi
import numpy as np
import pytest
from astropy.io import fits

from podisteps.detrend import calibrate
from podisteps.masters import mastermef
from workflows.calibrations import resolve_calibrations
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import OPTIONS, parse_collectcells_args
from workflows.paths import night_index

NIGHT = "20131004"
OTA = 33


def _write_master(path, value, *, obstype, filtername=None):
    frames = {ota: np.full((512, 512), value, np.float32) for ota in (OTA, 34)}
    primary = {"OBSTYPE": obstype, "BINNING": 1, **({"FILTER": filtername, "GAIN": 1.3} if filtername else {})}
    mastermef.master_hdulist(frames, filelist=["synthetic"], primary=primary).writeto(path)


@pytest.fixture()
def cals(tmp_path):
    """A QuickReduce calibration folder with a master bias (3 ADU) and an odi_r dome flat (2), no dark."""
    folder = tmp_path / "cals"
    folder.mkdir()
    _write_master(folder / calibrate.bias_filename(1), 3.0, obstype="BIAS")
    _write_master(folder / calibrate.flat_filename("dflat", "odi_r", 1), 2.0, obstype="DFLAT", filtername="odi_r")
    return folder


def _science(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw")
    return next(e for e in night_index(NIGHT).select(obstype="OBJECT") if e.filter == "odi_r")


def _options(*flags):
    return parse_collectcells_args(["in", "out", *flags])[1]


def test_cals_without_dark_resolves_bias_and_flat(small_night, podiflow_config, cals, caplog):
    record = _science(small_night, podiflow_config)
    got = resolve_calibrations(record, _options(f"-cals={cals}"))
    assert got.bias == cals / "bias_bin1.fits" and got.flat == cals / "dflat_odi_r_bin1.fits"
    assert got.dark is None and "dark" in got.missing
    assert any(f"no dark_yes_bin1.fits in {cals} (-cals): dark not applied" in r.getMessage() for r in caplog.records)
    off = resolve_calibrations(record, _options(f"-cals={cals}", "-dark=no", "-flat=no"))
    assert off.bias is not None and off.dark is None and off.flat is None and not {"dark", "flat"} & set(off.missing)
    with pytest.raises(calibrate.CalibrationError, match=r"-dark: no dark_yes_bin1.fits in .*cals"):
        resolve_calibrations(record, _options(f"-cals={cals}", "-dark"))  # asked for explicitly: an error


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind == "path"], ids=lambda o: o.name)
def test_no_switches_every_path_option_off(option):
    value = getattr(_options(f"{option.cli_flag}=no"), option.name)
    assert value is False and option.parse(option.format(value)) is False  # survives the task parameter
    assert option.format(option.default) == ""  # not given stays distinct from =no


def test_detrend_with_bias_and_flat_only(small_night, podiflow_config, cals):
    record = _science(small_night, podiflow_config)
    plain, with_cals, dark_off = (
        DetrendOTA(obsid=record.obsid, ota=OTA, options=detrend_options(_options(*flags)))
        for flags in ((), (f"-cals={cals}",), (f"-cals={cals}", "-dark=no", "-bias=no")))
    assert luigi.build([plain, with_cals, dark_off], local_scheduler=True, log_level="WARNING")
    with fits.open(plain.output().path) as a, fits.open(with_cals.output().path) as b, \
            fits.open(dark_off.output().path) as c:
        assert (b[1].header["_BIAS"], b[1].header["_DARK"], b[1].header["_FLAT"]) == \
            ("successful", "missing data", "successful")
        assert (c[1].header["_BIAS"], c[1].header["_DARK"], c[1].header["_FLAT"]) == \
            ("not selected", "not selected", "successful")
        good = np.isfinite(a[1].data) & np.isfinite(b[1].data)
        np.testing.assert_allclose(b[1].data[good], (a[1].data[good] - 3.0) / 2.0, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(c[1].data[good], a[1].data[good] / 2.0, rtol=1e-5, atol=1e-3)


def test_masters_without_darks_write_quickreduce_mefs_once(small_night, podiflow_config, tmp_path):
    """-masters=bias,flat on a night without darks; the QuickReduce-format MEFs come from the same per-OTA
    masters (each calibration frame detrended once) and work as -cals."""
    raw = tmp_path / "raw" / NIGHT
    for exposure in (small_night / "raw" / NIGHT).iterdir():
        truth = json.loads((small_night / "truth" / NIGHT / exposure.name / "exposure.json").read_text())
        if truth["obstype"] != "DARK":
            shutil.copytree(exposure, raw / exposure.name)
    podiflow_config(raw_dir=tmp_path / "raw", keepcalframes="true")
    record = next(e for e in night_index(NIGHT).select(obstype="OBJECT") if e.filter == "odi_r")
    masters = DetrendOTA(obsid=record.obsid, ota=OTA, options=detrend_options(_options("-masters=bias,flat")))
    assert luigi.build([masters], local_scheduler=True, log_level="WARNING")
    cals = tmp_path / "work" / NIGHT / "cals"
    mefs = [cals / "bias_bin1.fits", cals / "dflat_odi_r_bin1.fits"]
    assert all(p.is_symlink() and p.resolve().is_file() for p in mefs) and not (cals / "dark_yes_bin1.fits").exists()
    layout_otas = set(night_index(NIGHT).select(obstype="BIAS")[0].otas)
    made = {obstype: p.resolve().stat().st_mtime_ns for obstype, p in zip(("BIAS", "DFLAT"), mefs)}
    for path in mefs:
        with fits.open(path) as hdul:
            assert {h.header["FPPOS"] for h in hdul[1:] if "FPPOS" in h.header} == {f"xy{o:02d}" for o in layout_otas}
            assert hdul[0].header["NCOMBINE"] == 3
    calframes = [e for e in night_index(NIGHT).exposures
                 if e.obstype == "BIAS" or (e.obstype == "DFLAT" and e.filter == "odi_r")]
    for frame in calframes:  # detrended once, before the MEFs were assembled
        checkpoints = list((tmp_path / "work" / NIGHT / frame.obsid / "detrend").glob(f"*.{OTA:02d}.detrend.*.fits"))
        assert len(checkpoints) == 1 and checkpoints[0].stat().st_mtime_ns <= made[frame.obstype], frame.obsid
        if frame.obstype == "DFLAT":
            with fits.open(checkpoints[0]) as hdul:
                assert (hdul[1].header["_BIAS"], hdul[1].header["_DARK"]) == ("successful", "missing data")
    given = DetrendOTA(obsid=record.obsid, ota=OTA, options=detrend_options(_options(f"-cals={cals}", "-dark=no")))
    assert luigi.build([given], local_scheduler=True, log_level="WARNING")
    with fits.open(masters.output().path) as a, fits.open(given.output().path) as b:
        assert (a[1].header["_BIAS"], a[1].header["_DARK"], a[1].header["_FLAT"]) == \
            ("successful", "not selected", "successful")
        np.testing.assert_allclose(b[1].data, a[1].data, rtol=1e-6, equal_nan=True)
