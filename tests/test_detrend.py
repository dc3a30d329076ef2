"""DetrendOTA and SaturationCatalog on the simulated test-small night (test instrument)."""

import json
import shutil
from pathlib import Path

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions
from workflows.paths import night_index


def _build(tasks, **kw):
    return luigi.build(tasks, local_scheduler=True, detailed_summary=True, log_level="WARNING", **kw)


def _science(night):
    return [e for e in night_index("20131004").exposures if e.obstype == "OBJECT"]


def _detrend(obsid, ota, options=ReductionOptions()):
    return DetrendOTA(obsid=obsid, ota=ota, options=detrend_options(options))


def test_detrend_sky_wcs_and_masks(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    sci = _science(small_night)[0]
    task = _detrend(sci.obsid, 33)
    assert _build([task]).status.name == "SUCCESS"
    truth = json.loads((small_night / "truth" / "20131004" / sci.obsid / "exposure.json").read_text())
    with fits.open(task.output().path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "OTA33.SCI", "OTA33.MASK", "SKYBOXES"]
        hdr, data, mask = hdul[1].header, hdul[1].data, hdul[2].data
        assert data.dtype.type is np.float32 and mask.dtype.type is np.uint16
        assert hdr["_OVERSCN"] == "successful" and hdr["_WCSDIST"] == "successful"
        assert hdr["_BIAS"] == "not selected"
        # the sky after overscan subtraction is the true sky (ADU at the cell gains) within 3 %
        assert abs(hdr["SKY_MEDI"] / truth["sky"]["mean_per_ota"]["33"] - 1) < 0.03
        # NaN exactly where MASK says there is no data (gaps, bad cells) or a masked defect
        assert np.array_equal(np.isnan(data), mask != 0)
        assert len(hdul["SKYBOXES"].data) > 50
        # the canned WCS differs from the truth by the pointing error (fixwcs removes it later)
        true_hdr = fits.getheader(small_night / "truth" / "20131004" / sci.obsid / "wcs.fits", "OTA33.SCI")
        del true_hdr["NAXIS"]  # header-only extension: astropy would warn about 0 image axes
        ra, dec = WCS(hdr).all_pix2world([[256.0, 256.0]], 0)[0]
        ra_t, dec_t = WCS(true_hdr).all_pix2world([[256.0, 256.0]], 0)[0]
        err = truth["pointing"]["pointing_error_arcsec"]
        offset = [(ra - ra_t) * 3600 * np.cos(np.radians(dec)), (dec - dec_t) * 3600]
        assert np.allclose(offset, [-err[0], -err[1]], atol=3.0)
        assert "PFSUM001" in hdul[0].header and hdul[0].header["PFTASK"] == "DetrendOTA"


def test_persistency_dependencies_follow_the_window(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    index = night_index("20131004")
    sci = _science(small_night)[-1]
    task = _detrend(sci.obsid, 33)
    earlier = {t.obsid for t in task.requires()["persistency"]}
    # the window rule: 1 s <= dt and dt - EXPTIME(earlier) <= 600 s, dt from the exposure starts
    expected = {e.obsid for e in index.exposures
                if e.obsid != sci.obsid and (sci.mjd - e.mjd) * 86400 >= 1
                and (sci.mjd - e.mjd) * 86400 - e.exptime <= 600}
    assert earlier == expected and sci.obsid not in earlier
    off = _detrend(sci.obsid, 33, ReductionOptions().replace(persistency=None))
    assert off.requires()["persistency"] == [] and off.identity != task.identity


def test_rerun_recreates_only_the_missing_catalog(small_night, podiflow_config, tmp_path):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    sci = _science(small_night)[1]
    task = _detrend(sci.obsid, 34)
    everything = [task, *luigi.task.flatten(task.requires())]  # what a night wrapper requires
    assert _build(everything).status.name == "SUCCESS"
    catalogs = [Path(t.output().path) for t in task.requires()["persistency"]]
    victim = catalogs[0]
    blob = victim.read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in catalogs + [Path(task.output().path)]}
    victim.unlink()
    luigi.task_register.Register.clear_instance_cache()
    task = _detrend(sci.obsid, 34)
    assert _build([task, *luigi.task.flatten(task.requires())]).status.name == "SUCCESS"
    assert victim.read_bytes() == blob  # recreated byte-identical
    for path, mtime in mtimes.items():
        if path != victim:
            assert path.stat().st_mtime_ns == mtime  # nothing else rewritten


def test_bad_ota_file_fails_alone(small_night, podiflow_config, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_night / "raw", raw)
    podiflow_config(raw_dir=raw, mastercals_dir=small_night / "mastercals")
    sci = _science(small_night)[0]
    broken = raw / "20131004" / sci.obsid / f"{sci.obsid}.34.fits"
    broken.write_bytes(broken.read_bytes()[:20000])
    good, bad = _detrend(sci.obsid, 33), _detrend(sci.obsid, 34)
    result = _build([good, bad])
    assert good.complete() and not bad.complete()
    assert result.status.name in ("FAILED", "FAILED_AND_SCHEDULING_FAILED")
    with pytest.raises(Exception, match=r"\.34\.fits: .*truncated"):
        bad.run()


def test_target_and_wcsoffset_move_the_canned_wcs(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    sci = _science(small_night)[0]
    centre = [[256.0, 256.0]]

    def sky(**opts):
        task = _detrend(sci.obsid, 33, ReductionOptions().replace(persistency=None, **opts))
        assert _build([task]).status.name == "SUCCESS"
        return WCS(fits.getheader(task.output().path, 1)).all_pix2world(centre, 0)[0]

    ra0, dec0 = sky()
    ra1, dec1 = sky(wcsoffset=(0.01, 0.02))
    assert dec1 - dec0 == pytest.approx(0.02, abs=1e-6)
    assert (ra1 - ra0) * np.cos(np.radians(dec0 + 0.02)) == pytest.approx(0.01, abs=2e-4)  # on the sky
    ra2, dec2 = sky(target="22:16:30.0,+15:40:00")
    header_ra, header_dec = 15 * (22 + 15 / 60 + 30 / 3600), 15.5  # the night's field centre (RA, DEC cards)
    assert (ra2 - ra0) * np.cos(np.radians(dec0)) == pytest.approx(0.25 * np.cos(np.radians(dec0)), abs=0.03)
    assert dec2 - dec0 == pytest.approx(1 / 6, abs=0.03)
    assert abs(ra0 - header_ra) < 1 and abs(dec0 - header_dec) < 1
