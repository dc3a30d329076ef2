"""Night masters built by the DAG and used by DetrendOTA (test-small night, test instrument)."""

import os
from pathlib import Path

import pytest

import luigi
import numpy as np
from astropy.io import fits

from podisteps import instrument
from workflows.detrend import DetrendOTA, detrend_options
from workflows.calibrations import frame_options
from workflows.masters import MasterCalibration, MasterOTA
from workflows.options import ReductionOptions
from workflows.paths import night_index

NIGHT = "20131004"


def _build(tasks):
    return luigi.build(tasks, local_scheduler=True, detailed_summary=True, log_level="WARNING")


def _true_bias_structure(serial, geo):
    """The simulator's true bias structure of one detector in the OTA frame (ADU, data sections only)."""
    from podisteps.simulate import effects

    props = effects.detector_props(serial, geo.kind, geo.binning)
    frame = np.full((geo.ota_size, geo.ota_size), np.nan, dtype=np.float32)
    for i, cell in enumerate(instrument.CELL_IDS):
        row, col = effects.bias_structure(props, geo, i)
        rows, cols = geo.target_region(*cell)
        frame[rows, cols] = (row[:, None] + col[None, :])[: geo.data_ny, : geo.data_nx]
    return frame


def _cell_medians(data, geo):
    return np.array([np.nanmedian(data[geo.target_region(cx, cy)]) for cx, cy in instrument.CELL_IDS])


