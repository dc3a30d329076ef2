"""FixWCS on one full-size exposure (pODI and ODI 5x6), against the simulator's true WCS."""

import json
import tomllib

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import header_wcs
from podisteps.instrument.packagedata import configs_dir
from podisteps.simulate import load_night, simulate_night
from workflows.astrometry import FixWCS
from workflows.base import options_param
from workflows.options import ReductionOptions
from workflows.paths import night_of

pytestmark = pytest.mark.fullsize

#: Full-size pixel scale, arcsec.
SCALE = 0.1125
#: OTAs with fewer bright stars than this are not judged (the canned model's own error rules there).
MIN_STARS = 8


def _spec(layout: str) -> dict:
    """The demo night's second odi_r exposure (after the saturating star), in 2013 (pODI) or 2016 (5x6)."""
    spec = tomllib.loads((configs_dir() / "nights" / "demo.toml").read_text())
    if layout == "odi_5x6":
        spec["night"]["start"] = "2016-10-05T01:30:00"
    return spec


@pytest.mark.parametrize("layout", ["podi", "odi_5x6"])
def test_fullsize_pointing_and_every_ota(layout, tmp_path, podiflow_config):
    spec = _spec(layout)
    exposure = [e for e in load_night(spec).exposures if e.obstype == "OBJECT"][1]
    assert exposure.layout == layout
    obsid = exposure.dirname
    simulate_night(spec, tmp_path / "sim", only=[obsid])
    podiflow_config(raw_dir=tmp_path / "sim" / "raw", mastercals_dir=tmp_path / "sim" / "mastercals")
    luigi.configuration.get_config().set("podiflow", "refcat", str(tmp_path / "sim" / "refcat" / "refcat.fits"))
    task = FixWCS(obsid=obsid, options=options_param(ReductionOptions().replace(fixwcs=True),
                                                     ["FixWCS", "OTACatalog", "DetrendOTA"]))
    assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    truth_dir = tmp_path / "sim" / "truth" / night_of(obsid) / obsid
    truth = json.loads((truth_dir / "exposure.json").read_text())
    stars = Table.read(truth_dir / "stars.fits")
    with fits.open(task.output().path) as hdul:
        hdr = hdul[0].header
        assert hdr["WCSCAL"]
        err = truth["pointing"]["pointing_error_arcsec"]
        assert abs(hdr["WCS1_DRA"] - err[0]) < 0.5 and abs(hdr["WCS1_DDE"] - err[1]) < 0.5
        measured = {}
        for ota in exposure.otas:
            on = stars[(stars["ota"] == ota) & (stars["flux_adu"] > 3000)]  # bright: S/N >> 20
            if len(on) < MIN_STARS:
                continue
            solved = header_wcs(hdul[f"OTA{ota:02d}.WCS"].header)
            x, y = solved.all_world2pix(np.asarray(on["ra"]), np.asarray(on["dec"]), 0)
            measured[ota] = float(np.median(np.hypot(x - on["x"], y - on["y"]))) * SCALE
    print(f"{layout}: median error per OTA (arcsec) {measured}; WCS_RMS {hdr['WCS_RMS']:.3f}")
    assert len(measured) >= len(exposure.otas) - 4, measured  # (a few outer OTAs may be sparse)
    assert max(measured.values()) <= 0.05, measured
    assert hdr["WCS_RMS"] < 1.5 * 0.05 + 0.05  # consistent with the measured error and the refcat's
