"""TechData: per-cell gain and read noise of a night by photon transfer, against the simulator's truth."""

import os

import luigi
import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend import calibrate
from podisteps.simulate import detector
from workflows.techdata import TechData

NIGHT = "20131004"


def test_techdata_matches_true_gain_and_read_noise(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    task = TechData(night=NIGHT, filter="odi_r")
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    layout = instrument.layout("podi")
    gain_err, rn_err = [], []
    with fits.open(task.output().path) as hdul:
        assert [h.name for h in hdul[1:]] == ["GAIN", "READNOISE", "READNOISE_E"]
        assert hdul[0].header["NBIAS"] == 3 and hdul[0].header["NFLAT"] == 3
        for ota in layout.otas:
            true_gain = detector.cell_gains(layout.serial(ota))
            noise = calibrate.read_techdata(hdul, ota)
            broken = instrument.broken_cells(layout.serial(ota), 56570.0)
            for i, cell in enumerate(instrument.CELL_IDS):
                if cell in broken:
                    assert np.isnan(noise[cell].gain)
                    continue
                gain_err.append(noise[cell].gain / true_gain[i] - 1)
                rn_err.append(noise[cell].readnoise / detector.READ_NOISE_ADU - 1)
    gain_err, rn_err = np.array(gain_err), np.array(rn_err)
    print(f"techdata vs truth over {gain_err.size} cells: gain median {np.median(gain_err):+.4f}, "
          f"rms {np.std(gain_err):.4f}; read noise median {np.median(rn_err):+.4f}, rms {np.std(rn_err):.4f}")
    assert np.isfinite(gain_err).all() and np.isfinite(rn_err).all()
    assert abs(np.median(gain_err)) < 0.02 and abs(np.median(rn_err)) < 0.02
    assert np.std(gain_err) < 0.05 and np.std(rn_err) < 0.05
    link = os.path.join(os.path.dirname(task.output().path), "techdata_dflat_odi_r_bin1.fits")
    assert os.path.realpath(link) == task.output().path


def test_techdata_needs_two_flats(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    with pytest.raises(calibrate.CalibrationError, match="0 DFLAT odi_z frame"):
        TechData(night=NIGHT, filter="odi_z").external_inputs()


def test_gain_techdata_in_detrending(small_night, podiflow_config):
    """-gain=techdata with the night's TechData: electrons, within the techdata accuracy of -gain=header."""
    from workflows.detrend import DetrendOTA, detrend_options
    from workflows.options import ReductionOptions
    from workflows.paths import night_index

    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    obsid = night_index(NIGHT).select(obstype="OBJECT")[0].obsid

    def task(**opts):
        return DetrendOTA(obsid=obsid, ota=33, options=detrend_options(ReductionOptions().replace(**opts)))

    by_header, by_techdata = task(gain="header"), task(gain="techdata", techdata="auto")
    assert isinstance(by_techdata.requires()["masters"]["techdata"], TechData)
    assert luigi.build([by_header, by_techdata], local_scheduler=True, log_level="WARNING")
    no_file = task(gain="techdata")
    assert not luigi.build([no_file], local_scheduler=True, log_level="CRITICAL")
    assert not os.path.exists(no_file.output().path)
    with fits.open(by_header.output().path) as a, fits.open(by_techdata.output().path) as b:
        assert b[1].header["GAINMTHD"] == "techdata" and b[1].header["_TECHDAT"] == "successful"
        assert a[1].header["_TECHDAT"] == "not selected"
        geo = instrument.geometry("test", 1)
        ratio = [np.nanmedian(b[1].data[geo.target_region(*c)] / a[1].data[geo.target_region(*c)])
                 for c in instrument.CELL_IDS]
    ratio = np.array(ratio)[np.isfinite(ratio)]
    assert len(ratio) >= 60 and abs(np.median(ratio) - 1) < 0.02 and np.std(ratio) < 0.05


def test_techdata_options_parse():
    from workflows.options import OptionError, parse_collectcells_args

    _, opts, _ = parse_collectcells_args(["-gain=techdata"])
    assert opts.gain == "techdata" and opts.techdata is None
    _, opts, _ = parse_collectcells_args(["-techdata"])
    assert opts.techdata == "auto"
    with pytest.raises(OptionError):
        parse_collectcells_args(["-gain=nonsense"])
