"""Twilight flats: simulated as TFLAT frames, preferred by the night masters over dome flats."""

import numpy as np
from astropy.io import fits

from podisteps.io.nightindex import scan_night
from podisteps.simulate import simulate_night
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions

SPEC = {
    "night": {"name": "twilight", "start": "2013-10-05T01:30:00", "instrument": "test", "seed": 11},
    "field": [{"name": "F", "ra": "22:15:30.0", "dec": "+15:30:00"}],
    "sequence": [
        {"type": "dflat", "filter": "odi_r", "count": 2},
        {"type": "tflat", "filter": "odi_r", "count": 2},
        {"type": "object", "field": "F", "filter": "odi_r", "count": 1, "exptime": 60.0},
    ],
}


def test_twilight_flats_simulated_and_preferred(tmp_path, podiflow_config):
    simulate_night(SPEC, tmp_path / "sim")
    index = scan_night(tmp_path / "sim" / "raw" / "20131004")
    tflats = [e for e in index.exposures if e.obstype == "TFLAT"]
    assert len(tflats) == 2 and all(e.exptime == 10.0 for e in tflats)
    raw = fits.getdata(next((tmp_path / "sim" / "raw" / "20131004" / tflats[0].obsid).glob("*.33.fits")), "xy34")
    level = np.median(raw[:, :60]) - np.median(raw[:, 63:])
    assert 15000 < level < 30000  # a well-exposed flat, without stars or a dome-lamp fall-off
    podiflow_config(raw_dir=tmp_path / "sim" / "raw", mastercals_dir=tmp_path / "sim" / "mastercals")
    sci = next(e for e in index.exposures if e.obstype == "OBJECT")
    task = DetrendOTA(obsid=sci.obsid, ota=33,
                      options=detrend_options(ReductionOptions().replace(masters=("flat",))))
    assert task.requires()["masters"]["flat"].kind == "tflat"
