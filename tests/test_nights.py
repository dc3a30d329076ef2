"""Night-level reduction: ReduceNights against truth, podiflow status / invalidate after a changed input."""

import datetime
import json
import os
import shutil

import luigi
import pytest
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import header_wcs
from workflows import cli
from workflows.night import ReduceExposure, ReduceNights
from workflows.paths import night_index, out_root, work_root

NIGHT = "20131004"


def _interval(first: str, last_exclusive: str):
    parse = luigi.DateIntervalParameter().parse
    return parse(f"{first}-{last_exclusive}")


@pytest.mark.fullsize  # a whole night with astrometry and photometry: the long suite
def test_reduce_nights_every_science_mef_against_truth(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals", fixwcs="true",
                    photcalib="true")
    luigi.configuration.get_config().set("podiflow", "refcat", str(small_night / "refcat" / "refcat.fits"))
    task = ReduceNights(nights=_interval("2013-10-03", "2013-10-06"))  # 3, 4, 5 Oct: only the 4th has data
    assert task.night_names() == [NIGHT]
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert result.status.name == "SUCCESS", result.summary_text
    science = night_index(NIGHT).select(obstype="OBJECT")
    assert len(science) == 5
    for e in science:
        truth_dir = small_night / "truth" / NIGHT / e.obsid
        truth = json.loads((truth_dir / "exposure.json").read_text())
        stars = Table.read(truth_dir / "stars.fits")
        with fits.open(out_root() / NIGHT / e.obsid / f"{e.obsid}.fits") as hdul:
            ph = hdul[0].header
            assert ph["WCSCAL"] and ph["OBJECT"] == truth["object"]
            errors = []
            for ota in (33, 44, 22):
                on = stars[(stars["ota"] == ota)]
                x, y = header_wcs(hdul[f"OTA{ota:02d}.SCI"].header).all_world2pix(
                    np.asarray(on["ra"]), np.asarray(on["dec"]), 0)
                errors.append(float(np.median(np.hypot(x - on["x"], y - on["y"]))))
            assert max(errors) < 0.15, (e.obsid, errors)  # test-instrument px (0.9"/px)
            zp_true = truth["zeropoint"]["aperture_diameter_arcsec_1s"][str(int(ph["MAG0SIZE"]))]
            assert abs(ph["PHOTZP"] - zp_true) < 0.03, (e.obsid, ph["PHOTZP"], zp_true)


def _mtimes(folder):
    return {os.path.join(r, n): os.stat(os.path.join(r, n)).st_mtime_ns
            for r, _, names in os.walk(folder) for n in names if not os.path.islink(os.path.join(r, n))}


def test_status_and_invalidate_after_a_flat_replaced_in_place(small_night, podiflow_config, tmp_path, capsys):
    from workflows.calibrations import frame_options
    from workflows.masters import MasterCalibration
    from workflows.detrend import detrend_options
    from workflows.options import ReductionOptions

    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    flat_task = MasterCalibration(night=NIGHT, kind="dflat", filter="odi_r",
                                  options=frame_options(detrend_options(ReductionOptions()), "dflat"))
    assert luigi.build([flat_task], local_scheduler=True, log_level="WARNING")
    flat = tmp_path / "myflats" / "dflat_odi_r_bin1.fits"  # a user's own master flat, outside the DAG
    flat.parent.mkdir()
    shutil.copy(flat_task.output().path, flat)
    shutil.rmtree(work_root())  # start from nothing but that file
    mastercals = shutil.copytree(small_night / "mastercals", tmp_path / "mastercals")
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=mastercals, flat=str(flat),
                    work_dir=tmp_path / "work", out_dir=tmp_path / "out")
    science = night_index(NIGHT).select(obstype="OBJECT")
    r_band = [e.obsid for e in science if e.filter == "odi_r"]
    first = ReduceExposure(obsid=r_band[0])
    assert luigi.build([first, ReduceExposure(obsid=science[-1].obsid)], local_scheduler=True,
                       log_level="CRITICAL") is False  # the odi_i exposure fails: the flat is odi_r
    capsys.readouterr()
    assert cli.podiflow_main(["status", NIGHT]) == 1
    out = capsys.readouterr().out
    assert " 0 stale" in out and "failed" in out and "odi_r" in out  # the failure names the filter mismatch

    before = _mtimes(tmp_path / "work") | _mtimes(tmp_path / "out")
    for path in [flat, *(p for p in mastercals.rglob("*") if p.is_file())]:
        os.utime(path)  # touched, or copied again: the same bytes change nothing
    luigi.task_register.Register.clear_instance_cache()
    assert luigi.build([first], local_scheduler=True, log_level="CRITICAL")
    products = {p: m for p, m in (_mtimes(tmp_path / "work") | _mtimes(tmp_path / "out")).items()
                if "/.checksums/" not in p}
    assert products == {p: m for p, m in before.items() if "/.checksums/" not in p}
    with fits.open(flat) as hdul:  # the user re-makes the flat in place
        for h in hdul:
            if h.name.endswith(".SCI"):
                h.data = h.data * np.float32(1.01)
        hdul.writeto(flat, overwrite=True)
    future = datetime.datetime.now().timestamp() + 5
    os.utime(flat, (future, future))
    luigi.task_register.Register.clear_instance_cache()
    assert not ReduceExposure(obsid=r_band[0]).requires()[0].complete()  # its MEF is superseded
    downstream = (".detrend.", ".fpsamples.", ".focalplane.")  # the flat's readers and theirs, and the MEF
    stale_expected = {p for p in before if r_band[0] in p and (any(s in p for s in downstream)
                                                              or p.endswith(f"{r_band[0]}.fits"))}
    assert len(stale_expected) == 13 + 1 + 1 + 1  # detrended OTAs, the exposure's sky samples, the sky fit, the MEF
    assert cli.podiflow_main(["status", NIGHT]) == 1
    out = capsys.readouterr().out
    listed = {line.split()[1] for line in out.splitlines() if line.strip().startswith("stale")}
    assert listed == stale_expected, out
    assert cli.podiflow_main(["invalidate", NIGHT, "--stale", "--dry-run"]) == 0
    assert all(os.path.exists(p) for p in stale_expected)
    assert cli.podiflow_main(["invalidate", NIGHT, "--stale"]) == 0
    assert not any(os.path.exists(p) for p in stale_expected)
    luigi.task_register.Register.clear_instance_cache()
    assert luigi.build([ReduceExposure(obsid=r_band[0])], local_scheduler=True, log_level="WARNING")
    after = _mtimes(tmp_path / "work") | _mtimes(tmp_path / "out")
    for path, mtime in before.items():
        if path not in stale_expected and "failures" not in path and not path.endswith(".png"):
            assert after.get(path) == mtime, path  # nothing else rebuilt (but the plots of the new MEF)
    new = set(after) - set(before)
    assert len([p for p in new if ".detrend." in p]) == 13
    assert os.path.exists(out_root() / NIGHT / r_band[0] / f"{r_band[0]}.fits")
