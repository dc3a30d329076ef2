"""OTACatalog + ReferenceCatalog + FixWCS on the simulated test-small night, against the true WCS."""

import json

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import header_wcs
from workflows.astrometry import FixWCS
from workflows.base import options_param
from workflows.options import ReductionOptions
from workflows.paths import night_index

NIGHT = "20131004"


def test_fixwcs_recovers_pointing_rotation_and_star_positions(small_night, podiflow_config, tmp_path):
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
        assert len(hdul["WCSCAL.CAT"].data) == hdr["WCS_NSRC"]
