"""podi_collectcells end to end on a simulated exposure (test instrument): the final MEF against truth."""

import json

import luigi
import numpy as np
import pytest
from astropy.io import fits

from workflows import cli
from workflows.paths import night_index

NIGHT = "20131004"


@pytest.fixture()
def site(small_night, tmp_path):
    """luigi.cfg [podiflow] as a user of podi_collectcells has it: mastercals and refcat, no raw tree."""
    cfg = luigi.configuration.get_config()
    saved = dict(cfg.items("podiflow"))
    cfg.set("podiflow", "mastercals_dir", str(small_night / "mastercals"))
    cfg.set("podiflow", "refcat", str(small_night / "refcat" / "refcat.fits"))
    cfg.set("podiflow", "work_dir", "")
    yield small_night
    for key, value in saved.items():
        cfg.set("podiflow", key, value)
    luigi.task_register.Register.clear_instance_cache()


def test_final_mef_against_truth(site, tmp_path, capsys):
    exposures = [d for d in sorted((site / "raw" / NIGHT).iterdir())]
    sci = next(d for d in exposures if json.loads(
        (site / "truth" / NIGHT / d.name / "exposure.json").read_text())["obstype"] == "OBJECT")
    out = tmp_path / "red" / "frame.fits"
    rc = cli.collectcells_main([str(sci / f"{sci.name}.33.fits"), str(out), "-fixwcs", "-photcalib", "-bpm",
                                "-nonlinearity", "-masters=bias,dark,flat", "-addfitskey=REDUCER,'me'"])
    assert rc == 0, capsys.readouterr().err
    truth = json.loads((site / "truth" / NIGHT / sci.name / "exposure.json").read_text())
    with fits.open(out) as hdul:
        names = [h.name for h in hdul]
        otas = [n for n in names if n.endswith(".SCI")]
        assert names[0] == "PRIMARY" and names[1:1 + len(otas)] == otas and otas[0] == "OTA33.SCI"
        assert names[1 + len(otas):] == ["CAT.WCSREF", "CAT.ODI", "WCSCAL.CAT", "CAT.PHOTREF", "CAT.PHOTCALIB",
                                         "SKYLEVEL", "ASSOCIATIONS"]
        ph = hdul[0].header
        assert ph["WCSCAL"] and ph["OBJECT"] == truth["object"] and ph["REDUCER"] == "me"
        assert ph["_NONLIN"] == "successful" and ph["_BADPXLS"] == "successful" and ph["_FLAT"] == "successful"
        # zero point of the chosen aperture against the simulator's enclosed-energy truth
        zp_true = truth["zeropoint"]["aperture_diameter_arcsec_1s"][str(int(ph["MAG0SIZE"]))]
        assert abs(ph["PHOTZP"] - zp_true) < 0.03
        assert abs(ph["SKYLEVEL"] / truth["sky"]["mean_per_ota"]["33"] - 1) < 0.05
        assert abs(ph["GAIN"] - truth["nominal_gain"]) < 0.05
        assoc = hdul["ASSOCIATIONS"].data
        steps = set(assoc["correction"])
        assert {"raw", "crosstalk", "nonlinearity", "bpm", "refcat", "bias", "dark", "flat"} <= steps
        assert sum(assoc["correction"] == "raw") == len(otas)
        data = hdul["OTA33.SCI"].data
        assert data.dtype.type is np.float32 and np.isnan(data).any() and np.isfinite(data).mean() > 0.8
    # again without -nonlinearity: a second product; -noclobber keeps the existing output
    assert cli.collectcells_main([str(sci), str(out), "-noclobber"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert night_index(NIGHT).by_obsid()[sci.name].otas


def test_rejected_and_defunct_flags(site, tmp_path, capsys):
    sci = sorted((site / "raw" / NIGHT).iterdir())[0]
    assert cli.collectcells_main([str(sci), str(tmp_path / "x.fits"), "-pupilghost"]) == 2
    assert "-pupilghost is not available yet" in capsys.readouterr().err
    assert cli.collectcells_main([str(sci), str(tmp_path / "x.fits"), "-crj=abc"]) == 2
    assert "-crj=abc" in capsys.readouterr().err
