"""OTACatalog + ReferenceCatalog + FixWCS on the simulated test-small night, against the true WCS."""

import json
import math

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import header_wcs
from workflows.astrometry import FixWCS
from workflows.base import options_param
from workflows.options import ReductionOptions
from workflows.paths import night_index

NIGHT = "20131004"


def test_fixwcs_recovers_pointing_rotation_and_star_positions(small_night, podiflow_config, tmp_path, capfd):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    luigi.configuration.get_config().set("podiflow", "refcat", str(small_night / "refcat" / "refcat.fits"))
    sci = night_index(NIGHT).select(obstype="OBJECT")[0]
    opts = options_param(ReductionOptions().replace(fixwcs=True), ["FixWCS", "OTACatalog", "DetrendOTA"])
    task = FixWCS(obsid=sci.obsid, options=opts)
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    truth_dir = small_night / "truth" / NIGHT / sci.obsid
    truth = json.loads((truth_dir / "exposure.json").read_text())
    stars = Table.read(truth_dir / "stars.fits")
    with fits.open(task.output().path) as hdul:
        hdr = hdul[0].header
        assert hdr["WCSCAL"] and hdr["WCS_QUAL"] > 3
        # the search finds the injected pointing error and rotator offset
        err = truth["pointing"]["pointing_error_arcsec"]
        assert abs(hdr["WCS1_DRA"] - err[0]) < 2.0 and abs(hdr["WCS1_DDE"] - err[1]) < 2.0
        assert abs(hdr["WCS1_DA"] - truth["pointing"]["rotator_offset_deg"]) < 0.05
        medians = {}
        for ota in (33, 34, 22, 44):
            solved = header_wcs(hdul[f"OTA{ota:02d}.WCS"].header)
            on = stars[(stars["ota"] == ota)]
            x, y = solved.all_world2pix(np.asarray(on["ra"]), np.asarray(on["dec"]), 0)
            medians[ota] = float(np.median(np.hypot(x - on["x"], y - on["y"])))
        assert max(medians.values()) < 0.15, medians  # test-instrument px (0.9"): < 0.14"
        assert {"CAT.WCSREF", "CAT.ODI", "WCSCAL.CAT"} <= {h.name for h in hdul}
        assert len(hdul["WCSCAL.CAT"].data) == hdr["WCS_NSRC"] == hdr["WCSNMTCH"]
        assert hdr["WCSSIGNF"] > 3
        # the reference stars on the focal plane: the true stars on the OTAs that the catalogue lists (the
        # count uses the pointing as commanded, so stars at the edges may differ)
        listed = np.isin(stars["id"], Table.read(small_night / "refcat" / "refcat.fits")["id"])
        assert hdr["ASTRMCAT"] == "refcat.fits" and abs(hdr["WCSNREF"] - listed.sum()) <= 0.1 * listed.sum()
        solved = {h.name: (h.header["CRVAL1"], h.header["CRVAL2"]) for h in hdul if h.name.endswith(".WCS")}
    _check_nonsidereal(sci, solved, tmp_path)
    _check_bad_reference_catalogues(sci, small_night, tmp_path, capfd)


def _check_nonsidereal(sci, solved, tmp_path):
    """-nonsidereal moves every OTA's CRVAL by rate x (MJD-OBS - reference), for an MJD and a FITS reference."""
    reference = tmp_path / "reference.fits"
    fits.PrimaryHDU(header=fits.Header({"MJD-OBS": sci.mjd - 1.0 / 24.0})).writeto(reference)
    families = ["FixWCS", "OTACatalog", "DetrendOTA"]
    tasks = {hours: FixWCS(obsid=sci.obsid, options=options_param(
        ReductionOptions().replace(fixwcs=True, nonsidereal=f"36.0,-18.0,{ref}"), families))
        for hours, ref in ((2.0, sci.mjd - 2.0 / 24.0), (1.0, reference))}
    assert luigi.build(list(tasks.values()), local_scheduler=True, log_level="WARNING")
    for hours, task in tasks.items():
        with fits.open(task.output().path) as hdul:
            assert hdul[0].header["NSID_DHR"] == pytest.approx(hours, abs=1e-6)
            assert hdul[0].header["NSIDPMRA"] == 36.0 and hdul[0].header["NSIDPMDE"] == -18.0
            for name, (ra, dec) in solved.items():
                h = hdul[name].header
                assert (h["CRVAL1"] - ra) * math.cos(math.radians(dec)) * 3600 == pytest.approx(-36.0 * hours, abs=1e-4)
                assert (h["CRVAL2"] - dec) * 3600 == pytest.approx(18.0 * hours, abs=1e-6)
                assert h["NSIDDDEC"] == pytest.approx(18.0 * hours / 3600)
            # the catalogues stay in the frame of the stars
            assert hdul[0].header["WCSCAL"] and len(hdul["WCSCAL.CAT"].data) == hdul[0].header["WCS_NSRC"]


def _refcat_variants(small_night, tmp_path) -> dict:
    """An empty reference catalogue and one of another part of the sky (the real one moved by 180 deg in RA)."""
    real = Table.read(small_night / "refcat" / "refcat.fits")
    empty, elsewhere = tmp_path / "empty.fits", tmp_path / "elsewhere.fits"
    real[:0].write(empty)
    real["ra"] = (real["ra"] + 180.0) % 360.0
    real.write(elsewhere)
    return {"empty": (empty, 0), "elsewhere": (elsewhere, len(real))}


def _check_bad_reference_catalogues(sci, small_night, tmp_path, capfd):
    """An empty or wrong-sky catalogue: one console warning naming it with its 0 stars, the log line, the MEF's
    cards (the exposure's catalogues are those of the main test: only the astrometry and the MEF run)."""
    from workflows.collect import CollectCells
    from workflows.options import MEF_FAMILIES
    from workflows.console import run_log

    variants = _refcat_variants(small_night, tmp_path)
    tasks = {name: CollectCells(obsid=sci.obsid, options=options_param(
        ReductionOptions().replace(fixwcs=True, wcscatalog=str(path)), MEF_FAMILIES))
        for name, (path, _) in variants.items()}
    capfd.readouterr()
    with run_log(tmp_path / "work", "refcat") as log:
        assert luigi.build([tasks["empty"]], local_scheduler=True)
        # the wrong-sky catalogue's exposure is solved only: the same cards, the same console line
        fixwcs = tasks["elsewhere"].requires()["fixwcs"]
        assert luigi.build([fixwcs], local_scheduler=True)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("podiflow: warning:")]
    assert len(warnings) == 2, warnings
    for line, (path, rows) in zip(warnings, variants.values()):
        assert line.startswith(f"podiflow: warning: {sci.obsid}: reference catalogue {path} has 0 stars in the field")
        assert line.endswith(f"(0 in the cut-out; the file holds {rows} stars): no astrometric solution (WCSCAL = F)")
    assert log.read_text().count(f"{sci.obsid}: 0 reference stars in the field (0 in the cut-out), 0 matched") == 2
    with fits.open(tasks["empty"].output().path) as mef:
        hdr = mef[0].header
        assert (hdr["ASTRMCAT"], hdr["WCSNREF"], hdr["WCSNMTCH"]) == ("empty.fits", 0, 0)
        assert hdr["WCSCAL"] is False and hdr["_WCSCAL"] == "failed"
    with fits.open(fixwcs.output().path) as hdul:
        assert (hdul[0].header["ASTRMCAT"], hdul[0].header["WCSNREF"]) == ("elsewhere.fits", 0)