def test_night_masters_and_their_use(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    opts = detrend_options(ReductionOptions())
    bias = MasterCalibration(night=NIGHT, kind="bias", options=frame_options(opts, "bias"))
    assert _build([bias]).status.name == "SUCCESS"
    with fits.open(bias.output().path) as hdul:
        names = [h.name for h in hdul]
        assert names[0] == "PRIMARY" and names[-2:] == ["FILELIST", "ASSOCIATIONS"]
        assert len(names) == 3 + 13 and all(h.header["FPPOS"] == f"xy{h.header['OTA']:02d}" for h in hdul[1:14])
        assert hdul[0].header["NCOMBINE"] == len(night_index(NIGHT).select(obstype="BIAS"))
        # the master bias is the true 2-D bias structure, within 1.2 x read noise / sqrt(N)
        serial = instrument.layout("podi").serial(33)
        truth = _true_bias_structure(serial, instrument.geometry("test", 1))
        resid = hdul["OTA33.SCI"].data - truth
        n = hdul[0].header["NCOMBINE"]
        p16, p50, p84 = np.nanpercentile(resid, [15.87, 50, 84.13])  # robust: hot pixels are not structure
        assert abs(p50) < 0.3
        assert (p84 - p16) / 2 < 1.2 * 6.5 / np.sqrt(n)
        p16, p84 = np.nanpercentile(hdul["OTA33.SCI"].data - np.nanmedian(truth), [15.87, 84.13])
        assert (p84 - p16) / 2 > 6.5 / np.sqrt(n)  # without the structure model the residual is wider
    link = os.path.join(os.path.dirname(bias.output().path), "bias_bin1.fits")
    assert os.path.realpath(link) == os.path.realpath(bias.output().path)

    sci = night_index(NIGHT).select(obstype="OBJECT", filter="odi_r")[0]
    plain = DetrendOTA(obsid=sci.obsid, ota=33, options=opts)
    full = DetrendOTA(obsid=sci.obsid, ota=33,
                      options=detrend_options(ReductionOptions().replace(masters=("bias", "dark", "flat"))))
    assert set(full.requires()["masters"]) == {"bias", "dark", "flat"}
    assert plain.task_id != full.task_id
    assert _build([plain, full]).status.name == "SUCCESS"
    geo = instrument.geometry("test", 1)
    with fits.open(plain.output().path) as a, fits.open(full.output().path) as b:
        assert b[1].header["_FLAT"] == "successful" and b[1].header["_BIAS"] == "successful"
        before = _cell_medians(a[1].data, geo)
        after = _cell_medians(b[1].data, geo)
    # the per-cell gain steps (3 % rms in the simulation) are flattened by the night's dome flat
    assert np.std(before / np.median(before)) > 0.015
    assert np.std(after / np.median(after)) < np.std(before / np.median(before)) / 3


def test_removing_one_master_ota_rebuilds_only_it(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    opts = frame_options(detrend_options(ReductionOptions()), "dflat")
    flat = MasterCalibration(night=NIGHT, kind="dflat", filter="odi_r", options=opts)
    everything = [flat, *flat.requires().values()]
    assert _build(everything).status.name == "SUCCESS"
    parts = {ota: t.output().path for ota, t in flat.requires().items()}
    stamps = {p: os.stat(p).st_mtime_ns for p in parts.values()}
    victim = parts[44]
    blob = Path(victim).read_bytes()
    os.remove(victim)
    luigi.task_register.Register.clear_instance_cache()
    flat = MasterCalibration(night=NIGHT, kind="dflat", filter="odi_r", options=opts)
    assert _build([flat, *flat.requires().values()]).status.name == "SUCCESS"
    assert Path(victim).read_bytes() == blob
    for path, stamp in stamps.items():
        if path != victim:
            assert os.stat(path).st_mtime_ns == stamp
    assert isinstance(flat.requires()[44], MasterOTA)


def test_masters_from_the_nearest_night_when_the_own_night_has_none(small_night, podiflow_config, tmp_path):
    """Calibration selection wired into DetrendOTA: the previous night's biases; none at all -> clear error."""
    from podisteps.simulate import simulate_night

    from workflows.saturation import ExposureError

    spec = {"night": {"name": "bias-only", "start": "2013-10-04T01:30:00", "instrument": "test", "binning": 1,
                      "seed": 3, "star_density": 10.0},
            "field": [{"name": "F", "ra": "22:15:30.0", "dec": "+15:30:00"}],
            "sequence": [{"type": "bias", "count": 3}]}
    simulate_night(spec, tmp_path / "previous", seed=3)
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    raw = tmp_path / "raw"
    (raw / NIGHT).mkdir(parents=True)
    (raw / "20131003").symlink_to(tmp_path / "previous" / "raw" / "20131003", target_is_directory=True)
    for e in night_index(NIGHT).exposures:
        if e.obstype == "OBJECT":
            (raw / NIGHT / e.obsid).symlink_to(small_night / "raw" / NIGHT / e.obsid, target_is_directory=True)
    podiflow_config(raw_dir=raw, mastercals_dir=small_night / "mastercals", work_dir=tmp_path / "work2")
    sci = night_index(NIGHT).select(obstype="OBJECT")[0]

    def detrend(**opts):
        return DetrendOTA(obsid=sci.obsid, ota=33, options=detrend_options(ReductionOptions().replace(**opts)))

    master = detrend(masters="bias").requires()["masters"]["bias"]
    assert (master.night, master.kind) == ("20131003", "bias")
    podiflow_config(raw_dir=raw, mastercals_dir=small_night / "mastercals", work_dir=tmp_path / "work2",
                    calwindow=0)  # a [reduction] setting: it chooses the master, whose identity says which
    with pytest.raises(ExposureError, match=r"no bias master for night 20131004.*within 0 nights.*20131003: 1 "
                                            r"nights away"):
        detrend(masters="bias").requires()
    podiflow_config(raw_dir=raw, mastercals_dir=small_night / "mastercals", work_dir=tmp_path / "work2",
                    calwindow=3)
    with pytest.raises(ExposureError, match="no tflat/dflat master for night 20131004"):
        detrend(masters="flat").requires()
    task = detrend(masters="bias")
    assert _build([task]).status.name == "SUCCESS"
    with fits.open(task.output().path) as hdul:
        assert hdul[1].header["_BIAS"] == "successful"
        assert "20131003/cals" in " ".join(str(v) for v in hdul[0].header.values())
