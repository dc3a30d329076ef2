"""FixWCS on one full-size pODI exposure of the demo night, against the simulator's true WCS."""

import json

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import header_wcs
from podisteps.simulate import simulate_night
from workflows.astrometry import FixWCS
from workflows.base import options_param
from workflows.options import ReductionOptions

from .conftest import ROOT

pytestmark = pytest.mark.fullsize

OBSID = "o20131005T015134.0"  # the second odi_r exposure of the demo night


def test_fullsize_pointing_and_every_ota(tmp_path, podiflow_config):
    simulate_night(ROOT / "configs" / "nights" / "demo.toml", tmp_path / "sim", only=[OBSID])
    podiflow_config(raw_dir=tmp_path / "sim" / "raw", mastercals_dir=tmp_path / "sim" / "mastercals")
    luigi.configuration.get_config().set("podiflow", "refcat", str(tmp_path / "sim" / "refcat" / "refcat.fits"))
    task = FixWCS(obsid=OBSID, options=options_param(ReductionOptions().replace(fixwcs=True),
                                                     ["FixWCS", "OTACatalog", "DetrendOTA"]))
    assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    truth_dir = tmp_path / "sim" / "truth" / "20131004" / OBSID
    truth = json.loads((truth_dir / "exposure.json").read_text())
    stars = Table.read(truth_dir / "stars.fits")
    with fits.open(task.output().path) as hdul:
        hdr = hdul[0].header
        assert hdr["WCSCAL"]
        err = truth["pointing"]["pointing_error_arcsec"]
        assert abs(hdr["WCS1_DRA"] - err[0]) < 0.5 and abs(hdr["WCS1_DDE"] - err[1]) < 0.5
        measured = []
        for ota in (33, 34, 44, 43, 42, 32, 22, 23, 24):  # the science array; outliers may be sparse
            solved = header_wcs(hdul[f"OTA{ota:02d}.WCS"].header)
            on = stars[(stars["ota"] == ota) & (stars["flux_adu"] > 3000)]  # bright: S/N >> 20
            x, y = solved.all_world2pix(np.asarray(on["ra"]), np.asarray(on["dec"]), 0)
            d = np.hypot(x - on["x"], y - on["y"]) * 0.1125  # arcsec
            measured.append(float(np.median(d)))
        assert max(measured) <= 0.05, measured
        assert hdr["WCS_RMS"] < 1.5 * 0.05 + 0.05  # consistent with the measured error and the refcat's
