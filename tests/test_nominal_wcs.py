"""No mastercals tree: the nominal WCS of the instrument model, and a first run in an empty folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps import instrument
from podisteps.astrometry import header_wcs
from podisteps.detrend import wcs
from podisteps.simulate import distortion

NIGHT = "20131004"


@pytest.mark.parametrize("layout", ["podi", "odi_5x6"])
def test_nominal_wcs_close_to_the_true_optical_model(layout):
    plane = instrument.focal_plane(layout)
    assert set(plane.centres_arcmin) == set(instrument.layout(layout).otas)
    rms = {}
    for ota, model in distortion.models(layout).items():
        truth = model.header(crval=distortion.axis_position(layout, 150.0, 30.0))
        nominal = wcs.nominal_wcs_cards(ota, plane, ra=150.0, dec=30.0)
        rms[ota] = distortion.rms_difference_mas(truth, nominal) / 1000.0
    # what the model lacks (per-OTA rotations, rounded centres) is ~2" at most: -fixwcs's search radius is 2'
    assert max(rms.values()) < 2.5, rms
    binned = wcs.nominal_wcs_cards(33, plane, ra=150.0, dec=30.0, scale=8, simple=True)
    assert binned["CTYPE1"] == "RA---TAN" and "PV1_7" not in binned
    assert binned["CD1_1"] == pytest.approx(8 * 0.1125 / 3600.0)


def test_unknown_ota_is_named():
    with pytest.raises(ValueError, match="OTA 11 is not part of the podi focal plane"):
        instrument.focal_plane("podi").centre_arcmin(11)


def test_empty_folder_no_config_no_mastercals(small_night, tmp_path):
    """A user's first run: one exposure copied into an empty folder, no luigi.cfg, no mastercals."""
    exposures = sorted((small_night / "raw" / NIGHT).iterdir())
    sci = next(d for d in exposures
               if json.loads((small_night / "truth" / NIGHT / d.name / "exposure.json").read_text())["obstype"]
               == "OBJECT")
    folder = tmp_path / "first-run"
    shutil.copytree(sci, folder / sci.name)
    refcat = small_night / "refcat" / "refcat.fits"
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(tmp_path / "no-such.cfg")}
    run = subprocess.run([str(Path(sys.executable).parent / "podi_collectcells"), sci.name, "out.fits", "-noqaplots",
                          "-fixwcs", f"-wcscatalog={refcat}"], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    for step in ("crosstalk", "wcs"):  # one warning line per fallback
        assert sum(f"no {step} file in {folder / 'mastercals' / step / 'podi'}" in line
                   for line in console.splitlines()) == 1, console
    stars = Table.read(small_night / "truth" / NIGHT / sci.name / "stars.fits")
    with fits.open(folder / "out.fits") as hdul:
        primary = hdul[0].header
        assert primary["WCSCAL"] is True
        assert primary["_WCSDIST"] == "missing data" and primary["_XTALK"] == "missing data"
        otas = [int(h.name[3:5]) for h in hdul if h.name.startswith("OTA") and h.name.endswith(".SCI")]
        assert sorted(otas) == sorted(instrument.layout("podi").otas)
        errors = {}
        for ota in otas:
            header = hdul[f"OTA{ota:02d}.SCI"].header
            assert header["WCSNOMIN"] is True
            on = stars[stars["ota"] == ota]
            x, y = header_wcs(header).all_world2pix(np.asarray(on["ra"]), np.asarray(on["dec"]), 0)
            errors[ota] = float(np.median(np.hypot(x - on["x"], y - on["y"]))) * 0.9  # arcsec (0.9"/px)
    assert max(errors.values()) < 0.3, errors  # measured: 0.03-0.12"


@pytest.mark.fullsize
@pytest.mark.parametrize("layout", ["podi"])  # odi_5x6 passes too (max 0.14"), at twice the time
def test_fullsize_fixwcs_from_the_nominal_wcs(layout, tmp_path, podiflow_config):
    """Full-size exposure, no mastercals tree: -fixwcs from the nominal WCS, every OTA against the truth."""
    import tomllib

    import luigi

    from podisteps.simulate import load_night, simulate_night
    from workflows.astrometry import FixWCS
    from workflows.base import options_param
    from workflows.options import ReductionOptions
    from workflows.paths import night_of

    spec = tomllib.loads((instrument.configs_dir() / "nights" / "demo.toml").read_text())
    if layout == "odi_5x6":
        spec["night"]["start"] = "2016-10-05T01:30:00"
    exposure = [e for e in load_night(spec).exposures if e.obstype == "OBJECT"][1]
    simulate_night(spec, tmp_path / "sim", only=[exposure.dirname])
    podiflow_config(raw_dir=tmp_path / "sim" / "raw", mastercals_dir=tmp_path / "no-mastercals")
    luigi.configuration.get_config().set("podiflow", "refcat", str(tmp_path / "sim" / "refcat" / "refcat.fits"))
    task = FixWCS(obsid=exposure.dirname, options=options_param(ReductionOptions().replace(fixwcs=True),
                                                                ["FixWCS", "OTACatalog", "DetrendOTA"]))
    assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    stars = Table.read(tmp_path / "sim" / "truth" / night_of(exposure.dirname) / exposure.dirname / "stars.fits")
    errors = {}
    with fits.open(task.output().path) as hdul:
        assert hdul[0].header["WCSCAL"]
        for ota in exposure.otas:
            on = stars[(stars["ota"] == ota) & (stars["flux_adu"] > 3000)]
            x, y = header_wcs(hdul[f"OTA{ota:02d}.WCS"].header).all_world2pix(np.asarray(on["ra"]),
                                                                             np.asarray(on["dec"]), 0)
            errors[ota] = float(np.median(np.hypot(x - on["x"], y - on["y"]))) * 0.1125
    assert max(errors.values()) < 0.3, errors  # measured: 0.03-0.16" (pODI), 0.02-0.14" (5x6)
